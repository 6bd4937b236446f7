"""What our trainers add to transformers' Trainer, for the token trainer and TRL's SDFT trainer alike: a task
metric (e.g. validation accuracy) at every epoch end, beside or instead of the validation loss."""

from __future__ import annotations

from typing import Callable


class EpochMetricMixin:
    """Mix in before a Trainer class: `eval_fn(model) -> {name: value}` adds `eval_<name>` at every evaluation;
    `eval_loss=False` skips the Trainer's own loss pass (its eval dataset is then never read)."""

    def __init__(self, *args, eval_fn: Callable | None = None, eval_loss: bool = True, **kwargs):
        super().__init__(*args, **kwargs)
        self.eval_fn = eval_fn
        self.eval_loss = eval_loss

    def evaluate(self, eval_dataset=None, ignore_keys=None, metric_key_prefix: str = "eval"):
        metrics = {}
        if self.eval_loss:
            metrics = super().evaluate(eval_dataset, ignore_keys, metric_key_prefix)
        if self.eval_fn is not None:
            extra = {f"{metric_key_prefix}_{k}": v for k, v in self.eval_fn(self.model).items()}
            metrics.update(extra)
            self.log(extra)
        return metrics
