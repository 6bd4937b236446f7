"""Hostile input: outputs that name a user's own files, crafted score files, odd names and values, races.

Each test pins one way a careless or hostile input used to lose data, crash late or run the wrong thing.
"""

import json
import os

import pytest

from robust_sft.cli import main

# --------------------------------------------------------------------------------------------- user paths


def test_mask_never_replaces_a_directory_it_did_not_write(scores_path, tmp_path, monkeypatch, capsys):
    results = tmp_path / "results"
    (results / "sub").mkdir(parents=True)
    (results / "thesis.txt").write_text("years of work")
    assert main(["mask", scores_path, "--mask", "none", "--out", str(results)]) == 1
    assert "not written by robust-sft" in capsys.readouterr().err
    assert (results / "thesis.txt").read_text() == "years of work" and (results / "sub").is_dir()

    monkeypatch.chdir(results)
    for out in (".", "..", str(results)):
        assert main(["mask", scores_path, "--mask", "none", "--out", out]) == 1
        assert "refusing" in capsys.readouterr().err
    assert sorted(p.name for p in results.iterdir()) == ["sub", "thesis.txt"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["results"]


def test_mask_replaces_its_own_directory_output(scores_path, tmp_path):
    import datasets

    out = tmp_path / "masked"
    assert main(["mask", scores_path, "--mask", "none", "--out", str(out)]) == 0
    assert main(["mask", scores_path, "--mask", "ratio", "--ratio", "0.2", "--out", str(out)]) == 0  # replaced
    assert len(datasets.load_from_disk(str(out))) == 24
    assert json.loads((out / "robust_sft.json").read_text())["mask_report"]["policy"] == "ratio"
    assert [p.name for p in tmp_path.iterdir()] == ["masked"]  # no temporary directory left behind


def test_score_refuses_a_shard_directory_it_did_not_make(tiny_model_dir, sft_jsonl, tmp_path, capsys):
    out = tmp_path / "s.parquet"
    mine = tmp_path / "s.parquet.parts"
    mine.mkdir()
    (mine / "notes.txt").write_text("mine")
    assert main(["score", "--model", tiny_model_dir, "--data", sft_jsonl, "--out", str(out), "--progress", "false"]) == 1
    assert "not written by robust-sft" in capsys.readouterr().err
    assert (mine / "notes.txt").read_text() == "mine" and not out.exists()


def test_a_stage_never_removes_a_directory_it_did_not_make(tmp_path):
    from robust_sft.experiment.runner import run_stage

    artifact = tmp_path / "models" / "gt" / "seed0"
    artifact.mkdir(parents=True)
    (artifact / "weights-i-trained.bin").write_text("mine")
    with pytest.raises(OSError, match="not written by robust-sft"):
        run_stage("train gt seed 0", artifact, "key", lambda: None)
    assert (artifact / "weights-i-trained.bin").read_text() == "mine"


@pytest.fixture()
def no_base(monkeypatch):
    """Experiment.run stops at its first stage: these tests check what happens before any work."""
    from robust_sft.experiment.runner import Experiment

    def refuse(self):
        raise AssertionError("the run started its work")

    monkeypatch.setattr(Experiment, "resolve_base", refuse)


def test_a_run_never_writes_into_a_directory_that_is_not_a_run(tiny_model_dir, tmp_path, no_base):
    from robust_sft.experiment.runner import Experiment
    from tests.test_experiment import mini_config

    home = tmp_path / "home"
    home.mkdir()
    (home / "config.json").write_text('{"editor": "vim"}')  # the user's own file, named like a run's
    (home / "notes.txt").write_text("mine")
    with pytest.raises(OSError, match="not a run directory"):
        Experiment(mini_config(tiny_model_dir, methods=["gt"]), home, progress=False).run()
    assert (home / "config.json").read_text() == '{"editor": "vim"}'


def test_study_publish_never_overwrites_a_users_files(tmp_path):
    from robust_sft.study.publish import publish

    study = tmp_path / "study"
    (study / "figures").mkdir(parents=True)
    for name in ("study.md", "study_config.json"):
        (study / name).write_text("{}")
    (study / "study.json").write_text('{"settings": {}}')
    docs = tmp_path / "docs"
    docs.mkdir()
    (docs / "study.md").write_text("my own study notes")
    with pytest.raises(OSError, match="not a published study"):
        publish(study, docs)
    assert (docs / "study.md").read_text() == "my own study notes"
    publish(study, tmp_path / "new")  # a new directory, then its own output again
    publish(study, tmp_path / "new")
    assert (tmp_path / "new" / "study.json").exists()


# --------------------------------------------------------------------------------------------- locks


def test_a_second_run_on_the_same_directory_stops_with_a_clear_line(tiny_model_dir, tmp_path, no_base):
    from robust_sft.core.artifacts import LOCK_NAME, dir_lock
    from robust_sft.experiment.runner import Experiment
    from tests.test_experiment import mini_config

    run_dir = tmp_path / "run"
    experiment = Experiment(mini_config(tiny_model_dir, methods=["gt"]), run_dir, progress=False)
    with dir_lock(run_dir / LOCK_NAME, "the first run"):
        with pytest.raises(RuntimeError, match=f"run directory {run_dir} is in use by pid {os.getpid()}"):
            experiment.run()
    with pytest.raises(AssertionError, match="started its work"):  # the lock is released with its holder
        experiment.run()


def test_a_unit_is_locked_while_it_trains(tiny_model_dir, tmp_path):
    from robust_sft.core.artifacts import dir_lock
    from robust_sft.experiment.runner import Experiment
    from tests.test_experiment import mini_config

    experiment = Experiment(mini_config(tiny_model_dir, methods=["gt"]), tmp_path, progress=False)
    variant = experiment.variants[0]
    with dir_lock(tmp_path / "locks" / "gt-seed0.lock", "another worker"):
        with pytest.raises(RuntimeError, match="gt seed 0 is in use"):
            experiment.run_unit(variant, 0)


# --------------------------------------------------------------------------------------------- score files


def _tampered(scores_path, tmp_path, change, metadata=None):
    """A copy of the session's score file with one column of one example changed by `change(column, row)`."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    table = pq.read_table(scores_path)
    columns = {name: table.column(name).to_pylist() for name in table.column_names}
    change(columns)
    out = tmp_path / "tampered.parquet"
    types = {name: table.schema.field(name).type for name in table.column_names}
    tampered = pa.table({name: pa.array(values, types[name]) for name, values in columns.items()})
    meta = dict(table.schema.metadata)
    if metadata is not None:
        meta[b"robust_sft"] = json.dumps({**json.loads(meta[b"robust_sft"]), **metadata}).encode()
    pq.write_table(tampered.replace_schema_metadata(meta), out)
    return str(out)


def _set(name, row, value):
    def change(columns):
        columns[name][row] = value
    return change


def _first_answer(scores_path) -> int:
    from robust_sft.scoring.files import load_scores

    return int(load_scores(scores_path).answer_mask[3].argmax())


@pytest.mark.parametrize("case, message", [
    ("mask_len1", "one entry per token"),
    ("nll_len1", "one entry per token"),
    ("negative", "NLL -"),
    ("nan", "NLL nan"),
    ("huge_id", "outside the vocabulary"),
    ("too_long", "more than the file's max_length 1024"),
    ("duplicate", "duplicate id"),
    ("empty", "holds no example"),
])
def test_every_reader_refuses_a_bad_score_file_naming_file_and_example(scores_path, tmp_path, capsys, case, message):
    answer = _first_answer(scores_path)

    def nll_at(value):
        def change(columns):
            columns["token_nll"][3][answer + 1] = value
        return change

    def too_long(columns):
        columns["input_ids"][3] = columns["input_ids"][3] * 300
        columns["answer_mask"][3] = columns["answer_mask"][3] * 300
        columns["token_nll"][3] = columns["token_nll"][3] * 300

    def empty(columns):
        for values in columns.values():
            values.clear()

    def duplicate(columns):
        columns["id"][3] = columns["id"][2]

    def huge_id(columns):
        columns["input_ids"][3][answer] = 2**31 - 1

    changes = {"mask_len1": _set("answer_mask", 3, [True]), "nll_len1": _set("token_nll", 3, [1.0]),
               "negative": nll_at(-1.5), "nan": nll_at(float("nan")), "huge_id": huge_id, "too_long": too_long,
               "duplicate": duplicate, "empty": empty}
    bad = _tampered(scores_path, tmp_path, changes[case], metadata={"max_length": 1024})
    for verb in (["stats", bad], ["mask", bad, "--out", str(tmp_path / "m.parquet")],
                 ["inspect", bad, "--out", str(tmp_path / "i.html")]):
        assert main(verb) == 1, verb
        err = capsys.readouterr().err
        assert message in err and bad in err, (verb, err)
        assert case in ("empty", "duplicate") or "row 3" in err, err
    assert not (tmp_path / "m.parquet").exists() and not (tmp_path / "i.html").exists()


# --------------------------------------------------------------------------------------------- zero base


def test_a_zero_base_accuracy_and_a_failing_figure_lose_no_results(tiny_model_dir, tmp_path, monkeypatch):
    import math

    from robust_sft.experiment.runner import Experiment
    from robust_sft.report import write as report
    from tests.test_experiment import mini_config

    run_dir = tmp_path / "run"
    Experiment(mini_config(tiny_model_dir, methods=["gt"], lr_sweep={}), run_dir, progress=False).run()
    base_file = run_dir / "eval" / "base" / "accuracies.json"
    base = json.loads(base_file.read_text())
    base["test/nonempty"]["accuracy"] = 0.0
    base_file.write_text(json.dumps(base))
    for name in ("results.json", "report.md", "report.html"):
        (run_dir / name).unlink()

    def broken(results, path):
        raise ValueError("Data has no positive values, and therefore cannot be log-scaled.")

    monkeypatch.setattr(report, "plot_ppl_vs_bwt", broken)
    results = report.write_report(run_dir)
    assert math.isfinite(results["methods"]["gt"]["mean"]["bwt"])
    assert results["percentage_point_tasks"] == ["test/nonempty"]
    assert json.loads((run_dir / "results.json").read_text())["methods"]["gt"]["mean"]["bwt"] == results["methods"]["gt"]["mean"]["bwt"]
    assert "`test/nonempty`: a relative change is undefined there" in (run_dir / "report.md").read_text()
    assert (run_dir / "report.html").exists() and (run_dir / "figures" / "ti_vs_bwt.png").exists()


# --------------------------------------------------------------------------------------------- odd text


def test_a_lone_surrogate_names_the_example_and_skip_skips_it(tiny_model_dir, tmp_path, capsys):
    from robust_sft.scoring.files import load_scores
    from tests.conftest import make_rows

    rows = make_rows(4)
    rows[2]["answer"] += " \ud800"
    data = tmp_path / "sft.jsonl"
    data.write_text("".join(json.dumps(r) + "\n" for r in rows))  # json.dumps writes it as the escape \ud800
    out = tmp_path / "s.parquet"
    base = ["score", "--model", tiny_model_dir, "--data", str(data), "--out", str(out), "--progress", "false"]
    assert main(base) == 1
    err = capsys.readouterr().err
    assert f"{data}:3 (id=ex2)" in err and "lone surrogate" in err and "Traceback" not in err
    assert main([*base, "--on_error", "skip"]) == 0
    assert load_scores(out).ids == ["ex0", "ex1", "ex3"]


# --------------------------------------------------------------------------------------------- unwritable outputs


def test_score_refuses_an_output_it_cannot_write_before_any_work(tiny_model_dir, sft_jsonl, tmp_path, monkeypatch,
                                                                   capsys):
    import robust_sft.models.loading

    def no_model(*args, **kwargs):
        raise AssertionError("the model was loaded")

    monkeypatch.setattr(robust_sft.models.loading, "load_model", no_model)
    a_file = tmp_path / "file"
    a_file.write_text("")
    for out in (tmp_path, a_file / "s.parquet"):  # an existing directory; a place no directory can be made
        assert main(["score", "--model", tiny_model_dir, "--data", sft_jsonl, "--out", str(out)]) == 1
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and err[0].startswith(f"robust-sft score: error: {out}: "), err


def test_a_full_disk_names_the_output_and_leaves_no_temporary_file(scores_path, tmp_path, monkeypatch, capsys):
    import errno

    def full(src, dst):
        raise OSError(errno.ENOSPC, "No space left on device", str(src))

    monkeypatch.setattr(os, "replace", full)
    out = tmp_path / "m.parquet"
    assert main(["mask", scores_path, "--mask", "none", "--out", str(out)]) == 1
    err = capsys.readouterr().err
    assert f"{out}: cannot write (No space left on device)" in err and ".tmp" not in err
    assert list(tmp_path.iterdir()) == []


# --------------------------------------------------------------------------------------------- names and values


@pytest.mark.parametrize("config, message", [
    ("name: ../../elsewhere\n", "name '../../elsewhere' becomes a directory name"),
    ("name: ..\n", "name '..' becomes a directory name"),
    ("seeds: 1\n", "seeds: expected a list, got 1 (seeds: [1] is the single seed 1; three seeds are [0, 1, 2])"),
])
def test_run_config_names_and_seeds_are_checked(tmp_path, capsys, config, message):
    path = tmp_path / "c.yaml"
    path.write_text("target: organism/add\nmethods: [gt]\n" + config)
    assert main(["run", str(path), "--dry_run"]) == 1
    assert message in capsys.readouterr().err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["c.yaml"]


def test_study_mode_names_stay_inside_the_study(tmp_path):
    from robust_sft.core.config_types import ConfigError
    from robust_sft.study.config import StudyConfig

    experiment = {"methods": ["gt"], "seeds": [0]}
    with pytest.raises(ConfigError, match="mode 'x/../../../../elsewhere' becomes a directory name"):
        StudyConfig(worlds=[0], experiment=experiment, modes={"x/../../../../elsewhere": {"train": {}}})
    with pytest.raises(ConfigError, match=r"worlds: expected a list, got 3 \(worlds: \[1\] is world 1 alone"):
        StudyConfig(worlds=3, experiment=experiment, modes={"lora": {"train": {}}})


@pytest.mark.parametrize("taus", ["nan", "0", "-1", "1"])
def test_stats_refuses_a_threshold_that_is_no_perplexity(scores_path, capsys, taus):
    assert main(["stats", scores_path, "--taus", "2.5", taus]) == 1
    err = capsys.readouterr()
    assert "taus must be perplexity thresholds greater than 1" in err.err and err.out == ""


def test_inspect_refuses_an_infinite_tau_and_keeps_a_hostile_title_in_the_title(scores_path, tmp_path, capsys):
    from tests.test_inspect import page_json

    assert main(["inspect", scores_path, "--tau", "inf", "--out", str(tmp_path / "inf.html")]) == 1
    assert "tau must be > 1 and finite" in capsys.readouterr().err
    out = tmp_path / "i.html"
    title = "__DATA__ </title><script>alert(1)</script> __TITLE__"
    assert main(["inspect", scores_path, "--title", title, "--out", str(out)]) == 0
    page = out.read_text()
    assert "<title>__DATA__ &lt;/title&gt;&lt;script&gt;alert(1)&lt;/script&gt; __TITLE__</title>" in page
    assert page_json(out)["title"] == title and page.count('"file_tokens"') == 1  # the data once, in its script
