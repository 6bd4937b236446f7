"""Atomic writes and self-describing Parquet artifacts.

Every file is written to a temporary name in the same directory and renamed into place, so a killed
process never leaves a half-written artifact behind.
"""

from __future__ import annotations

import contextlib
import json
import os
import tempfile
from pathlib import Path
from typing import Any, Iterator

METADATA_KEY = b"robust_sft"


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike, suffix: str = "") -> Iterator[Path]:
    """Yield a temporary path next to `path`; on success rename it onto `path`, on error remove it."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=suffix + ".tmp", dir=path.parent)
    os.close(fd)
    tmp_path = Path(tmp)
    try:
        yield tmp_path
        os.replace(tmp_path, path)
    finally:
        tmp_path.unlink(missing_ok=True)


def write_text(path: str | os.PathLike, text: str) -> None:
    with atomic_path(path) as tmp:
        tmp.write_text(text, encoding="utf-8")


def write_json(path: str | os.PathLike, obj: Any) -> None:
    write_text(path, json.dumps(obj, indent=2, sort_keys=False, default=_json_default) + "\n")


def write_jsonl(path: str | os.PathLike, rows: list[dict]) -> None:
    write_text(path, "".join(json.dumps(r, default=_json_default) + "\n" for r in rows))


def _json_default(obj: Any) -> Any:
    if hasattr(obj, "item"):  # numpy / torch scalars
        return obj.item()
    if isinstance(obj, Path):
        return str(obj)
    raise TypeError(f"not JSON serialisable: {type(obj).__name__}")


def write_parquet(path: str | os.PathLike, table, metadata: dict | None = None) -> None:
    """Write a pyarrow Table atomically, with our metadata (JSON) in the schema."""
    import pyarrow.parquet as pq

    if metadata is not None:
        existing = dict(table.schema.metadata or {})
        existing[METADATA_KEY] = json.dumps(metadata, default=_json_default).encode()
        table = table.replace_schema_metadata(existing)
    with atomic_path(path, suffix=".parquet") as tmp:
        pq.write_table(table, tmp)


def read_parquet(path: str | os.PathLike):
    """Return (table, metadata dict) of a Parquet file written by `write_parquet`."""
    import pyarrow.parquet as pq

    table = pq.read_table(path)
    return table, parquet_metadata_of(table)


def parquet_metadata_of(table) -> dict:
    raw = (table.schema.metadata or {}).get(METADATA_KEY)
    return json.loads(raw) if raw else {}


def library_versions() -> dict[str, str]:
    """Versions of the libraries that decide numerical results, recorded in every artifact."""
    import importlib.metadata as md

    versions = {}
    for name in ("robust-sft", "torch", "transformers", "peft", "accelerate", "datasets"):
        with contextlib.suppress(md.PackageNotFoundError):
            versions[name] = md.version(name)
    return versions
