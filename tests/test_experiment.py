import json
import math
import shutil

import pytest

import tests.fake_tasks  # noqa: F401  (registers the test tasks)
from robust_sft.experiment.plan import sources_needed
from robust_sft.experiment.runner import Experiment, ExperimentConfig, load_config, plan_variants


def mini_config(model_dir: str, **overrides) -> ExperimentConfig:
    options = dict(
        name="mini", model=model_dir, target="test/even_length", others=["test/nonempty", "test/has_space"],
        methods=["gt", "stm", "self_output", "rephrase", "stm_random", "stm_lowest", "dft", "eaft", "oracle",
                 "stm_auto", "answer_aware", "hindsight", "style_only", "departure_kept"],
        # a random tiny model has token perplexity ~500: these taus mask part of the tokens
        taus=[500, 1e6], control_tau=500, lr_sweep={"gt": [0.5], "stm": [1, 0.5]}, seeds=[0], train_limit=16, validation_limit=8, eval_limit=8,
        eval_batch_size=16,
        train={"max_steps": 2, "num_train_epochs": 1, "per_device_train_batch_size": 8, "learning_rate": 1e-3},
        generation={"n": 4, "max_new_tokens": 8, "batch_size": 32},
    )
    return ExperimentConfig(**{**options, **overrides})


def test_variants_cover_methods_and_taus():
    config = ExperimentConfig(methods=["gt", "stm", "stm_random", "dft", "self_output"], taus=[2, 2.5])
    names = [v.name for v in plan_variants(config)]
    assert names == ["gt", "stm@2", "stm@2.5", "stm_random@2.5", "dft", "self_output"]
    with pytest.raises(ValueError, match="unknown method"):
        ExperimentConfig(methods=["magic"])
    policies = plan_variants(ExperimentConfig(methods=["stm_auto", "answer_aware", "hindsight"], control_tau=5))
    assert [(v.name, v.mask, v.tau) for v in policies] == [("stm@auto", "threshold", "auto"),
                                                          ("answer_aware@5", "answer_aware", 5),
                                                          ("hindsight@5", "hindsight", 5)]
    style = plan_variants(ExperimentConfig(methods=["style_only"]))  # GT's answers, Self-Output's problems
    assert [(v.name, v.source) for v in style] == [("style_only", "gt")]
    assert sources_needed(style) == ["gt", "self_output"]
    swept = ExperimentConfig(methods=["gt", "stm", "eaft"], taus=[2.5], train={"learning_rate": 3e-4},
                             lr_sweep={"gt": [1 / 3, 0.1], "stm": [0.1]})
    variants = plan_variants(swept)
    assert [v.name for v in variants] == ["gt", "stm@2.5", "eaft", "gt_lr1e-04", "gt_lr3e-05", "stm@2.5_lr3e-05"]
    assert dict(variants[3].train_overrides)["learning_rate"] == pytest.approx(1e-4) and variants[3].lr_scale == 1 / 3
    assert dict(variants[5].train_overrides)["tau"] == 2.5 and dict(variants[2].train_overrides)["loss"] == "eaft"
    with pytest.raises(ValueError, match="lr_sweep: method 'rephrase' cannot be swept"):
        ExperimentConfig(lr_sweep={"rephrase": [0.5]})
    with pytest.raises(ValueError, match="same learning rate twice"):
        plan_variants(ExperimentConfig(methods=["gt"], train={"learning_rate": 3e-4}, lr_sweep={"gt": [0.1, 0.1]}))
    with pytest.raises(ValueError, match="train: unknown option"):
        ExperimentConfig(train={"learning_rat": 1})


def test_yaml_config_errors_name_the_file(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("name: x\nmodle: organism\n")
    with pytest.raises(ValueError, match=r"c\.yaml: unknown option\(s\) \['modle'\]"):
        load_config(path)


@pytest.fixture(scope="module")
def finished_run(tmp_path_factory, tiny_model_dir):
    run_dir = tmp_path_factory.mktemp("run")
    results = Experiment(mini_config(tiny_model_dir), run_dir, progress=False).run()
    return run_dir, results


def test_every_artifact_is_written(finished_run):
    run_dir, _ = finished_run
    for source in ("gt", "self_output", "rephrase", "oracle"):
        assert (run_dir / "data" / f"{source}.jsonl").stat().st_size > 0
        assert (run_dir / "scores" / f"{source}.parquet").exists()
    for source in ("self_output", "rephrase"):
        report = json.loads((run_dir / "data" / f"{source}.report.json").read_text())
        assert report["prompts"] == 16 and report["seconds"] > 0
    base = json.loads((run_dir / "eval" / "base" / "accuracies.json").read_text())
    assert set(base) == {"test/even_length", "test/nonempty", "test/has_space"}
    log = (run_dir / "eval" / "base" / "test__even_length.jsonl").read_text().splitlines()
    assert len(log) == 8 and set(json.loads(log[0])) == {"id", "prompt", "completion", "extracted", "correct"}
    names = ["gt", "stm@500", "stm@1e+06", "self_output", "rephrase", "stm_random@500", "stm_lowest@500", "dft",
             "eaft", "oracle", "stm@auto", "answer_aware@500", "hindsight@500", "gt_lr5e-04", "stm@500_lr5e-04"]
    for name in names:
        assert (run_dir / "models" / name / "seed0" / "final" / "adapter_model.safetensors").exists()
        assert (run_dir / "eval" / name / "seed0" / "accuracies.json").exists()
    for figure in ("ti_vs_bwt.png", "ppl_vs_bwt.png", "tau_sweep.png", "token_ppl_hist.png", "lr_control.png"):
        assert (run_dir / "figures" / figure).read_bytes()[:4] == b"\x89PNG"
    report = (run_dir / "report.md").read_text()
    assert "Table 1" in report and "Table 2" in report and "claims" in report


def test_results_schema(finished_run):
    run_dir, results = finished_run
    assert json.loads((run_dir / "results.json").read_text()) == json.loads(json.dumps(results))
    assert results["schema"] == "robust-sft/results/v1" and results["target"] == "test/even_length"
    assert set(results["data"]) == {"gt", "self_output", "rephrase", "oracle"}
    for entry in results["data"].values():
        assert {"examples", "sequence_ppl_mean", "sequence_ppl_var", "generation_seconds"} <= set(entry)
    for name, m in results["methods"].items():
        assert {"method", "tau", "masked_fraction", "data_cost_seconds", "seeds", "mean", "std"} <= set(m)
        seed = m["seeds"]["0"]
        assert {"accuracies", "target_accuracy", "ti", "bwt"} <= set(seed)
        assert 0 <= seed["target_accuracy"] <= 1
        assert m["mean"]["bwt"] == seed["bwt"] or math.isnan(seed["bwt"])
    methods = results["methods"]
    assert methods["gt"]["masked_fraction"] == 0 and 0 < methods["stm@500"]["masked_fraction"] < 1
    # the controls mask the same number of tokens as STM at their tau
    assert methods["stm_random@500"]["masked_fraction"] == methods["stm@500"]["masked_fraction"]
    assert methods["stm_lowest@500"]["masked_fraction"] == methods["stm@500"]["masked_fraction"]
    assert {c["status"] for c in results["claims"]} <= {"held", "not held", "not tested"}
    assert {c["id"] for c in results["claims"]} >= {"a", "b1", "o", "c-stm@500", "c-self_output", "c-rephrase",
                                                    "m", "d", "f"}
    # the learning-rate control: the swept variants train at the scaled rate and stay out of claims (a)-(e)
    assert methods["gt_lr5e-04"]["learning_rate"] == pytest.approx(5e-4) and methods["gt_lr5e-04"]["lr_scale"] == 0.5
    assert methods["gt"]["learning_rate"] == pytest.approx(1e-3) and methods["gt"]["lr_scale"] == 1.0
    summary = json.loads((run_dir / "models" / "stm@500_lr5e-04" / "seed0" / "train_summary.json").read_text())
    assert summary["config"]["learning_rate"] == pytest.approx(5e-4) and summary["config"]["tau"] == 500
    assert methods["eaft"]["loss"] == "eaft" and methods["eaft"]["masked_fraction"] == 0
    # the departure-kept control: STM at control_tau plus each answer's departure token (found once, keyed)
    departures = json.loads((run_dir / "scores" / "gt.departure.json").read_text())
    assert len(departures) == methods["gt"]["train_examples"]
    from robust_sft.scoring.files import load_scores

    gt_scores = load_scores(run_dir / "scores" / "gt.parquet")
    rescued = sum(d is not None and gt_scores.token_nll[i][d] > math.log(500)  # departures STM@500 would mask
                  for i, d in enumerate(departures[e] for e in gt_scores.ids))
    answer_tokens = sum(int(m.sum()) for m in gt_scores.answer_mask)
    kept_extra = methods["stm@500"]["masked_fraction"] - methods["departure_kept@500"]["masked_fraction"]
    assert kept_extra == pytest.approx(rescued / answer_tokens)
    # the style-only control trains on GT's answers to exactly the problems Self-Output solved
    solved = json.loads((run_dir / "data" / "style_only_seed0.json").read_text())
    so_rows = (run_dir / "data" / "self_output.jsonl").read_text().splitlines()
    assert solved == [json.loads(line)["id"] for line in so_rows]
    assert methods["style_only"]["train_examples"] == len(solved) == results["data"]["self_output"]["examples"]
    assert methods["style_only"]["source"] == "gt" and methods["style_only"]["masked_fraction"] == 0
    # GT at two rates: every other variant is read against GT's learning-rate frontier; GT's own rates are not
    gap = methods["stm@500"]["over_gt_frontier"]
    assert gap["frontier"] == ["gt", "gt_lr5e-04"] and gap["interval"][0] <= gap["estimate"] <= gap["interval"][1]
    assert "over_gt_frontier" not in methods["gt"] and "over_gt_frontier" not in methods["gt_lr5e-04"]
    # STM's tau grid (500, 1e6): where TI + BWT is highest, on the grid, with an interval on the grid
    optimum = results["tau_optima"]["stm"]
    assert optimum["estimate"] in (500, 1e6) and set(optimum["interval"]) <= {500, 1e6}
    assert set(optimum["ti_plus_bwt"]) == {"500", "1e+06"} and list(results["tau_optima"]) == ["stm"]
    # sample-wise forgetting: per other task, the shares of base-right items lost and base-wrong items gained
    for task in ("test/nonempty", "test/has_space"):
        t = methods["gt"]["seeds"]["0"]["transitions"][task]
        assert t["base_right"] + t["base_wrong"] == 8
        assert math.isnan(t["right_to_wrong"]) or 0 <= t["right_to_wrong"] <= 1
    # the masked-token diagnostic counts every masked answer token of the last turn once, inside or outside the span
    location = methods["stm@500"]["mask_location"]
    assert location["examples"] == 16
    assert location["masked_answer_tokens"] + location["masked_prose_tokens"] > 0
    assert methods["gt"]["mask_location"] is None


def test_plan_json_records_every_variant_as_its_units_trained_it(finished_run):
    """(Before the rerun test below changes the run's config.)"""
    from pathlib import Path

    run_dir, results = finished_run
    plan = json.loads((run_dir / "plan.json").read_text())
    assert plan["base_model"]["path"] == results["model"] and plan["seeds"] == [0]
    assert [plan["target"], *plan["others"]] == ["test/even_length", "test/nonempty", "test/has_space"]
    assert [v["name"] for v in plan["variants"]] == list(results["methods"])
    for variant in plan["variants"]:
        entry = variant["seeds"]["0"]
        trained = json.loads((run_dir / "models" / variant["name"] / "seed0" / "train_summary.json").read_text())
        trained = trained["config"]
        assert entry["policy"] == {"kind": trained["mask"], "tau": trained["tau"], "ratio": trained["ratio"],
                                   "seed": trained["mask_seed"], "dpf_tau": trained["dpf_tau"]}
        paths = ("data", "output_dir", "hinted_scores", "example_ids", "departure_file")
        for name in paths:  # relative: a copied run directory's plan stays true
            if trained[name] is not None:
                assert not Path(entry["train"][name]).is_absolute()
                assert run_dir / entry["train"][name] == Path(trained[name])
        assert {k: v for k, v in entry["train"].items() if k not in paths} == {
            k: v for k, v in trained.items() if k not in (*paths, "progress")}
        method = results["methods"][variant["name"]]
        for key in ("method", "source", "loss", "learning_rate", "lr_scale"):
            assert variant[key] == method[key], (variant["name"], key)
        # tau auto: the plan says auto, the results the value the rule chose from GT's scores
        assert variant["tau"] == method["tau"] or (variant["tau"] == "auto" and method["tau"] >= 10)
    assert plan["variants"][-1]["seeds"]["0"]["train"]["learning_rate"] == pytest.approx(5e-4)  # stm@500_lr5e-04


def test_policy_variants_train_on_their_masks_and_report_them(finished_run):
    from robust_sft.masking.policies import auto_tau
    from robust_sft.scoring.files import load_scores

    run_dir, results = finished_run
    methods = results["methods"]
    gt = load_scores(run_dir / "scores" / "gt.parquet")
    hinted = load_scores(run_dir / "scores" / "gt.hinted.parquet")  # beside the plain scores, keyed
    assert (run_dir / "scores" / "gt.hinted.parquet.key.json").exists()
    assert all("Hint: the number is" in m[0]["content"] for m in hinted.messages)
    assert [json.loads(line)["hint"] for line in (run_dir / "data" / "gt.hinted.jsonl").read_text().splitlines()][:2] \
        == ["Hint: the number is 0", "Hint: the number is 1"]
    auto = methods["stm@auto"]
    assert auto["tau"] == pytest.approx(auto_tau([gt.answer_nll(i) for i in range(len(gt))]))
    assert auto["tau_rule"].startswith("auto: 10 x the median")
    for name, kind in (("answer_aware@500", "answer_aware"), ("hindsight@500", "hindsight")):
        summary = json.loads((run_dir / "models" / name / "seed0" / "train_summary.json").read_text())
        assert summary["mask_report"]["policy"] == kind and summary["mask_report"]["tau"] == 500
        assert methods[name]["masked_fraction"] == summary["mask_report"]["masked_fraction"]
        # each keeps some of the tokens STM at the same tau masks
        assert methods[name]["masked_fraction"] <= methods["stm@500"]["masked_fraction"]
    # answer-aware masks no token of the span the target's checker reads
    assert methods["answer_aware@500"]["mask_location"]["masked_answer_tokens"] == 0
    assert methods["stm@500"]["mask_location"]["masked_answer_tokens"] > 0
    hindsight = json.loads((run_dir / "models" / "hindsight@500" / "seed0" / "train_summary.json").read_text())
    assert hindsight["config"]["hinted_scores"] == str(run_dir / "scores" / "gt.hinted.parquet")
    assert methods["hindsight@500"]["data_cost_seconds"] > methods["stm@500"]["data_cost_seconds"]
    report = (run_dir / "report.md").read_text()
    assert "`stm@auto`: STM at the tau the auto rule picks" in report and "| hindsight@500 |" in report
    page = (run_dir / "inspect.html").read_text()
    assert '"policy":"hindsight"' in page and '"span_task":"test/even_length"' in page


def test_trained_token_ppl_is_that_of_the_tokens_each_method_trains_on(finished_run):
    import numpy as np

    from robust_sft.scoring.files import load_scores

    run_dir, results = finished_run
    methods = results["methods"]
    for name, source in (("gt", "gt"), ("self_output", "self_output"), ("oracle", "oracle")):  # every answer token
        scores = load_scores(run_dir / "scores" / f"{source}.parquet")
        nll = np.concatenate([scores.answer_nll(i) for i in range(len(scores))])
        assert methods[name]["trained_token_ppl"] == pytest.approx(math.exp(nll.mean()), rel=1e-5)
    # STM drops the highest-perplexity tokens, the lowest-masking control as many of the lowest
    assert (methods["stm@500"]["trained_token_ppl"] < methods["gt"]["trained_token_ppl"]
            < methods["stm_lowest@500"]["trained_token_ppl"])


def test_rerun_skips_everything_and_a_new_seed_trains_only_itself(finished_run, tiny_model_dir, monkeypatch):
    import robust_sft.training.trainer as training

    run_dir, _ = finished_run
    trained = []
    real_train = training.train
    resumed = []
    monkeypatch.setattr(training, "train", lambda config, **kw: trained.append(config.output_dir) or
                        resumed.append(config.resume_from_checkpoint) or real_train(config, **kw))
    Experiment(mini_config(tiny_model_dir), run_dir, progress=False).run()
    assert trained == []
    # a stage killed half-way (no key written, so nothing evaluated) is redone, and only it
    (run_dir / "models" / "dft" / "seed0" / "stage_key.json").unlink()
    shutil.rmtree(run_dir / "eval" / "dft" / "seed0")
    Experiment(mini_config(tiny_model_dir), run_dir, progress=False).run()
    assert trained == [str(run_dir / "models" / "dft" / "seed0")]
    assert resumed == ["latest"]  # its epoch checkpoint was kept and training resumed from it
    trained.clear()
    results = Experiment(mini_config(tiny_model_dir, seeds=[0, 1], methods=["gt"], lr_sweep={}), run_dir,
                         progress=False).run()
    assert trained == [str(run_dir / "models" / "gt" / "seed1")]
    gt = results["methods"]["gt"]
    assert set(gt["seeds"]) == {"0", "1"}
    bwts = [gt["seeds"][k]["bwt"] for k in ("0", "1")]
    if not any(math.isnan(b) for b in bwts):
        assert gt["mean"]["bwt"] == pytest.approx(sum(bwts) / 2)
        assert gt["std"]["bwt"] == pytest.approx(abs(bwts[0] - bwts[1]) / math.sqrt(2))


def test_a_run_directory_without_weights_resumes_and_reports_the_same(finished_run, tiny_model_dir, tmp_path,
                                                                         monkeypatch):
    """A run kept without its models' weights (committed, or trimmed for disk) trains nothing it has evaluated;
    a unit whose weights are gone before its evaluation is trained again."""
    import robust_sft.training.trainer as training

    run_dir = tmp_path / "run"
    shutil.copytree(finished_run[0], run_dir)
    for final in run_dir.glob("models/*/seed*/final"):
        shutil.rmtree(final)
    trained = []
    real_train = training.train
    monkeypatch.setattr(training, "train", lambda config, **kw: trained.append(config.output_dir) or
                        real_train(config, **kw))
    results = Experiment(mini_config(tiny_model_dir), run_dir, progress=False).run()
    assert trained == []
    same = [json.dumps(r["methods"], sort_keys=True) for r in (results, finished_run[1])]  # NaN-safe comparison
    assert same[0] == same[1]
    shutil.rmtree(run_dir / "eval" / "gt" / "seed0")  # killed before its evaluation, on a machine without weights
    Experiment(mini_config(tiny_model_dir), run_dir, progress=False).run()
    assert trained == [str(run_dir / "models" / "gt" / "seed0")]
    assert (run_dir / "models" / "gt" / "seed0" / "final").is_dir()
    assert (run_dir / "eval" / "gt" / "seed0" / "accuracies.json").exists()


def test_nan_evidence_is_not_tested():
    from robust_sft.report.claims import judge_claims

    nan = float("nan")
    method = {"method": "gt", "tau": None, "masked_fraction": 0.0,
              "mean": {"bwt": nan, "ti": 1.0, "target_accuracy": 0.5}, "std": {"bwt": nan, "ti": 0.0}}
    claims = judge_claims({"data": {}, "methods": {"gt": method}})
    assert next(c for c in claims if c["id"] == "b1")["status"] == "not tested"


def test_oracle_trains_on_the_tasks_own_style_answers(finished_run):
    run_dir, results = finished_run
    rows = [json.loads(line) for line in (run_dir / "data" / "oracle.jsonl").read_text().splitlines()]
    gt = [json.loads(line) for line in (run_dir / "data" / "gt.jsonl").read_text().splitlines()]
    assert [r["prompt"] for r in rows] == [r["prompt"] for r in gt]
    assert [r["answer"] for r in rows] == [str(i) for i in range(16)]
    assert results["methods"]["oracle"]["source"] == "oracle"


def test_oracle_needs_a_task_that_can_write_the_models_style(tmp_path, tiny_model_dir, monkeypatch):
    from robust_sft.tasks.base import Task
    from tests.fake_tasks import EvenLength

    # refused when the runner is built (so `run --dry_run` refuses it), before anything is scored or trained
    monkeypatch.setattr(EvenLength, "oracle_reference", Task.oracle_reference)
    with pytest.raises(ValueError, match="method oracle: task test/even_length cannot write answers"):
        Experiment(mini_config(tiny_model_dir, methods=["oracle"]), tmp_path, progress=False)
    # a task that claims it can but returns nothing for an example: named at the data stage
    monkeypatch.setattr(EvenLength, "oracle_reference", lambda self, example: None)
    experiment = Experiment(mini_config(tiny_model_dir, methods=["oracle"]), tmp_path, progress=False)
    with pytest.raises(ValueError, match="wrote no answer in the model's own style for 16 example"):
        experiment.run()


def _method(method, ti, ti_sd, bwt, bwt_sd, tau=None, **extra):
    return {"method": method, "tau": tau, "masked_fraction": 0.2 if tau else 0.0,
            "mean": {"ti": ti, "bwt": bwt, "target_accuracy": 0.5}, "std": {"ti": ti_sd, "bwt": bwt_sd}, **extra}


def test_learning_claims_separate_learning_from_standing_still():
    from robust_sft.report.claims import judge_claims

    location = {"answer_tokens_masked": 0.02, "prose_tokens_masked": 0.4, "share_of_masked_in_answer": 0.01}
    methods = {"gt": _method("gt", -30, 5, -70, 2), "oracle": _method("oracle", 60, 8, -1, 1),
               "stm@2.5": _method("stm", 30, 10, -5, 2, tau=2.5, mask_location=location),
               "self_output": _method("self_output", 5, 8, -3, 1), "rephrase": _method("rephrase", -2, 1, -9, 3)}
    claims = {c["id"]: c for c in judge_claims({"data": {}, "methods": methods})}
    assert claims["o"]["status"] == "held"
    assert claims["c-stm@2.5"]["status"] == "held" and "50 % of the oracle's gain" in claims["c-stm@2.5"]["evidence"]
    assert claims["c-self_output"]["status"] == "not held"  # +5 within its spread of 8: standing still
    assert claims["c-rephrase"]["status"] == "not held"
    assert claims["m"]["status"] == "held"
    # an oracle that forgets, or does not gain beyond its spread, fails the positive control
    methods["oracle"] = _method("oracle", 60, 8, -12, 1)
    assert {c["id"]: c for c in judge_claims({"data": {}, "methods": methods})}["o"]["status"] == "not held"
    methods["oracle"] = _method("oracle", 6, 8, 0, 1)
    assert {c["id"]: c for c in judge_claims({"data": {}, "methods": methods})}["o"]["status"] == "not held"
    # STM masking the answer span more than the prose is reported as such
    methods["stm@2.5"]["mask_location"] = {**location, "answer_tokens_masked": 0.5}
    assert {c["id"]: c for c in judge_claims({"data": {}, "methods": methods})}["m"]["status"] == "not held"


def test_a_lone_yaml_argument_is_the_run_config(tmp_path):
    from robust_sft.cli import RunConfig, _parse

    path = tmp_path / "c.yaml"
    path.write_text("name: x\n")
    assert _parse(RunConfig, [str(path)], "run", positional="config") == RunConfig(config=str(path))


def test_dry_run_prints_the_plan_without_loading_a_model(tiny_model_dir, tmp_path, capsys):
    from robust_sft.cli import main

    config = tmp_path / "c.yaml"
    config.write_text("name: plan\nmodel: /nonexistent/model\ntarget: test/even_length\n"
                      "others: [test/nonempty]\nmethods: [gt, stm]\ntaus: [2, 2.5]\nseeds: [0, 1, 2]\n")
    assert main(["run", str(config), "--out", str(tmp_path / "r"), "--dry_run"]) == 0
    out = capsys.readouterr().out
    assert "3 variants x 3 seeds = 9 fine-tuning runs" in out
    assert "target train examples: 16" in out and "stm@2.5" in out
    assert not (tmp_path / "r").exists()


def test_organism_tasks_use_the_configs_world(tmp_path):
    from robust_sft.tasks import get_task

    experiment = Experiment(ExperimentConfig(world=3, target="organism/sort"), tmp_path)
    assert experiment.task_kwargs("organism/facts") == {"seed": 3} and experiment.task_kwargs("gsm8k") == {}
    seeded = experiment.load_examples("organism/facts", "test", 5)
    assert seeded == get_task("organism/facts", seed=3).load("test", limit=5)
    assert seeded != get_task("organism/facts", seed=0).load("test", limit=5)  # another world


def test_the_target_can_have_a_larger_test_set(tmp_path, tiny_model_dir):
    from robust_sft.evaluation.engine import evaluate_tasks
    from robust_sft.models.loading import load_model, load_tokenizer

    experiment = Experiment(mini_config(tiny_model_dir, eval_limit=3, target_eval_limit=6), tmp_path, progress=False)
    experiment.tasks = [experiment.config.target, *experiment.other_tasks()]
    limits = experiment.eval_limits()
    assert limits == {"test/even_length": 6, "test/nonempty": 3, "test/has_space": 3}
    evaluate_tasks(load_model(tiny_model_dir), load_tokenizer(tiny_model_dir), list(limits), limit=limits,
                   batch_size=8, log_dir=tmp_path / "eval", progress=False)
    counts = {t: v["n"] for t, v in json.loads((tmp_path / "eval" / "accuracies.json").read_text()).items()}
    assert counts == limits


def test_units_in_parallel_processes_give_the_same_results(tmp_path, tiny_model_dir):
    import torch

    options = dict(methods=["gt", "stm"], taus=[500], seeds=[0, 1])
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # the workers' thread count: same float reductions, so results must be equal
    try:
        serial = Experiment(mini_config(tiny_model_dir, **options), tmp_path / "serial", progress=False).run()
    finally:
        torch.set_num_threads(threads)
    parallel = Experiment(mini_config(tiny_model_dir, workers=2, **options), tmp_path / "parallel",
                          progress=False).run()
    for name in ("gt", "stm@500"):
        for seed in ("0", "1"):
            a, b = serial["methods"][name]["seeds"][seed], parallel["methods"][name]["seeds"][seed]
            assert a["accuracies"] == b["accuracies"]
            assert a["train_loss"] == pytest.approx(b["train_loss"], rel=1e-6)
    with pytest.raises(ValueError, match="workers must be at least 1"):
        mini_config(tiny_model_dir, workers=0)


def test_the_random_controls_mask_seed_is_the_units_seed_in_the_plan(tmp_path, tiny_model_dir):
    experiment = Experiment(mini_config(tiny_model_dir, methods=["stm_random", "gt"], lr_sweep={}, seeds=[0, 3]),
                            tmp_path, progress=False)
    experiment.base, experiment.base_key, experiment.tasks = tiny_model_dir, "key", ["test/even_length"]
    experiment.base_keyed_path = tiny_model_dir
    stm_random, gt = experiment.plan()["variants"]
    assert {s: e["policy"]["seed"] for s, e in stm_random["seeds"].items()} == {"0": 0, "3": 3}
    assert {s: e["policy"]["kind"] for s, e in stm_random["seeds"].items()} == {"0": "random", "3": "random"}
    assert {s: e["policy"]["seed"] for s, e in gt["seeds"].items()} == {"0": 0, "3": 0}
    assert not (tmp_path / "plan.json").exists()  # building the plan writes nothing; the run writes it


def test_executor_options_and_the_older_workers_field(tmp_path):
    from dataclasses import asdict

    from robust_sft.executors import ExecutorConfig

    assert ExperimentConfig(workers=2).executor == ExecutorConfig(workers=2)
    assert ExperimentConfig().executor == ExecutorConfig() and ExperimentConfig().workers == 1
    on_ray = ExperimentConfig(executor={"executor": "ray", "ray_address": "auto", "workers": 0, "gpus_per_unit": "0.5"})
    assert on_ray.executor == ExecutorConfig(executor="ray", ray_address="auto", workers=0, gpus_per_unit=0.5)
    assert on_ray.workers == 0
    # config.json (asdict, through JSON) builds the same config again, as `robust-sft report` does
    assert ExperimentConfig(**json.loads(json.dumps(asdict(on_ray)))) == on_ray
    assert ExperimentConfig(workers=3, executor={"workers": 3}).workers == 3
    with pytest.raises(ValueError, match="workers 2 and executor.workers 3 disagree"):
        ExperimentConfig(workers=2, executor={"workers": 3})
    with pytest.raises(ValueError, match=r"executor: unknown option\(s\) \['adress'\]"):
        ExperimentConfig(executor={"executor": "ray", "adress": "auto"})
    with pytest.raises(ValueError, match="executor: executor must be one of local, ray, not 'slurm'"):
        ExperimentConfig(executor={"executor": "slurm"})
    path = tmp_path / "c.yaml"
    path.write_text("name: x\nexecutor:\n  executor: ray\n  ray_address: ray://head:10001\n  cpus_per_unit: 2\n")
    config = load_config(path)
    assert config.executor.ray_address == "ray://head:10001" and config.executor.cpus_per_unit == 2.0
    assert "Ray tasks on the Ray cluster at ray://head:10001" in Experiment(config, tmp_path / "r").describe_plan()


@pytest.mark.slow  # about a minute: Ray's start-up and its workers' imports on 2 cores
def test_units_on_ray_give_the_same_results_as_local_processes(tmp_path, tiny_model_dir):
    pytest.importorskip("ray", reason="ray is not installed (pip install -e '.[ray]')")
    options = dict(methods=["gt", "stm"], taus=[500], seeds=[0, 1], lr_sweep={})  # 4 units
    # One torch thread per unit in both (2 cores // 2 workers; 1 CPU per Ray task): the same float reductions.
    local = Experiment(mini_config(tiny_model_dir, workers=2, **options), tmp_path / "local", progress=False).run()
    # No address: a Ray instance is started on this machine for the run, and stopped after.
    on_ray = Experiment(mini_config(tiny_model_dir, executor={"executor": "ray", "workers": 0}, **options),
                        tmp_path / "ray", progress=False).run()
    saved = json.loads((tmp_path / "ray" / "results.json").read_text())
    assert saved["methods"] == json.loads(json.dumps(on_ray["methods"]))
    for name in ("gt", "stm@500"):
        for seed in ("0", "1"):
            a, b = local["methods"][name]["seeds"][seed], on_ray["methods"][name]["seeds"][seed]
            for key in ("accuracies", "target_accuracy", "ti", "bwt", "train_loss"):
                assert a[key] == b[key], (name, seed, key)
        for key in ("target_accuracy", "ti", "bwt"):
            assert local["methods"][name]["mean"][key] == on_ray["methods"][name]["mean"][key]


def test_policy_methods_need_a_target_that_can_serve_them(tmp_path, tiny_model_dir, capsys):
    for method, refused in (("answer_aware", "does not say where its checker reads"), ("hindsight", "gives no hint")):
        with pytest.raises(ValueError, match=f"method {method}: task test/mystery {refused}"):
            Experiment(mini_config(tiny_model_dir, target="test/mystery", methods=["gt", method]), tmp_path / method)
    exp = Experiment(mini_config(tiny_model_dir, methods=["gt", "hindsight"]), tmp_path / "dry")
    plan = exp.describe_plan()
    assert "data/gt.hinted.jsonl" in plan and "scores/gt.hinted.parquet" in plan and "hindsight@500" in plan


def test_a_run_resumes_where_its_base_model_moved_with_the_cache(tmp_path, tiny_model_dir, monkeypatch):
    """A run directory made on another machine or clone (its model at another absolute path, under the moved
    model cache) trains nothing again; plan.json records where its keys were made."""
    import robust_sft.training.trainer as training

    first = tmp_path / "cache1"
    shutil.copytree(tiny_model_dir, first / "models" / "tiny")
    monkeypatch.setenv("ROBUST_SFT_CACHE", str(first))
    run_dir = tmp_path / "run"
    config = mini_config(str(first / "models" / "tiny"), methods=["gt"], lr_sweep={})
    Experiment(config, run_dir, progress=False).run()
    trained = []
    real_train = training.train
    monkeypatch.setattr(training, "train", lambda config, **kw: trained.append(config.output_dir) or
                        real_train(config, **kw))
    second = tmp_path / "cache2"
    shutil.move(first, second)
    monkeypatch.setenv("ROBUST_SFT_CACHE", str(second))
    Experiment(mini_config(str(second / "models" / "tiny"), methods=["gt"], lr_sweep={}), run_dir,
               progress=False).run()
    assert trained == []
    base = json.loads((run_dir / "plan.json").read_text())["base_model"]
    assert (base["path"], base["keyed_path"]) == (str(second / "models" / "tiny"), str(first / "models" / "tiny"))
    # a model that did not move with the cache (a copy elsewhere) is another model to the run: it trains again
    elsewhere = tmp_path / "copies" / "tiny"
    shutil.copytree(second / "models" / "tiny", elsewhere)
    Experiment(mini_config(str(elsewhere), methods=["gt"], lr_sweep={}), run_dir, progress=False).run()
    assert trained == [str(run_dir / "models" / "gt" / "seed0")]


def test_an_unreadable_plan_is_named_before_anything_runs(tmp_path, tiny_model_dir):
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    (run_dir / "config.json").write_text('{"name": "mini", "methods": ["gt"], "target": "test/even_length"}')
    (run_dir / "plan.json").write_text('{"schema": "robust-sft/plan/v1", "base_model": "cut sh')
    with pytest.raises(ValueError, match=r"plan\.json: not a readable plan"):
        Experiment(mini_config(tiny_model_dir, methods=["gt"], lr_sweep={}), run_dir, progress=False).run()
    assert not (run_dir / "data").exists()  # nothing was made before the error
