"""The model organism as a plug-in: its tasks (registered by importing the world) and the model `organism`."""

from __future__ import annotations

from robust_sft.models.sources import ModelSource, register_model_source
from robust_sft.organism.world import TASKS


def _path(world: int, progress: bool) -> str:
    # Imported here: building or locating the base model needs torch, using the world's tasks does not.
    from robust_sft.organism.base_model import base_model_path

    return str(base_model_path(seed=world, progress=progress))


def _task_options(task: str, world: int) -> dict:
    # The world's tasks must be the world the base model learned.
    return {"seed": world} if task in TASKS else {}


register_model_source("organism", ModelSource(
    path=_path, tasks=tuple(TASKS), task_options=_task_options,
    description=lambda world: f"the model organism, world {world}: shipped with the package (worlds 0-2), or built "
                              "and cached on first use"))
