"""The training loss the trainer logged, and its value at the step kept as the final model."""

from __future__ import annotations

import json
from pathlib import Path


def loss_curve(loss_log: str | Path) -> list[dict]:
    """(step, epoch, loss) of every training-loss row the Trainer logged."""
    rows = []
    path = Path(loss_log)
    for lineno, line in enumerate(path.read_text().splitlines(), start=1):
        if not line.strip():
            continue
        try:
            entry = json.loads(line)
        except ValueError as err:
            raise ValueError(f"{path}:{lineno}: not JSON ({err})") from None
        if "loss" in entry and "step" in entry:
            rows.append({"step": entry["step"], "epoch": entry.get("epoch"), "loss": entry["loss"]})
    return rows


def selected_step(best_checkpoint: str | None) -> int | None:
    """The step of the checkpoint kept as final/ (checkpoint-N), None when the last step was kept."""
    if not best_checkpoint:
        return None
    tail = Path(best_checkpoint).name.rpartition("-")[2]
    return int(tail) if tail.isdigit() else None


def final_train_loss(curve: list[dict], step: int | None) -> float | None:
    """The last logged training loss at or before the selected step (the last one when no epoch was selected)."""
    kept = [row["loss"] for row in curve if step is None or row["step"] <= step]
    return kept[-1] if kept else None
