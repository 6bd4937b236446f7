"""`robust-sft demo`: the paper's experiment on the embedded model organism (src/robust_sft/configs/demo.yaml)."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from robust_sft.configs import SHIPPED
from robust_sft.core.rundir import RunDir
from robust_sft.experiment.runner import Experiment, load_config

DEMO_CONFIG = "demo.yaml"


def demo_config_path() -> Path:
    return SHIPPED / DEMO_CONFIG


def run_demo(out: str | Path = "runs/demo", progress: bool = True) -> dict:
    """Build (or reuse) the organism, run every method over the configured seeds, write the report."""
    experiment = Experiment(load_config(demo_config_path()), out, progress=progress)
    results = experiment.run()
    print(RunDir(out).report_md_file.read_text())
    return results


@dataclass
class DemoConfig:
    """Options of `robust-sft demo`."""

    out: str = field(default="runs/demo", metadata={"help": "Run directory (re-running resumes)."})


def demo(config: DemoConfig) -> dict:
    """`robust-sft demo`: `run_demo` into `config.out`."""
    return run_demo(config.out)
