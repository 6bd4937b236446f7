"""The organism's world versions: which modules define each, the model source that names it, where it ships.

A config picks a version by its model source: `model: organism` is world v4 (the demo's and the study's today),
`model: organism-v5` world v5 (docs/organism_v5.md), with tasks `organism-v5/<task>`. Light on purpose (no torch):
the plug-in reads it to register the sources. Not part of any definition key.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

SHIPPED_ROOT = Path(__file__).parent / "shipped"


@dataclass(frozen=True)
class WorldVersion:
    name: str
    source: str  # the model source's name (organism/plugin.py)
    definition: str  # module with OrganismConfig, definition_sources, cache_key, new_model, pretrain
    world: str  # module with TASKS and TARGET
    shipped: Path  # holds seed<K>/ per shipped world
    shipped_worlds: tuple[int, ...]  # the worlds whose base models ship (every world docs/ and the tests use)
    measures: bool  # the build's report adds the design measures of organism/measures.py


VERSIONS = {
    "v4": WorldVersion("v4", "organism", "robust_sft.organism.base_model", "robust_sft.organism.world",
                       SHIPPED_ROOT, (0, 1, 2), measures=False),
    "v5": WorldVersion("v5", "organism-v5", "robust_sft.organism.pretrain_v5", "robust_sft.organism.world_v5",
                       SHIPPED_ROOT / "v5", (0, 1, 2, 3), measures=True),
}


def world_version(name: str) -> WorldVersion:
    if name not in VERSIONS:
        raise ValueError(f"unknown organism world version {name!r}; known: {', '.join(VERSIONS)}")
    return VERSIONS[name]
