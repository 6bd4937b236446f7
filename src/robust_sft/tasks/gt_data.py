"""`robust-sft data`: a task's ground-truth training conversations from its files, as a run's GT stage makes them.

The GT rows are the task's prompts with its reference answers (for the paper's MBPP data, the dataset's code byte
for byte): the file `score` and `train` read, and the one the paper's authors scored and trained on.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from robust_sft.core.artifacts import check_output_file, write_jsonl
from robust_sft.core.config_types import require_suffix
from robust_sft.tasks.base import Task, get_task
from robust_sft.tasks.loading import LimitOption, TaskOption


def gt_rows(task: Task, examples: list[dict]) -> list[dict]:
    """{id, prompt, answer} rows: each example's prompt and the task's reference answer."""
    return [{"id": e["id"], "prompt": task.prompt(e), "answer": task.reference(e)} for e in examples]


@dataclass(kw_only=True)
class DataConfig(TaskOption, LimitOption):
    """Options of `robust-sft data`."""

    out: str = field(metadata={"help": "Output .jsonl of {id, prompt, answer} rows (feed it to `score`)."})
    split: str = field(default="train", metadata={"help": "Split of the task whose GT conversations are written."})

    def check(self) -> None:
        require_suffix("out", self.out, (".jsonl",), "a .jsonl file")


def write_gt_data(config: DataConfig) -> Path:
    """`robust-sft data`: write the GT conversations of a task's split to `config.out`; returns its path."""
    out = check_output_file(config.out)  # before the task's files are read
    task = get_task(config.task)
    write_jsonl(out, gt_rows(task, task.load(config.split, limit=config.limit, path=config.task_path)))
    return out
