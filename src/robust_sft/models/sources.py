"""Named model sources: a plug-in provides a model by name (`model: organism`) with the tasks it was made for.

A config's `model` is a Hub name, a local path, or the name of a source registered here. A source may be a
family of synthetic worlds: `world` picks one, and the source says which of its tasks take the world too.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

from robust_sft.core.plugins import load_plugins


@dataclass(frozen=True)
class ModelSource:
    """What the engine needs of a named model: where its weights are and which tasks belong to it."""

    path: Callable[[int, bool], str]  # (world, progress) -> a local model directory (built or shipped)
    tasks: tuple[str, ...]  # its tasks: an experiment's default other tasks are these minus the target
    task_options: Callable[[str, int], dict]  # (task name, world) -> the task's constructor options
    description: Callable[[int], str]  # (world) -> one line for a run's plan


_SOURCES: dict[str, ModelSource] = {}


def register_model_source(name: str, source: ModelSource) -> None:
    if name in _SOURCES and _SOURCES[name] is not source:
        raise ValueError(f"model source {name!r} is registered twice")
    _SOURCES[name] = source


def model_source(name: str) -> ModelSource | None:
    """The registered source called `name`, or None when `name` is a Hub name or a path."""
    load_plugins()
    return _SOURCES.get(name)
