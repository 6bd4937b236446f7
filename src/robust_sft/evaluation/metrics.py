"""The paper's forgetting metrics, as small pure functions over accuracies.

TI  (target improvement) = 100 (acc_target_after - acc_target_before) / acc_target_before
BWT (backward transfer)  = mean over the non-target tasks of 100 (acc_after - acc_before) / acc_before
Both are relative changes in percent, measured against the untouched base model. Where the base accuracy is 0
a relative change is undefined; the change there is counted in percentage points instead (100 x (after - before)),
so one such task neither erases a method's BWT nor gets infinite weight. Reports say where this happened.
"""

from __future__ import annotations

import math
from typing import Iterable, Mapping


def relative_change(before: float, after: float) -> float:
    """100 (after - before) / before; in percentage points, 100 (after - before), when `before` is 0."""
    if before == 0:
        return 100.0 * after
    return 100.0 * (after - before) / before


def zero_base_tasks(before: Mapping[str, float]) -> list[str]:
    """Tasks whose base accuracy is 0: their TI/BWT term is in percentage points (see the module docstring)."""
    return [task for task, accuracy in before.items() if accuracy == 0]


def target_improvement(before: Mapping[str, float], after: Mapping[str, float], target: str) -> float:
    return relative_change(before[target], after[target])


def backward_transfer(before: Mapping[str, float], after: Mapping[str, float], others: Iterable[str]) -> float:
    changes = [relative_change(before[t], after[t]) for t in others]
    if not changes:
        raise ValueError("BWT needs at least one non-target task")
    return sum(changes) / len(changes)


def mean_std(values: Iterable[float]) -> tuple[float, float]:
    """Mean and sample standard deviation (0 for a single value) of the finite values."""
    xs = [v for v in values if not math.isnan(v)]
    if not xs:
        return math.nan, math.nan
    mean = sum(xs) / len(xs)
    if len(xs) == 1:
        return mean, 0.0
    return mean, math.sqrt(sum((x - mean) ** 2 for x in xs) / (len(xs) - 1))
