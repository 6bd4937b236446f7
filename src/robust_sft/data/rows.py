"""Reading rows: one reader for SFT data and task data alike.

Sources: a .jsonl, .json or .parquet file; a directory saved with `datasets.save_to_disk`, or a directory of
split files (`<split>.jsonl`, `<split>.json`, `<split>.parquet`, or the Hub's `<split>-*.parquet`); a Hugging
Face Hub dataset. Every row comes with its location ("data.jsonl:12", "data.json[3]", "x.parquet row 7",
"openai/gsm8k[main:test] row 3"), which error messages name.

A line that cannot be read (bad bytes, malformed JSON) is yielded as a `DataError` in place of the row, so a
reader that skips bad examples goes on and one that does not stops there; whole-file problems raise at once.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any, Iterator

from robust_sft.core.artifacts import read_lines, read_parquet, read_text

FILE_SUFFIXES = (".jsonl", ".json", ".parquet")

Located = tuple[str, Any]  # (location, row), the row a DataError when its line could not be read


class DataError(ValueError):
    """Bad input data; the message starts with the file and line (or example id) at fault."""


def iter_rows(source: str | os.PathLike, split: str = "train", *, hub_config: str | None = None) -> Iterator[Located]:
    """Rows of a local file or directory (`iter_local`), else of the Hub dataset named `source`."""
    if Path(source).exists():
        yield from iter_local(source, split)
        return
    try:
        yield from iter_hub(str(source), split, hub_config)
    except DataError as err:
        raise DataError(f"{source}: not a local file, and {err}") from err.__cause__


def iter_local(path: str | os.PathLike, split: str) -> Iterator[Located]:
    """Rows of a file (taken as the split's data), a save_to_disk directory or a directory of split files."""
    path = Path(path)
    if path.is_file():
        yield from iter_file(path)
    elif not path.is_dir():
        raise DataError(f"{path}: no such file or directory")
    elif (path / "dataset_dict.json").exists() or (path / "state.json").exists():
        yield from _iter_saved(path, split)
    else:
        files = [path / f"{split}{suffix}" for suffix in FILE_SUFFIXES if (path / f"{split}{suffix}").is_file()]
        files = files or sorted(path.glob(f"{split}-*.parquet"))
        if not files:
            raise DataError(f"{path}: no data for split {split!r} (looked for {split}.jsonl/.json/.parquet, "
                            f"{split}-*.parquet, or a save_to_disk directory)")
        for file in files:
            yield from iter_file(file)


def iter_file(path: Path) -> Iterator[Located]:
    if path.suffix == ".jsonl":
        return _iter_jsonl(path)
    if path.suffix == ".json":
        return _iter_json(path)
    if path.suffix == ".parquet":
        return _iter_parquet(path)
    raise DataError(f"{path}: unsupported file type (use .jsonl, .json, .parquet or a save_to_disk directory)")


def _iter_jsonl(path: Path) -> Iterator[Located]:
    for lineno, line, problem in read_lines(path):
        location = f"{path}:{lineno}"
        if problem:
            yield location, DataError(f"{location}: {problem}")
        elif line.strip():
            try:
                yield location, json.loads(line)
            except json.JSONDecodeError as err:
                yield location, DataError(f"{location}: malformed JSON ({err.msg} at column {err.colno})")


def _iter_json(path: Path) -> Iterator[Located]:
    try:
        data = json.loads(read_text(path))
    except ValueError as err:
        if not isinstance(err, json.JSONDecodeError):  # undecodable bytes: already names file and line
            raise DataError(str(err)) from None
        raise DataError(f"{path}:{err.lineno}: malformed JSON ({err.msg} at column {err.colno})") from err
    if isinstance(data, dict) and len(data) == 1 and isinstance(next(iter(data.values())), list):
        data = next(iter(data.values()))  # {"data": [...]}
    if not isinstance(data, list):
        raise DataError(f"{path}: expected a JSON list of objects (or one key holding such a list)")
    for i, row in enumerate(data):
        yield f"{path}[{i}]", row


def _iter_parquet(path: Path) -> Iterator[Located]:
    try:
        table, _ = read_parquet(path)  # page checksums verified: a flipped bit is an error, not a wrong value
    except ValueError as err:
        raise DataError(str(err)) from None
    for i, row in enumerate(table.to_pylist()):
        yield f"{path} row {i}", row


def _iter_saved(path: Path, split: str) -> Iterator[Located]:
    import datasets

    try:
        data = datasets.load_from_disk(str(path))
    except Exception as err:  # datasets raises several types for a damaged directory
        raise DataError(f"{path}: not a dataset saved with save_to_disk ({err})") from err
    tag = str(path)
    if isinstance(data, datasets.DatasetDict):
        if split not in data:
            raise DataError(f"{path}: saved dataset has no split {split!r} (has {', '.join(data)})")
        data, tag = data[split], f"{path}[{split}]"
    for i, row in enumerate(data):
        yield f"{tag} row {i}", dict(row)


def iter_hub(name: str, split: str, config: str | None = None) -> Iterator[Located]:
    """Rows of a Hub dataset; a DataError saying so when it cannot be reached (offline, renamed, ...)."""
    try:
        import datasets

        data = datasets.load_dataset(name, config, split=split)
    except Exception as err:  # network, auth and missing-dataset errors have many types
        label = name + (f" ({config})" if config else "")
        raise DataError(f"could not load {label} split {split!r} from the Hugging Face Hub: {err}") from err
    tag = f"{name}[{config + ':' if config else ''}{split}]"
    for i, row in enumerate(data):
        yield f"{tag} row {i}", dict(row)
