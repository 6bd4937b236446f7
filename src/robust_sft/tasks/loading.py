"""Loading task rows from the Hugging Face Hub or local files, and a Task base class built on it.

Each row comes with a `where` string ("data/test.jsonl:17", "openai/gsm8k[test] row 3") so that errors
about bad data name the file and line/example at fault.
"""

from __future__ import annotations

import json
from abc import abstractmethod
from dataclasses import dataclass
from dataclasses import field as option
from pathlib import Path
from typing import Any

from robust_sft.core.artifacts import read_lines, read_parquet, read_text
from robust_sft.core.config_types import Options, require_limit
from robust_sft.tasks.base import Task, TaskError


@dataclass(kw_only=True)
class LimitOption(Options):
    """How many of a task's examples a verb uses (`generate`, `evaluate`): `DatasetTask.load`'s limit."""

    limit: int | None = option(default=None, metadata={
        "help": "At most this many examples (of each task); default: all."})

    def check(self) -> None:
        require_limit("limit", self.limit)

Located = tuple[str, dict]  # (where, row)

_SUFFIXES = (".jsonl", ".json", ".parquet")


def read_local(path: str | Path, split: str) -> list[Located]:
    """Rows of `split` from a file, a directory of split files, or a `save_to_disk` directory.

    A file is taken as the split's data. In a directory, the split is `<split>.jsonl`, `<split>.json`,
    `<split>.parquet` or `<split>-*.parquet` (the Hub's layout).
    """
    path = Path(path)
    if path.is_file():
        return read_file(path)
    if not path.is_dir():
        raise TaskError(f"{path}: no such file or directory")
    if (path / "dataset_dict.json").exists() or (path / "state.json").exists():
        return _read_saved(path, split)
    files = [path / f"{split}{suffix}" for suffix in _SUFFIXES if (path / f"{split}{suffix}").is_file()]
    files = files or sorted(path.glob(f"{split}-*.parquet"))
    if not files:
        raise TaskError(f"{path}: no data for split {split!r} (looked for {split}.jsonl/.json/.parquet)")
    return [row for file in files for row in read_file(file)]


def read_file(path: Path) -> list[Located]:
    if path.suffix == ".jsonl":
        return _read_jsonl(path)
    if path.suffix == ".json":
        return _read_json(path)
    if path.suffix == ".parquet":
        try:
            table, _ = read_parquet(path)
        except ValueError as err:
            raise TaskError(str(err)) from None
        return [(f"{path} row {i}", row) for i, row in enumerate(table.to_pylist())]
    raise TaskError(f"{path}: unsupported file type (use .jsonl, .json or .parquet)")


def _read_jsonl(path: Path) -> list[Located]:
    rows = []
    for lineno, line, problem in read_lines(path):
        where = f"{path}:{lineno}"
        if problem:
            raise TaskError(f"{where}: {problem}")
        if line.strip():
            rows.append((where, _as_row(_parse_json(line, where), where)))
    return rows


def _read_json(path: Path) -> list[Located]:
    try:
        text = read_text(path)
    except ValueError as err:  # undecodable bytes, named by file and line
        raise TaskError(str(err)) from None
    data = _parse_json(text, str(path))
    if isinstance(data, dict) and isinstance(data.get("data"), list):
        data = data["data"]
    if not isinstance(data, list):
        raise TaskError(f"{path}: expected a JSON list of examples (or {{\"data\": [...]}})")
    return [(f"{path} example {i}", _as_row(row, f"{path} example {i}")) for i, row in enumerate(data)]


def _parse_json(text: str, where: str) -> Any:
    try:
        return json.loads(text)
    except json.JSONDecodeError as err:
        raise TaskError(f"{where}: invalid JSON ({err})") from None


def _as_row(value: Any, where: str) -> dict:
    if not isinstance(value, dict):
        raise TaskError(f"{where}: expected a JSON object, got {type(value).__name__}")
    return value


def _read_saved(path: Path, split: str) -> list[Located]:
    import datasets

    data = datasets.load_from_disk(str(path))
    if isinstance(data, datasets.DatasetDict):
        if split not in data:
            raise TaskError(f"{path}: saved dataset has no split {split!r} (has {', '.join(data)})")
        data = data[split]
    return [(f"{path}[{split}] row {i}", dict(row)) for i, row in enumerate(data)]


def read_hub(name: str, config: str | None, split: str) -> list[Located]:
    """Rows of a Hub dataset; a clear TaskError when it cannot be reached (offline, renamed, ...)."""
    try:
        import datasets

        data = datasets.load_dataset(name, config, split=split)
    except Exception as err:  # network, auth and missing-dataset errors have many types
        label = f"{name}" + (f" ({config})" if config else "")
        raise TaskError(
            f"could not load {label} split {split!r} from the Hugging Face Hub: {err}. "
            "Pass path= to local files (jsonl/json/parquet or a save_to_disk directory)."
        ) from err
    tag = f"{name}[{config + ':' if config else ''}{split}]"
    return [(f"{tag} row {i}", dict(row)) for i, row in enumerate(data)]


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
