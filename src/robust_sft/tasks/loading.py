"""Loading task rows from the Hugging Face Hub or local files, and a Task base class built on it.

Rows are read by `robust_sft.data.rows` (one reader for SFT and task data); each comes with a `where` string
("data/test.jsonl:17", "openai/gsm8k[main:test] row 3") so that errors
about bad data name the file and line/example at fault.
"""

from __future__ import annotations

from abc import abstractmethod
from dataclasses import dataclass
from dataclasses import field as option
from pathlib import Path
from typing import Any

from robust_sft.core.config_types import Options, require_limit
from robust_sft.data.rows import DataError, iter_hub, iter_local
from robust_sft.tasks.base import Task, TaskError


@dataclass(kw_only=True)
class LimitOption(Options):
    """How many of a task's examples a verb uses (`generate`, `evaluate`): `DatasetTask.load`'s limit."""

    limit: int | None = option(default=None, metadata={
        "help": "At most this many examples (of each task); default: all."})

    def check(self) -> None:
        require_limit("limit", self.limit)

@dataclass(kw_only=True)
class TaskOption(Options):
    """Which task a verb reads examples of (`data`, `generate`), and its local files."""

    task: str = option(metadata={"help": "Task name (e.g. mbpp, gsm8k, organism/sort): its examples, references and "
                                         "checker."})
    task_path: str | None = option(default=None, metadata={
        "help": "The task's local files (a file of the split's rows, or a directory of split files); default: the "
                "Hub."})


Located = tuple[str, dict]  # (where, row)


def read_local(path: str | Path, split: str) -> list[Located]:
    """Rows of `split` from a file (taken as the split's data), a directory of split files (`<split>.jsonl`,
    `.json`, `.parquet`, `<split>-*.parquet`) or a `save_to_disk` directory: data.rows' reader, whose first bad
    row stops the load."""
    try:
        return _checked(iter_local(path, split))
    except DataError as err:
        raise TaskError(str(err)) from None


def read_hub(name: str, config: str | None, split: str) -> list[Located]:
    """Rows of a Hub dataset; a clear TaskError when it cannot be reached (offline, renamed, ...)."""
    try:
        return _checked(iter_hub(name, split, config))
    except DataError as err:
        raise TaskError(f"{err}. Pass path= to local files (jsonl/json/parquet or a save_to_disk directory).") from err


def _checked(rows) -> list[Located]:
    located = []
    for where, row in rows:
        if isinstance(row, DataError):
            raise row
        if not isinstance(row, dict):
            raise TaskError(f"{where}: expected a JSON object, got {type(row).__name__}")
        located.append((where, row))
    return located


def field(row: dict, key: str, where: str, kind: type | tuple[type, ...] = str) -> Any:
    """`row[key]`, checked to be of type `kind`; TaskError naming the example otherwise."""
    if key not in row or row[key] is None:
        raise TaskError(f"{where}: missing field {key!r}")
    value = row[key]
    if not isinstance(value, kind):
        expected = " or ".join(k.__name__ for k in (kind if isinstance(kind, tuple) else (kind,)))
        raise TaskError(f"{where}: field {key!r} should be {expected}, got {type(value).__name__}")
    return value


class DatasetTask(Task):
    """A task whose examples are rows of a dataset, from the Hub or from local files."""

    def load(self, split: str, *, limit: int | None = None, path: str | None = None) -> list[dict]:
        if split not in self.splits:
            raise TaskError(f"task {self.name!r} has no split {split!r} (splits: {', '.join(self.splits)})")
        if limit is not None and limit < 0:
            raise TaskError(f"limit must be >= 0, got {limit}")
        rows = read_local(path, split) if path else self.hub_rows(split)
        examples = [self.to_example(row, split, i, where) for i, (where, row) in enumerate(rows[:limit])]
        _check_unique_ids(examples, rows)
        return examples

    @abstractmethod
    def hub_rows(self, split: str) -> list[Located]:
        """The rows of `split` from the Hugging Face Hub."""

    @abstractmethod
    def to_example(self, row: dict, split: str, index: int, where: str) -> dict:
        """A validated example (with a stable string "id") from one dataset row."""


def _check_unique_ids(examples: list[dict], rows: list[Located]) -> None:
    seen: dict[str, str] = {}
    for example, (where, _) in zip(examples, rows):
        if example["id"] in seen:
            raise TaskError(f"{where}: duplicate id {example['id']!r} (first at {seen[example['id']]})")
        seen[example["id"]] = where
