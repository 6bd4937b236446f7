"""`robust-sft study --docs DIR`: the study's summary, figures and each run's report copied for publishing."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

from robust_sft.core.artifacts import check_own_dir
from robust_sft.core.rundir import RunDir


def check_publish_target(docs: str | Path) -> None:
    """`publish` overwrites files of its own names in `docs`: only into a new, empty or published directory."""
    check_own_dir(docs, "study.json", "published study")


def publish(study_dir: str | Path, docs: str | Path) -> Path:
    """Copy the study's summary, figures and each run's report + results (no models) into `docs`."""
    study_dir, docs = Path(study_dir), Path(docs)
    check_publish_target(docs)
    docs.mkdir(parents=True, exist_ok=True)
    for name in ("study.json", "study.md", "study_config.json"):
        shutil.copy2(study_dir / name, docs / name)
    shutil.copytree(study_dir / "figures", docs / "figures", dirs_exist_ok=True)
    summary = json.loads((study_dir / "study.json").read_text())
    runs = {n: s["dir"] for n, s in summary["settings"].items()}
    if summary.get("lr_control") and not summary["lr_control"]["same_as"]:
        runs["lr_control"] = str(study_dir / "lr_control")
    for name, run_dir in runs.items():
        run, target = RunDir(run_dir), docs / name
        target.mkdir(exist_ok=True)
        for item in (run.results_file, run.report_md_file, run.analysis_file):
            if item.exists():
                shutil.copy2(item, target / item.name)
        shutil.copytree(run.figures_dir, target / run.figures_dir.name, dirs_exist_ok=True)
    return docs
