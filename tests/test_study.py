"""The study: selection, one run per (world, mode), the learning-rate control, the k-of-n claims table."""

import json

import pytest

import tests.fake_tasks  # noqa: F401  (registers the test tasks)
from robust_sft.study.config import StudyConfig, grid_points, point_name
from robust_sft.study.publish import publish
from robust_sft.study.runner import Study
from robust_sft.study.summary import criteria_table, method_table, points_table, render_criteria, render_study
from tests.test_results import markdown_tables, numbers


def mini_study(model_dir: str, **overrides) -> StudyConfig:
    experiment = dict(
        model=model_dir, target="test/even_length", others=["test/nonempty", "test/has_space"],
        methods=["gt", "stm", "oracle", "eaft"], taus=[500], control_tau=500, lr_sweep={"gt": [0.5], "stm": [0.5]},
        seeds=[0], train_limit=16, validation_limit=8, eval_limit=8, eval_batch_size=16,
        train={"max_steps": 2, "num_train_epochs": 1, "per_device_train_batch_size": 8, "logging_steps": 1},
        # pre-registered criteria: G can only hold (a change is at least -100 points), S can only fail
        criteria=[{"id": "G", "claim": "GT moves the target", "method": "gt", "quantity": "ti_pp",
                   "holds_if": "estimate > -101"},
                  {"id": "S", "claim": "STM forgets less", "method": "stm@500", "versus": "gt", "quantity": "bwt_pp",
                   "holds_if": "lower > 1000", "requires": ["G"]}],
    )
    options = dict(
        name="mini", worlds=[0, 1], design_worlds=[0], experiment=experiment,
        modes={"lora": {"train": {"finetuning": "lora"}, "grid": {"lora_r": [4], "learning_rate": ["1e-3"]}},
               "full": {"train": {"finetuning": "full"}, "grid": {"learning_rate": [1e-4, 3e-4]}}},
        selection_validation_limit=8,
        # the demo-style control: the same options as world 0's LoRA setting, so that run is reused
        lr_control={"train": {"finetuning": "lora", "lora_r": 4, "lora_alpha": 8, "learning_rate": 1e-3}},
    )
    return StudyConfig(**{**options, **overrides})


@pytest.fixture(scope="module")
def finished_study(tmp_path_factory, tiny_model_dir):
    out = tmp_path_factory.mktemp("study")
    summary = Study(mini_study(tiny_model_dir), out, progress=False).run()
    return out, summary


def test_grid_points_type_values_and_tie_lora_alpha_to_the_rank():
    points = grid_points({"grid": {"lora_r": [4, 16], "learning_rate": ["1e-4", 3e-4]}})
    assert points == [{"lora_r": 4, "learning_rate": 1e-4, "lora_alpha": 8},
                      {"lora_r": 4, "learning_rate": 3e-4, "lora_alpha": 8},
                      {"lora_r": 16, "learning_rate": 1e-4, "lora_alpha": 32},
                      {"lora_r": 16, "learning_rate": 3e-4, "lora_alpha": 32}]
    assert point_name("lora", points[1]) == "lora-r4-lr3e-04"
    assert grid_points({"grid": {"learning_rate": [1e-5]}}) == [{"learning_rate": 1e-5}]
    with pytest.raises(ValueError, match=r"unknown train option\(s\) \['lora_rank'\]"):
        grid_points({"grid": {"lora_rank": [4]}})


def test_study_config_errors_are_caught_before_anything_runs(tiny_model_dir):
    with pytest.raises(ValueError, match="experiment.name is set per setting"):
        mini_study(tiny_model_dir, experiment={"name": "x"})
    with pytest.raises(ValueError, match="worlds must be distinct"):
        mini_study(tiny_model_dir, worlds=[0, 0])
    with pytest.raises(ValueError, match=r"modes.lora: unknown key\(s\) \['grids'\]"):
        mini_study(tiny_model_dir, modes={"lora": {"grids": {}}})
    with pytest.raises(ValueError, match="learning_rate must be a positive number"):
        mini_study(tiny_model_dir, modes={"full": {"train": {"finetuning": "full"}, "grid": {"learning_rate": [-1]}}})


def test_selection_takes_the_oracles_best_validation_accuracy(finished_study):
    out, summary = finished_study
    for mode, entry in summary["modes"].items():
        trials = entry["selection"]["trials"]
        best = max(t["validation_accuracy"] for t in trials)
        first_best = next(t for t in trials if t["validation_accuracy"] == best)  # ties: the earlier grid point
        assert entry["chosen"] == first_best["options"]
        for t in trials:  # the accuracy is the selection run's own best-epoch metric
            trained = json.loads((out / "select" / "models" / t["name"] / "seed0" / "train_summary.json").read_text())
            assert trained["best_metric"] == t["validation_accuracy"]
            assert trained["config"]["finetuning"] == mode
    # every setting of a mode trains with the chosen options
    for name in ("w0-full", "w1-full"):
        config = json.loads((out / name / "config.json").read_text())
        assert config["train"]["learning_rate"] == summary["modes"]["full"]["chosen"]["learning_rate"]
        assert config["train"]["finetuning"] == "full"


def test_selection_at_the_last_epoch_validates_the_final_model_once(tiny_model_dir, tmp_path, monkeypatch):
    """With the last epoch as the endpoint (select_best_epoch false) training measures no validation accuracy:
    the selection measures the final model's, caches it beside the model, and a rerun reads the cache."""
    from robust_sft.evaluation.engine import evaluate_task
    from robust_sft.models.loading import load_model, load_tokenizer, trained_model_parts

    config = mini_study(tiny_model_dir, worlds=[0], experiment={**mini_study(tiny_model_dir).experiment,
                                                                "select_best_epoch": False})
    study = Study(config, tmp_path, progress=False)
    chosen = study.select("lora")
    trial, = chosen["trials"]
    model_dir = tmp_path / "select" / "models" / trial["name"] / "seed0"
    assert json.loads((model_dir / "train_summary.json").read_text())["best_metric"] is None
    exp = study.selection_experiment("lora")
    exp.resolve_base()
    base, adapter = trained_model_parts(exp.base, model_dir / "final")
    examples = exp.load_examples(exp.config.target, "validation", exp.config.validation_limit)
    expected = evaluate_task(load_model(base, adapter=adapter, merge=True), load_tokenizer(exp.base),
                             exp.get_task(exp.config.target), examples, progress=False).accuracy
    assert trial["validation_accuracy"] == expected
    assert trial["gain"] == pytest.approx(expected - chosen["base_validation_accuracy"])
    assert json.loads((model_dir / "validation_accuracy.json").read_text())["accuracy"] == expected

    import robust_sft.study.runner as runner

    monkeypatch.setattr(runner, "load_model", lambda *a, **k: pytest.fail("the cached accuracy was not read"))
    assert study.select("lora")["trials"][0]["validation_accuracy"] == expected

    # a study directory kept without weights: the recorded trial is read, nothing is trained again
    import shutil

    import robust_sft.training.trainer as training

    shutil.rmtree(model_dir / "final")
    monkeypatch.setattr(training, "train", lambda *a, **k: pytest.fail("a measured trial was trained again"))
    assert study.select("lora") == chosen


def test_every_setting_is_a_run_and_claims_are_counted_k_of_n(finished_study):
    out, summary = finished_study
    assert list(summary["settings"]) == ["w0-lora", "w0-full", "w1-lora", "w1-full"]
    per_setting = {name: json.loads((out / name / "results.json").read_text()) for name in summary["settings"]}
    for row in summary["claims"]:
        statuses = {name: next(c["status"] for c in r["claims"] if c["id"] == row["id"])
                    for name, r in per_setting.items()}
        assert {name: s["status"] for name, s in row["settings"].items()} == statuses
        assert row["held"] == list(statuses.values()).count("held")
        assert row["tested"] == sum(s != "not tested" for s in statuses.values())
    assert {"a", "b1", "o", "f"} <= {row["id"] for row in summary["claims"]}
    # the lr control's options equal world 0's LoRA setting: that run is the control, not a second one
    assert summary["lr_control"]["same_as"] == "w0-lora" and not (out / "lr_control").exists()
    assert {"gt", "gt_lr5e-04", "stm@500", "stm@500_lr5e-04", "oracle"} <= set(summary["lr_control"]["points"])
    # EAFT is a method of every setting, with sample-wise forgetting
    for name in summary["settings"]:
        eaft = summary["methods"]["eaft"][name]
        assert eaft["lost"] is None or 0 <= eaft["lost"] <= 1
    # mechanism: every fine-tuned model of every setting is one point (6 variants x 1 seed x 4 settings)
    assert summary["mechanism"]["units"] == 24
    assert summary["mechanism"]["correlations"]["delta_norm_total"]["n"] == 24
    assert summary["mechanism"]["by_mode"]["full"]["delta_norm_total"]["n"] == 12
    for figure in ("claims", "lr_control", "lr_control_by_setting", "mechanism_scatter", "mechanism_scatter_lora"):
        assert (out / "figures" / f"{figure}.png").read_bytes()[:4] == b"\x89PNG"
    text = (out / "study.md").read_text()
    assert "held in k of n" in text and "| (f)" in text and "Sample-wise forgetting" in text
    # the pre-registered criteria, judged in each setting, counted over world 1 with world 0 (design) apart
    held, failed = summary["criteria"]
    assert (held["id"], held["held_out"]["held"], held["held_out"]["n"], held["design"]["held"]) == ("G", 2, 2, 2)
    assert (failed["id"], failed["held_out"]["not held"], failed["design"]["not held"]) == ("S", 2, 2)
    assert "| (G) GT moves the target | gt: ti_pp estimate > -101 | 2 of 2 | 2 of 2 |" in text


def test_a_rerun_trains_nothing_and_publish_copies_no_models(finished_study, tiny_model_dir, tmp_path, monkeypatch):
    import robust_sft.training.trainer as training

    out, summary = finished_study
    trained = []
    monkeypatch.setattr(training, "train", lambda config, **kw: trained.append(config.output_dir))
    again = Study(mini_study(tiny_model_dir), out, progress=False).run()
    assert trained == []
    assert again["claims"] == summary["claims"]
    docs = publish(out, tmp_path / "docs")
    assert (docs / "study.md").exists() and (docs / "w1-full" / "results.json").exists()
    assert (docs / "w1-full" / "analysis.json").exists() and (docs / "figures" / "claims.png").exists()
    assert not list(docs.rglob("*.safetensors"))


def test_method_table_averages_lost_and_gained_over_the_other_tasks_at_the_configs_rate():
    def method(lr_scale, transitions):
        return {"lr_scale": lr_scale, "mean": {"ti": 12.0, "bwt": -3.0}, "std": {"ti": 1.0, "bwt": 0.5},
                "transitions": transitions}

    nan = float("nan")
    transitions = {"o1": {"right_to_wrong": 0.2, "wrong_to_right": 0.1},
                   "o2": {"right_to_wrong": nan, "wrong_to_right": 0.5}}  # o2: the base model got none right
    results = {"w0-lora": {"methods": {"gt": method(1.0, transitions), "gt_lr5e-04": method(0.5, transitions)}}}
    table = method_table(results)
    assert list(table) == ["gt"]  # the learning-rate control is not a method of the table
    assert table["gt"]["w0-lora"] == {"ti": 12.0, "ti_std": 1.0, "bwt": -3.0, "bwt_std": 0.5,
                                      "lost": pytest.approx(0.2), "gained": pytest.approx(0.3)}


def test_the_points_table_keeps_every_variant_with_its_intervals_and_study_md_shows_them():
    def method(lr_scale, ti, bwt):
        return {"lr_scale": lr_scale, "mean": {"ti": 1.0, "bwt": -1.0}, "std": {"ti": 0.0, "bwt": 0.0},
                "intervals": {"ti_pp": {"estimate": ti, "interval": [ti - 1, ti + 2]},
                              "bwt_pp": {"estimate": bwt, "interval": (bwt - 0.5, bwt + 0.25)},
                              "ti": {"estimate": 99.0, "interval": [98.0, 100.0]}}}

    results = {"w0-lora": {"methods": {"gt": method(1.0, 12.0, -3.0), "gt_lr1e-04": method(0.1, 2.5, -0.5)}},
               "w1-lora": {"methods": {"gt": method(1.0, 10.0, -4.0), "old": {"lr_scale": 1.0}}}}
    table = points_table(results)
    assert list(table) == ["gt", "gt_lr1e-04"]  # the lower-rate GT is kept; a method without intervals is not
    assert table["gt_lr1e-04"] == {"w0-lora": {"ti_pp": {"estimate": 2.5, "interval": [1.5, 4.5]},
                                               "bwt_pp": {"estimate": -0.5, "interval": [-1.0, -0.25]}}}
    summary = {"name": "hand", "worlds": [0, 1], "settings": {"w0-lora": {}, "w1-lora": {}}, "claims": [],
               "lr_control": None, "seconds": {}, "modes": {}, "methods": {}, "points": table}
    tables = markdown_tables(render_study(summary))
    (points,) = [rows for heading, rows in tables.items() if heading.startswith("TI and BWT per method and setting in")]
    assert points[1] == ["gt", "+12.0 [+11.0, +14.0] / -3.0 [-3.5, -2.8]", "+10.0 [+9.0, +12.0] / -4.0 [-4.5, -3.8]"]
    assert points[2] == ["gt_lr1e-04", "+2.5 [+1.5, +4.5] / -0.5 [-1.0, -0.2]", "-"]


def test_study_md_shows_lost_before_gained_and_each_measures_rho():
    summary = {
        "name": "hand", "worlds": [0], "settings": {"w0-lora": {}}, "claims": [], "lr_control": None, "seconds": {},
        "modes": {"lora": {"selection": {"name": "lora-r4", "base_validation_accuracy": 0.1,
                                         "trials": [{"name": "lora-r4", "validation_accuracy": 0.4}]}}},
        "methods": {"gt": {"w0-lora": {"ti": 12.0, "ti_std": 1.0, "bwt": -3.0, "bwt_std": 0.5, "lost": 0.2,
                                       "gained": 0.3}}},
        "mechanism": {"correlations": {"delta_norm_total": {"rho": -0.8, "n": 5,
                                                            "within": {"r": 0.3, "n": 4, "groups": 2}},
                                       "kl_to_base": {"rho": 0.4, "n": 4}},
                      "by_mode": {"lora": {"delta_norm_total": {"rho": -0.5, "n": 3},
                                           "kl_to_base": {"rho": None, "n": 2}}}},
    }
    tables = markdown_tables(render_study(summary))
    (forgetting,) = [rows for heading, rows in tables.items() if heading.startswith("Sample-wise forgetting")]
    assert forgetting[1][0] == "gt" and numbers(forgetting[1][1]) == [20.0, 30.0]
    assert "base-right items lost / % of base-wrong items gained" in next(h for h in tables if h.startswith("Sample"))
    (ti_bwt,) = [rows for heading, rows in tables.items() if heading.startswith("TI and BWT")]
    assert ti_bwt[1] == ["gt", "TI +12.0 ± 1.0, BWT -3.0 ± 0.5"]
    (mechanism,) = [rows for heading, rows in tables.items() if heading.startswith("Mechanism")]
    assert mechanism == [["measure", "all", "lora", "within setting and method"],
                         ["delta_norm_total", "-0.80 (n 5)", "-0.50 (n 3)", "+0.30 (n 4, 2 groups)"],
                         ["kl_to_base", "+0.40 (n 4)", "n/a (n 2)", "n/a (n 0, 0 groups)"]]


def test_the_studys_correlations_are_spearmans_rho_of_each_measure_with_bwt(finished_study):
    """Recomputed with scipy from every setting's analysis.json (the numbers study.md and its figure show)."""
    from scipy.stats import spearmanr

    from robust_sft.analysis.mechanism import MEASURES

    out, summary = finished_study
    units = [row for name in summary["settings"]
             for entry in json.loads((out / name / "analysis.json").read_text())["methods"].values()
             for row in entry["seeds"].values()]
    assert len(units) == summary["mechanism"]["units"]
    for measure in MEASURES:
        pairs = [(u[measure], u["bwt"]) for u in units if u.get(measure) is not None and u.get("bwt") is not None]
        pairs = [(x, y) for x, y in pairs if x == x and y == y]  # finite: NaN != NaN
        expected = spearmanr(*zip(*pairs)).statistic
        stated = summary["mechanism"]["correlations"][measure]
        assert stated["n"] == len(pairs)
        if expected == expected:
            assert stated["rho"] == pytest.approx(expected, abs=1e-12)
        else:
            assert stated["rho"] is None  # scipy's NaN: a constant side


def test_criteria_are_counted_over_held_out_settings_with_the_design_worlds_apart():
    def judged(cid, status, evidence="+1.0 [+0.5, +1.5]"):
        return {"id": cid, "claim": f"claim {cid}", "method": "stm@2.5", "versus": "gt", "quantity": "ti_pp",
                "holds_if": "lower > 0", "requires": [], "status": status, "evidence": evidence}

    results = {"w0-lora": {"criteria": [judged("P", "held"), judged("S", "held")]},
               "w1-lora": {"criteria": [judged("P", "held"), judged("S", "not held")]},
               "w2-lora": {"criteria": [judged("P", "not held"), judged("S", "not counted")]},
               "w3-lora": {"criteria": [judged("P", "held"), judged("S", "held")]}}
    worlds = {"w0-lora": 0, "w1-lora": 1, "w2-lora": 2, "w3-lora": 3}
    rows = {row["id"]: row for row in criteria_table(results, worlds, design_worlds=[0])}
    assert rows["S"]["held_out"] == {"held": 1, "not held": 1, "not counted": 1, "not tested": 0, "n": 3}
    assert rows["S"]["design"] == {"held": 1, "not held": 0, "not counted": 0, "not tested": 0, "n": 1}
    assert rows["P"]["held_out"]["held"] == 2 and rows["S"]["subject"] == "stm@2.5 minus gt"
    # the same results can reach the other outcome: every S held in the held-out worlds
    results["w1-lora"]["criteria"][1]["status"] = results["w2-lora"]["criteria"][1]["status"] = "held"
    assert criteria_table(results, worlds, [0])[1]["held_out"]["held"] == 3
    section = "\n".join(render_criteria(list(rows.values()), list(results), [0]))
    assert "| (S) claim S | stm@2.5 minus gt: ti_pp lower > 0 | 1 of 3 (1 not counted) | 1 of 1 |" in section
    assert "## Pre-registered criteria: held in k of n held-out settings" in section


def test_the_world_that_selects_the_options_is_a_design_world(tiny_model_dir):
    with pytest.raises(ValueError, match="world 0 selects the options .* add it to design_worlds"):
        mini_study(tiny_model_dir, worlds=[0, 1, 2], design_worlds=[1])
    with pytest.raises(ValueError, match=r"design_worlds \[5\] must be among worlds"):
        mini_study(tiny_model_dir, design_worlds=[5])
    assert mini_study(tiny_model_dir, worlds=[0, 1, 2], design_worlds=[0]).design_worlds == [0]


def test_settings_run_on_another_machine_merge_back_and_the_study_redoes_only_what_was_removed(
        finished_study, tiny_model_dir, tmp_path, monkeypatch):
    """scripts/study_settings.py on a copy of the study: world 1 again (every unit cached), one unit's mechanism
    measures lost and the runs stopped at once, no time to measure: that unit is removed, the rest kept; the study
    then retrains it alone."""
    import os
    import shutil
    import subprocess
    import sys
    from dataclasses import asdict
    from pathlib import Path

    import yaml

    import robust_sft.training.trainer as training

    out, _ = finished_study
    copy = tmp_path / "copy"
    shutil.copytree(out, copy)
    config = tmp_path / "mini.yaml"
    config.write_text(yaml.safe_dump(asdict(mini_study(tiny_model_dir))))
    (copy / "w1-lora" / "analysis" / "gt" / "seed0.json").unlink()
    root = Path(__file__).parents[1]
    runner = tmp_path / "run_settings.py"  # spawned processes re-import it: the test tasks exist in each of them
    runner.write_text("import tests.fake_tasks  # noqa: F401\nfrom study_settings import main\n\n"
                      "if __name__ == '__main__':\n    main()\n")
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(root), str(root / "scripts"), *sys.path])}
    result = subprocess.run([sys.executable, str(runner), str(config), "--out", str(copy), "--worlds", "1",
                             "--workers", "2", "--train_seconds", "0", "--analyze_seconds", "0"], env=env, capture_output=True, text=True,
                            timeout=900)
    assert result.returncode == 0, result.stderr[-3000:]
    plan = json.loads((copy / "w1-lora" / "plan.json").read_text())
    kept = len(plan["variants"]) * len(plan["seeds"]) - 1
    removed = [line for line in result.stderr.splitlines() if "removed" in line]
    assert any(f"w1-lora: {kept} units trained here, evaluated and measured (kept)" in line
               and line.endswith("1 removed") for line in removed), removed
    assert not (copy / "w1-lora" / "models" / "gt" / "seed0").exists()
    assert not (copy / "w1-lora" / "eval" / "gt" / "seed0").exists()
    assert (copy / "w1-lora" / "eval" / "stm@500" / "seed0" / "stage_key.json").exists()

    trained, train = [], training.train
    monkeypatch.setattr(training, "train",
                        lambda config, **kw: (trained.append(config.output_dir), train(config, **kw))[1])
    Study(mini_study(tiny_model_dir), copy, progress=False).run()
    assert trained == [str(copy / "w1-lora" / "models" / "gt" / "seed0")]


def test_a_study_whose_model_moved_with_the_cache_trains_nothing_again(tiny_model_dir, tmp_path, monkeypatch):
    """The selection keeps its keys too (it writes its own plan.json): a study directory made in another clone or
    home, its model at another absolute path under the moved model cache, resumes without training."""
    import shutil

    import robust_sft.training.trainer as training

    def study_on(cache):
        monkeypatch.setenv("ROBUST_SFT_CACHE", str(cache))
        model = str(cache / "models" / "tiny")
        experiment = {**mini_study(model).experiment, "methods": ["gt", "oracle"], "lr_sweep": {}, "criteria": []}
        return mini_study(model, worlds=[0], lr_control={}, experiment=experiment,
                          modes={"lora": {"train": {"finetuning": "lora"}, "grid": {"lora_r": [4]}}})

    shutil.copytree(tiny_model_dir, tmp_path / "cache1" / "models" / "tiny")
    out = tmp_path / "study"
    Study(study_on(tmp_path / "cache1"), out, progress=False).run()
    assert json.loads((out / "select" / "plan.json").read_text())["base_model"]["key"]
    shutil.move(tmp_path / "cache1", tmp_path / "cache2")
    trained = []
    monkeypatch.setattr(training, "train", lambda config, **kw: trained.append(config.output_dir))
    Study(study_on(tmp_path / "cache2"), out, progress=False).run()
    assert trained == []
