"""Resuming and the loss record: complete checkpoints, the resume point, the whole run's mean training loss."""

from __future__ import annotations

import json
import logging
import math
import shutil
from pathlib import Path

logger = logging.getLogger(__name__)


def epoch_metrics(history: list[dict]) -> list[dict]:
    """Per-epoch evaluation entries of the Trainer's log history, with the epoch rounded."""
    epochs = {}
    for entry in history:
        if any(k.startswith("eval_") for k in entry):
            epoch = int(math.ceil(entry.get("epoch", 0) - 1e-9))
            epochs.setdefault(epoch, {"epoch": epoch}).update(
                {k: v for k, v in entry.items() if k.startswith("eval_")}
            )
    return [epochs[k] for k in sorted(epochs)]


def checkpoint_is_complete(checkpoint: Path) -> bool:
    """True when the Trainer finished saving `checkpoint`: trainer_state.json is written last and must parse."""
    try:
        json.loads((checkpoint / "trainer_state.json").read_text())
    except (OSError, ValueError):
        return False
    return True


def resume_point(output_dir: Path, resume: str | None) -> str | None:
    """The checkpoint to resume from: `resume` itself, or for 'latest' the newest complete checkpoint-N.

    Checkpoints left half-written by a kill during a save are reported and removed: the Trainer cannot
    load them and writes them again when training reaches their step. With no complete checkpoint,
    'latest' starts from the beginning.
    """
    if resume is None:
        return None
    if resume != "latest":
        if Path(resume).is_dir() and not checkpoint_is_complete(Path(resume)):
            raise ValueError(f"{resume}: incomplete checkpoint (no readable trainer_state.json: killed while saving?)")
        return resume
    numbered = [p for p in output_dir.glob("checkpoint-*") if p.is_dir() and p.name.split("-", 1)[1].isdigit()]
    complete = []
    for checkpoint in numbered:
        if checkpoint_is_complete(checkpoint):
            complete.append(checkpoint)
        else:
            logger.warning("%s is incomplete (killed while saving); ignoring and removing it", checkpoint)
            shutil.rmtree(checkpoint, ignore_errors=True)  # other processes of a launch may race here
    if not complete:
        logger.warning("no complete checkpoint in %s; training from the start", output_dir)
        return None
    return str(max(complete, key=lambda p: int(p.name.split("-", 1)[1])))


def log_before_saves():
    """A callback that logs the running loss at every epoch end and at the last step.

    The log history is saved in each checkpoint, so it then accounts for every step before the checkpoint,
    and `mean_training_loss` of a resumed run covers the whole run.
    """
    from transformers import TrainerCallback

    class LogBeforeSaves(TrainerCallback):
        def on_step_end(self, args, state, control, **kwargs):
            if state.global_step >= state.max_steps:
                control.should_log = True

        def on_epoch_end(self, args, state, control, **kwargs):
            control.should_log = True

    return LogBeforeSaves()


def mean_training_loss(history: list[dict]) -> float | None:
    """Mean per-step training loss of the whole run, from the Trainer's log history.

    Each "loss" entry is the mean over the steps since the previous one, so it is weighted by that count.
    (The Trainer's own train_loss averages only the steps run since the last resume.)
    """
    total, steps, last_step = 0.0, 0, 0
    for entry in history:
        if "loss" in entry and "step" in entry:
            n = entry["step"] - last_step
            total, steps, last_step = total + entry["loss"] * n, steps + n, entry["step"]
    return total / steps if steps else None
