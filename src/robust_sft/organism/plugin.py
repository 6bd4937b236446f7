"""The model organism as a plug-in: its tasks (registered by importing the world) and the model `organism`."""

from __future__ import annotations

from robust_sft.models.sources import ModelSource, register_model_source
from robust_sft.organism.world import TASKS, OrganismTask


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


def _hint(self, example: dict) -> str:
    """The organism's content-only hint (Task.hint): the correct answer, in the house style's words."""
    return f"Hint: the answer is {example['answer']}"


# Attached here rather than written in world.py: the shipped base models' definition key hashes world.py's text,
# and a hint is no part of what they learned (they never saw a hinted prompt). A world that pretrains on hinted
# prompts defines its hint in world.py and is built and shipped with it.
OrganismTask.hint = _hint
