"""The run directory's layout and readers (robust_sft.core.rundir): the contract every reader of a run uses."""

import json

import pytest

from robust_sft.core.rundir import PLAN_SCHEMA, NotARunError, RunDir, task_file_name


def test_paths_follow_the_documented_layout(tmp_path):
    run = RunDir(tmp_path)
    assert run.data_file("self_output") == tmp_path / "data" / "self_output.jsonl"
    assert run.data_report_file("rephrase") == tmp_path / "data" / "rephrase.report.json"
    assert run.scores_seconds_file("gt") == tmp_path / "scores" / "gt.parquet.seconds.json"
    assert run.train_summary_file("stm@2.5", 1) == tmp_path / "models" / "stm@2.5" / "seed1" / "train_summary.json"
    assert run.final_model_dir("gt", 0) == tmp_path / "models" / "gt" / "seed0" / "final"
    assert run.eval_dir("gt", 2) == tmp_path / "eval" / "gt" / "seed2"
    assert run.base_eval_dir == tmp_path / "eval" / "base"
    assert run.unit_lock_file("gt", 0) == tmp_path / "locks" / "gt-seed0.lock"
    assert task_file_name("organism/sort") == "organism__sort"


def test_costs_are_the_recorded_seconds_and_zero_for_sets_read_from_the_task(tmp_path):
    run = RunDir(tmp_path)
    (tmp_path / "data").mkdir()
    (tmp_path / "scores").mkdir()
    run.data_report_file("self_output").write_text(json.dumps({"seconds": 12.5, "prompts": 4}))
    run.scores_seconds_file("gt").write_text(json.dumps({"seconds": 1.25}))
    assert run.costs(["gt", "self_output"]) == {"gt": 0.0, "score_gt": 1.25, "self_output": 12.5}


def test_accuracies_and_item_correctness_are_read_from_an_evaluation(tmp_path):
    run = RunDir(tmp_path)
    eval_dir = run.eval_dir("gt", 0)
    eval_dir.mkdir(parents=True)
    (eval_dir / "accuracies.json").write_text(json.dumps({"a/b": {"accuracy": 0.5, "n": 2}}))
    (eval_dir / "a__b.jsonl").write_text('{"id": "x", "correct": true}\n\n{"id": "y", "correct": 0}\n')
    assert run.accuracies(eval_dir) == {"a/b": 0.5}
    assert run.item_correctness(eval_dir, "a/b") == {"x": True, "y": False}


def test_a_missing_or_foreign_plan_is_a_clear_error(tmp_path):
    run = RunDir(tmp_path)
    with pytest.raises(NotARunError, match="no config.json"):
        run.read_plan()
    run.config_file.write_text("{}")
    with pytest.raises(NotARunError, match=r"no plan.json\). A run writes plan.json before its first stage"):
        run.read_plan()
    run.plan_file.write_text('{"schema": "other"}')
    with pytest.raises(NotARunError, match="schema 'other'"):
        run.read_plan()
    run.plan_file.write_text('["schema"]')
    with pytest.raises(NotARunError, match="schema 'none \\(a JSON list, no object\\)'"):
        run.read_plan()
    run.plan_file.write_text('{"schema": "%s",\n' % PLAN_SCHEMA)
    with pytest.raises(ValueError, match=r"plan.json:2: not valid JSON"):
        run.read_plan()
    with pytest.raises(NotARunError, match="no results.json"):
        run.read_results()
