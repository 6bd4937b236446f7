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
import shutil
import tempfile
from pathlib import Path
from typing import Any, Iterator

METADATA_KEY = b"robust_sft"


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike, suffix: str = "") -> Iterator[Path]:
    """Yield a temporary path next to `path`; on success rename it onto `path`, on error remove it."""
    path = Path(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=suffix + ".tmp", dir=path.parent)
    except OSError as err:
        raise WriteError(f"{path}: cannot write there ({err.strerror or err})") from None
    # mkstemp makes the file 0600; give it the mode a plain open() would, so the umask decides who reads it.
    os.fchmod(fd, 0o666 & ~current_umask())
    os.close(fd)
    tmp_path = Path(tmp)
    try:
        yield tmp_path
        os.replace(tmp_path, path)
    except WriteError:
        raise
    except OSError as err:  # e.g. a full disk: name the output, not the temporary file (which is removed)
        raise WriteError(f"{path}: cannot write ({err.strerror or err}); nothing was replaced") from None
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


# --------------------------------------------------------------------------------------------- user paths


class WriteError(OSError):
    """An output that cannot be written (read-only place, full disk, a directory in the way); names the output."""


def check_output_file(path: str | os.PathLike) -> Path:
    """Refuse, before any work, an output file that cannot be written: one clear line naming it."""
    path = Path(path)
    if path.is_dir():
        raise WriteError(f"{path}: is a directory; give a file name for this output")
    _check_writable_dir(path.parent, path)
    return path


def _check_writable_dir(directory: Path, output: Path) -> None:
    try:
        directory.mkdir(parents=True, exist_ok=True)
        fd, probe = tempfile.mkstemp(prefix=".robust-sft-probe.", dir=directory)
        os.close(fd)
        os.unlink(probe)
    except OSError as err:
        raise WriteError(f"{output}: cannot write there ({err.strerror or err})") from None


def check_replaceable(path: str | os.PathLike, marker: str) -> Path:
    """Refuse to replace `path` unless it is absent or a directory this package wrote (it holds `marker`).

    Nothing the user owns is removed: `.`, `..`, the current directory, its parents and the home directory are
    refused outright, and any other existing path must carry the marker file the command itself writes.
    """
    path = Path(path)
    resolved = path.resolve()
    cwd = Path.cwd().resolve()
    if path.name in ("", ".", "..") or resolved == cwd or resolved in cwd.parents or resolved == Path.home().resolve():
        raise WriteError(f"{path}: refusing to write over this directory; name a new directory for the output")
    if not path.exists() and not path.is_symlink():
        return path
    if path.is_symlink() or not path.is_dir() or not (path / marker).is_file():
        raise WriteError(f"{path}: exists and was not written by robust-sft (no {marker} in it); refusing to "
                         "replace it: remove it yourself or choose another output")
    return path


def replace_dir(new: str | os.PathLike, out: str | os.PathLike, marker: str) -> None:
    """Move the finished directory `new` onto `out` by renames; an existing `out` must pass `check_replaceable`."""
    new, out = Path(new), check_replaceable(out, marker)
    if not out.exists():
        os.rename(new, out)
        return
    old = Path(tempfile.mkdtemp(prefix=f".{out.name}.old.", dir=out.parent))
    os.rename(out, old / "previous")  # out is free for the new directory; a crash here loses nothing
    os.rename(new, out)
    shutil.rmtree(old)


LOCK_NAME = ".robust-sft.lock"


def check_own_dir(path: str | os.PathLike, marker: str, what: str) -> Path:
    """Refuse to write a `what` into an existing directory that is neither empty nor one it wrote (holds `marker`)."""
    path = Path(path)
    if path.exists() and not path.is_dir():
        raise WriteError(f"{path}: exists and is not a directory")
    if path.is_dir() and not (path / marker).exists() and any(p.name != LOCK_NAME for p in path.iterdir()):
        raise WriteError(f"{path}: not empty and not a {what} (no {marker} in it); refusing to write into it: "
                         "choose a new or empty directory")
    return path


def remove_dir(path: str | os.PathLike, marker: str) -> None:
    """Remove a directory this package wrote (it holds `marker`); refuse anything else."""
    path = check_replaceable(path, marker)
    if path.exists():
        shutil.rmtree(path)


@contextlib.contextmanager
def dir_lock(path: str | os.PathLike, what: str) -> Iterator[None]:
    """Hold an exclusive lock on a directory's lock file, or stop at once saying another process holds it.

    The lock is an flock on `path` (released by the kernel when the process dies, so no stale lock is left).
    """
    import fcntl

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a+") as f:
        try:
            fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            f.seek(0)
            holder = f.read().strip() or "another process"
            raise RuntimeError(f"{what} is in use by {holder} (lock {path}); wait for it to finish, or choose "
                               "another output directory") from None
        f.seek(0)
        f.truncate()
        f.write(f"pid {os.getpid()}\n")
        f.flush()
        try:
            yield
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)
