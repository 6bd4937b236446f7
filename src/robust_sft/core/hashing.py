"""Content hashes for cache keys: of JSON-able values, files and local model directories."""

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
