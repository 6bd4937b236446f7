"""Atomic writes, self-describing Parquet artifacts and byte-safe text reading.

Every file is written to a temporary name in the same directory and renamed into place, so a killed
process never leaves a half-written artifact behind; its mode follows the umask, as with open().
Text is read as UTF-8 with or without a byte-order mark; undecodable bytes are reported by file and line.
"""

from __future__ import annotations

import codecs
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
    # mkstemp makes the file 0600; give it the mode a plain open() would, so the umask decides who reads it.
    os.fchmod(fd, 0o666 & ~current_umask())
    os.close(fd)
    tmp_path = Path(tmp)
    try:
        yield tmp_path
        os.replace(tmp_path, path)
    finally:
        tmp_path.unlink(missing_ok=True)


def current_umask() -> int:
    """The process umask (read from /proc where possible: setting it to read it is not thread-safe)."""
    with contextlib.suppress(OSError, ValueError):
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("Umask:"):
                return int(line.split()[1], 8)
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def read_lines(path: str | os.PathLike) -> Iterator[tuple[int, str | None, str | None]]:
    """(line number, text, problem) for each line of a UTF-8 file; a leading BOM is dropped.

    A line that is not valid UTF-8 comes with text None and the problem described, so a caller can
    report or skip that line alone.
    """
    with open(path, "rb") as f:
        for lineno, raw in enumerate(f, start=1):
            if lineno == 1 and raw.startswith(codecs.BOM_UTF8):
                raw = raw[len(codecs.BOM_UTF8):]
            try:
                yield lineno, raw.decode("utf-8"), None
            except UnicodeDecodeError as err:
                yield lineno, None, _decode_problem(err)


def read_text(path: str | os.PathLike) -> str:
    """A whole UTF-8 file (BOM dropped); ValueError naming file and line at the first undecodable byte."""
    raw = Path(path).read_bytes()
    try:
        return raw.decode("utf-8-sig")
    except UnicodeDecodeError as err:
        lineno = raw[: err.start].count(b"\n") + 1
        raise ValueError(f"{path}:{lineno}: {_decode_problem(err)}") from None


def _decode_problem(err: UnicodeDecodeError) -> str:
    column = err.start - err.object.rfind(b"\n", 0, err.start)
    return f"not valid UTF-8 (byte 0x{err.object[err.start]:02x} at column {column})"


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
        # Page checksums let a reader detect a flipped bit instead of returning wrong numbers.
        pq.write_table(table, tmp, write_page_checksum=True)


def read_parquet(path: str | os.PathLike):
    """Return (table, metadata dict) of a Parquet file written by `write_parquet`."""
    import pyarrow.parquet as pq

    try:
        table = pq.read_table(path, page_checksum_verification=True)
    except (OSError, ValueError) as err:  # pyarrow's errors for corrupt or truncated files name no file
        raise ValueError(f"{path}: cannot read Parquet, the file is damaged or not Parquet ({err})") from err
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
