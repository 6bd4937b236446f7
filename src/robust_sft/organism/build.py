"""`robust-sft organism build`: build (or ship) the model organism's base model.

Its own module: the definition modules' source text is part of the organism's key, so the verb lives here.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from robust_sft.core.config_types import Options

Action = Literal["build"]
Version = Literal["v4", "v5"]  # organism/versions.py


@dataclass(kw_only=True)
class OrganismBuildConfig(Options):
    """Options of `robust-sft organism build`."""

    action: Action = field(default="build", metadata={"help": "build (the only action)."})
    seed: int = field(default=0, metadata={"help": "The world's seed (the demo's is 0)."})
    version: Version = field(default="v4", metadata={
        "help": "The world's version: v4 (model `organism`, the demo's) or v5 (model `organism-v5`, "
                "docs/organism_v5.md)."})
    force: bool = field(default=False, metadata={"help": "Rebuild even when a cached build exists."})
    ship: bool = field(
        default=False,
        metadata={"help": "Copy the build into the package (src/robust_sft/organism/shipped/[v5/]seed<k>), where the "
                  "demo takes it from, so every machine fine-tunes the same weights."},
    )


def build(config: OrganismBuildConfig) -> Path:
    """Build the base model of world `config.seed` (cached), or with `ship` put it in the package."""
    from robust_sft.organism.store import build_base_model, ship_base_model

    return (ship_base_model if config.ship else build_base_model)(seed=config.seed, force=config.force,
                                                                  version=config.version)
