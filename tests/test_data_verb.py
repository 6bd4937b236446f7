"""`robust-sft data`: a task's GT conversations from its local files, the same rows a run's GT stage writes."""

from __future__ import annotations

import json
from pathlib import Path

from robust_sft.cli import main
from tests.shared_files import shared_path

FIXTURES = Path(__file__).parent / "fixtures"


def read_rows(path) -> list[dict]:
    return [json.loads(line) for line in Path(path).read_text(encoding="utf-8").splitlines()]


def test_data_writes_the_tasks_prompts_and_references(tmp_path, capsys):
    from robust_sft.tasks import get_task

    out = tmp_path / "data" / "validation_gt.jsonl"
    assert main(["data", "--task", "mbpp", "--split", "validation",
                 "--task_path", str(FIXTURES / "mbpp" / "validation.json"), "--out", str(out)]) == 0
    assert f"wrote {out}" in capsys.readouterr().out
    task = get_task("mbpp")
    examples = task.load("validation", path=str(FIXTURES / "mbpp" / "validation.json"))
    assert read_rows(out) == [{"id": e["id"], "prompt": task.prompt(e), "answer": task.reference(e)}
                              for e in examples]
    assert read_rows(out)[0]["answer"].startswith("```python\ndef count_vowels(s):")


def test_data_equals_the_runs_gt_stage(tmp_path):
    from robust_sft.experiment.config import ExperimentConfig
    from robust_sft.experiment.runner import Experiment

    experiment = Experiment(ExperimentConfig(methods=["gt"], train_limit=12), tmp_path / "run", progress=False)
    experiment.resolve_base()
    experiment.prepare_data()
    out = tmp_path / "gt.jsonl"
    assert main(["data", "--task", "organism/sort", "--limit", "12", "--out", str(out)]) == 0
    assert out.read_bytes() == experiment.run_dir.data_file("gt").read_bytes()
    assert len(read_rows(out)) == 12


def test_data_reproduces_the_papers_mbpp_conversations(tmp_path):
    source = shared_path("paper-data/mbpp_ground_truth_train.jsonl")
    out = tmp_path / "train_gt.jsonl"
    assert main(["data", "--task", "mbpp", "--split", "train", "--task_path", str(source), "--out", str(out)]) == 0
    ours, theirs = read_rows(out), read_rows(source)
    assert len(ours) == len(theirs) == 374
    assert [[r["prompt"], r["answer"]] for r in ours] == [[m["value"] for m in t["conversations"]] for t in theirs]


def test_bad_input_is_an_error_naming_the_file_and_line(tmp_path, capsys):
    rows = tmp_path / "train.jsonl"
    good = json.loads((FIXTURES / "mbpp" / "validation.json").read_text())[0]
    rows.write_text(json.dumps(good) + "\n" + json.dumps({**good, "task_id": 2, "test_list": "x"}) + "\n")
    out = tmp_path / "gt.jsonl"
    assert main(["data", "--task", "mbpp", "--task_path", str(rows), "--out", str(out)]) == 1
    err = capsys.readouterr().err
    assert f"{rows}:2" in err and "test_list" in err and not out.exists()
    assert main(["data", "--task", "mbpp", "--task_path", str(rows), "--out", str(tmp_path / "gt.json")]) == 1
    assert "must be a .jsonl file" in capsys.readouterr().err
    assert main(["data", "--task", "no-such-task", "--out", str(out)]) == 1
    assert "unknown task 'no-such-task'" in capsys.readouterr().err
