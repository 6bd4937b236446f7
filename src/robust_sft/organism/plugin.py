"""The model organism as a plug-in: its tasks (registered by importing the worlds) and one model source per world
version (`organism`: v4, `organism-v5`: v5; organism/versions.py)."""

from __future__ import annotations

import importlib

from robust_sft.models.sources import ModelSource, register_model_source
from robust_sft.organism.versions import VERSIONS, WorldVersion
from robust_sft.organism.world import OrganismTask


def _source(version: WorldVersion) -> ModelSource:
    tasks = importlib.import_module(version.world).TASKS  # importing the world registers its tasks

    def path(world: int, progress: bool) -> str:
        # Imported here: building or locating the base model needs torch, using the world's tasks does not.
        from robust_sft.organism.store import base_model_path

        return str(base_model_path(seed=world, progress=progress, version=version.name))

    return ModelSource(
        path=path, tasks=tuple(tasks),
        task_options=lambda task, world: {"seed": world} if task in tasks else {},  # the world the model learned
        description=lambda world: f"the model organism ({version.name}), world {world}: shipped with the package "
                                  "(worlds 0-2), or built and cached on first use")


for _version in VERSIONS.values():
    register_model_source(_version.source, _source(_version))


def _hint(self, example: dict) -> str:
    """The organism's content-only hint (Task.hint): the correct answer, in the house style's words."""
    return f"Hint: the answer is {example['answer']}"


# Attached here rather than written in world.py: the shipped base models' definition key hashes world.py's text,
# and a hint is no part of what they learned (they never saw a hinted prompt). A world that pretrains on hinted
# prompts defines its hint in world.py and is built and shipped with it.
OrganismTask.hint = _hint
