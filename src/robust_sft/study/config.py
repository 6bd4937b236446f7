"""A study's config: one experiment definition in several organism worlds and fine-tuning modes, and its grids."""

from __future__ import annotations

import itertools
import typing
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from robust_sft.configs import resolve_config
from robust_sft.core.artifacts import read_text
from robust_sft.core.config_types import coerce_fields, convert, from_mapping, require, require_path_name
from robust_sft.experiment.config import ExperimentConfig
from robust_sft.experiment.runner import Experiment
from robust_sft.training.config import TrainConfig


@dataclass
class StudyConfig:
    """A study: one experiment definition run in several organism worlds and fine-tuning modes."""

    name: str = "study"
    worlds: list[int] = field(default_factory=lambda: [0, 1, 2], metadata={  # organism seeds; the first selects
        "list_only": "worlds: [1] is world 1 alone; three worlds are [0, 1, 2]"})
    # ExperimentConfig fields shared by every setting (world and name are set per setting).
    experiment: dict = field(default_factory=dict)
    # mode name -> {"train": fixed TrainConfig options, "grid": {option: [values]} searched by the oracle}
    modes: dict = field(default_factory=dict)
    # Worlds used in any design decision (the organism's design, the options' selection): their settings' judged
    # criteria are counted apart, never among the held-out worlds. Empty: the study does not split its worlds.
    design_worlds: list[int] = field(default_factory=list)
    # Worlds whose settings run experiment.lr_sweep (None: every world); the others run without it.
    lr_sweep_worlds: list[int] | None = None
    selection_seed: int = 0
    selection_validation_limit: int | None = 200  # more validation prompts than the runs' best-epoch choice uses
    # ExperimentConfig fields that turn `experiment` into the learning-rate control (world = the first world);
    # empty: no separate control run.
    lr_control: dict = field(default_factory=dict)

    def __post_init__(self) -> None:
        coerce_fields(self)
        require_path_name(self.name, "name")  # the default study directory is runs/<name>
        require(bool(self.worlds) and len(set(self.worlds)) == len(self.worlds),
                f"worlds must be distinct organism seeds, not {self.worlds}")
        require(set(self.design_worlds) <= set(self.worlds),
                f"design_worlds {self.design_worlds} must be among worlds {self.worlds}")
        require(bool(self.modes), "modes must name at least one fine-tuning mode")
        for mode, spec in self.modes.items():
            require_path_name(mode, "mode")  # its runs are w<world>-<mode>/
            unknown = set(spec) - {"train", "grid"}
            require(not unknown, f"modes.{mode}: unknown key(s) {sorted(unknown)} (train, grid)")
            grid = spec.get("grid", {})
            require(all(isinstance(v, list) and v for v in grid.values()),
                    f"modes.{mode}.grid: every option needs a non-empty list of values")
        selecting = any(len(grid_points(spec)) > 1 for spec in self.modes.values())
        require(not self.design_worlds or not selecting or self.worlds[0] in self.design_worlds,
                f"world {self.worlds[0]} selects the options (a grid has several points), so it is a design world: "
                f"add it to design_worlds {self.design_worlds}")
        for key in ("name", "world"):
            require(key not in self.experiment, f"experiment.{key} is set per setting by the study")
        # Every setting's experiment is built (its tasks and train options checked) now, before anything runs.
        for mode in self.modes:
            for point in grid_points(self.modes[mode]):
                require_path_name(point_name(mode, point), f"modes.{mode} grid point")  # select/models/<point>/
                try:
                    Experiment(ExperimentConfig(**self.setting_options(self.worlds[0], mode, point)), "-",
                               progress=False)
                except ValueError as err:
                    raise ValueError(f"modes.{mode} {point_name(mode, point)}: {err}") from None
        if self.lr_control:
            try:
                Experiment(ExperimentConfig(**self.lr_control_options()), "-", progress=False)
            except ValueError as err:
                raise ValueError(f"lr_control: {err}") from None

    def setting_options(self, world: int, mode: str, chosen: dict) -> dict:
        spec = self.modes[mode]
        train = {**self.experiment.get("train", {}), **spec.get("train", {}), **chosen}
        # every model is measured in its unit: the weights need not outlive the machine (or session) that trained it
        options = {**self.experiment, "name": f"w{world}-{mode}", "world": world, "train": train, "analyze_units": True}
        if self.lr_sweep_worlds is not None and world not in self.lr_sweep_worlds:
            options["lr_sweep"] = {}
        return options

    def lr_control_options(self) -> dict:
        train = {**self.experiment.get("train", {}), **self.lr_control.get("train", {})}
        # its own methods: the study's criteria are judged in the settings (lr_control may name its own)
        return {**self.experiment, "criteria": [], **self.lr_control, "name": "lr_control", "world": self.worlds[0],
                "train": train, "analyze_units": True}

    @property
    def kl_limit(self) -> int | None:
        """The settings' KL limit for the mechanism measures (ExperimentConfig.kl_limit, set under `experiment`)."""
        return self.experiment.get("kl_limit", ExperimentConfig.kl_limit)


def load_study_config(path: str | Path) -> StudyConfig:
    path = resolve_config(path)
    return from_mapping(StudyConfig, yaml.safe_load(read_text(path)) or {}, str(path))


def grid_points(spec: dict) -> list[dict]:
    """The cartesian product of a mode's grid, in config order. LoRA's alpha follows the rank (alpha = 2r, the
    demo's ratio) unless the grid sets it."""
    grid = spec.get("grid", {})
    hints = typing.get_type_hints(TrainConfig)
    unknown = sorted(set(grid) - set(hints))
    if unknown:
        raise ValueError(f"grid: unknown train option(s) {unknown}")
    typed = {k: [convert(v, hints[k]) for v in values] for k, values in grid.items()}  # YAML's 1e-4 is a string
    points = [dict(zip(typed, values)) for values in itertools.product(*typed.values())] or [{}]
    for point in points:
        if "lora_r" in point and "lora_alpha" not in grid:
            point["lora_alpha"] = 2 * point["lora_r"]
    return points


def point_name(mode: str, point: dict) -> str:
    short = {"learning_rate": "lr", "lora_r": "r", "lora_alpha": "alpha"}
    parts = [f"{short.get(k, k)}{v:.0e}" if k == "learning_rate" else f"{short.get(k, k)}{v}"
             for k, v in point.items() if k != "lora_alpha" or "lora_r" not in point]
    return "-".join([mode, *parts])
