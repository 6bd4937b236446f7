"""Content hashes for cache keys: of JSON-able values, files and local model directories, and the base model's
key, which a run keeps when its model moved with the tree it lies in."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path


def stable_hash(obj) -> str:
    return hashlib.sha256(json.dumps(obj, sort_keys=True, default=str).encode()).hexdigest()[:16]


def file_hash(path: Path) -> str:
    return file_sha256(path)[:16]


def file_sha256(path: str | Path) -> str:
    """The full SHA-256 of a file's bytes (hex): what records name a model file by."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def model_fingerprint(model: str) -> str:
    """Local models are identified by their files' names and sizes, a single-file model (.gguf) by its content;
    Hub names by name."""
    path = Path(model)
    if not path.exists():
        return model
    if path.is_file():
        return file_hash(path)
    return stable_hash(sorted((p.name, p.stat().st_size) for p in path.iterdir() if p.is_file()))


def movable_tail(path: str | Path, roots: list[Path]) -> str | None:
    """`path` relative to the first of `roots` holding it (what stays the same when the root moves), or None when
    no root holds it."""
    path = Path(path).resolve()
    for root in (root.resolve() for root in roots):
        if path.is_relative_to(root):
            return path.relative_to(root).as_posix()
    return None


def base_model_key(model: str, recorded: dict | None, roots: list[Path]) -> tuple[str, str]:
    """(key, keyed path) of the base model: what every stage's key starts from. `recorded` is the run directory's
    plan.json base_model entry, if any.

    The key hashes the model's path and fingerprint, so a run directory made where the model lay elsewhere
    (another clone, checkout or home) would redo everything. It keeps its recorded key when the model moved with
    the tree it lies in: the recorded path is this model's (a single file: any path, its fingerprint being its
    content; a directory: the same path under one of `roots`, the package or the model cache, its fingerprint
    being only its files' names and sizes), and this fingerprint gives the recorded key from the recorded path.
    """
    fingerprint = model_fingerprint(model)
    recorded = recorded or {}
    keyed = recorded.get("keyed_path") or recorded.get("path")
    if keyed and keyed != model and _same_place(keyed, model, roots) \
            and stable_hash([keyed, fingerprint]) == recorded.get("key"):
        return recorded["key"], keyed
    return stable_hash([model, fingerprint]), model


def _same_place(recorded: str, model: str, roots: list[Path]) -> bool:
    path = Path(model)
    if path.is_file():
        return True
    tail = movable_tail(path, roots) if path.is_dir() else None  # a Hub name is the same everywhere
    return tail is not None and Path(recorded).as_posix().endswith("/" + tail)
