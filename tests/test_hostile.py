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
    assert main(["mask", scores_path, "--out", str(results)]) == 1
    assert "not written by robust-sft" in capsys.readouterr().err
    assert (results / "thesis.txt").read_text() == "years of work" and (results / "sub").is_dir()

    monkeypatch.chdir(results)
    for out in (".", "..", str(results)):
        assert main(["mask", scores_path, "--out", out]) == 1
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
    from robust_sft.experiment import run_stage

    artifact = tmp_path / "models" / "gt" / "seed0"
    artifact.mkdir(parents=True)
    (artifact / "weights-i-trained.bin").write_text("mine")
    with pytest.raises(OSError, match="not written by robust-sft"):
        run_stage("train gt seed 0", artifact, "key", lambda: None)
    assert (artifact / "weights-i-trained.bin").read_text() == "mine"


@pytest.fixture()
def no_base(monkeypatch):
    """Experiment.run stops at its first stage: these tests check what happens before any work."""
    from robust_sft.experiment import Experiment

    def refuse(self):
        raise AssertionError("the run started its work")

    monkeypatch.setattr(Experiment, "resolve_base", refuse)


def test_a_run_never_writes_into_a_directory_that_is_not_a_run(tiny_model_dir, tmp_path, no_base):
    from robust_sft.experiment import Experiment
    from tests.test_experiment import mini_config

    home = tmp_path / "home"
    home.mkdir()
    (home / "config.json").write_text('{"editor": "vim"}')  # the user's own file, named like a run's
    (home / "notes.txt").write_text("mine")
    with pytest.raises(OSError, match="not a run directory"):
        Experiment(mini_config(tiny_model_dir, methods=["gt"]), home, progress=False).run()
    assert (home / "config.json").read_text() == '{"editor": "vim"}'


def test_study_publish_never_overwrites_a_users_files(tmp_path):
    from robust_sft.study import publish

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
    from robust_sft.artifacts import LOCK_NAME, dir_lock
    from robust_sft.experiment import Experiment
    from tests.test_experiment import mini_config

    run_dir = tmp_path / "run"
    experiment = Experiment(mini_config(tiny_model_dir, methods=["gt"]), run_dir, progress=False)
    with dir_lock(run_dir / LOCK_NAME, "the first run"):
        with pytest.raises(RuntimeError, match=f"run directory {run_dir} is in use by pid {os.getpid()}"):
            experiment.run()
    with pytest.raises(AssertionError, match="started its work"):  # the lock is released with its holder
        experiment.run()


def test_a_unit_is_locked_while_it_trains(tiny_model_dir, tmp_path):
    from robust_sft.artifacts import dir_lock
    from robust_sft.experiment import Experiment
    from tests.test_experiment import mini_config

    experiment = Experiment(mini_config(tiny_model_dir, methods=["gt"]), tmp_path, progress=False)
    variant = experiment.variants[0]
    with dir_lock(tmp_path / "locks" / "gt-seed0.lock", "another worker"):
        with pytest.raises(RuntimeError, match="gt seed 0 is in use"):
            experiment.run_unit(variant, 0)
