"""Cached stages: an artifact with its key stored beside it is up to date; a killed stage resumes or restarts."""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Callable

from robust_sft.core.artifacts import remove_dir, write_json

logger = logging.getLogger(__name__)


def _key_file(artifact: Path) -> Path:
    return artifact / "stage_key.json" if artifact.suffix == "" else artifact.with_name(artifact.name + ".key.json")


def is_done(artifact: Path, key: str) -> bool:
    key_file = _key_file(artifact)
    return artifact.exists() and key_file.exists() and json.loads(key_file.read_text()).get("key") == key


def forget_stage(artifact: Path) -> None:
    """Mark a stage's artifact out of date (its key removed), so the next run_stage produces it again."""
    _key_file(artifact).unlink(missing_ok=True)


def _pending_file(artifact: Path) -> Path:
    return artifact / "stage_pending.json"


def run_stage(name: str, artifact: Path, key: str, produce: Callable[[], None]) -> bool:
    """Produce `artifact` unless it exists with the same key; returns True when it ran.

    A directory artifact left by a killed run of the *same* stage (same key, marked pending) is kept, so the
    stage can resume from what it saved (e.g. training checkpoints); one made for other inputs is removed.
    """
    if is_done(artifact, key):
        logger.info("[%s] up to date: %s", name, artifact)
        return False
    if artifact.is_dir():
        pending = _pending_file(artifact)
        same_inputs = pending.exists() and json.loads(pending.read_text()).get("key") == key
        if not same_inputs:
            remove_dir(artifact, pending.name)  # only a directory a stage made
    if artifact.suffix == "":
        artifact.mkdir(parents=True, exist_ok=True)
        write_json(_pending_file(artifact), {"key": key})
    logger.info("[%s] running -> %s", name, artifact)
    produce()
    write_json(_key_file(artifact), {"key": key})
    return True
