"""The paper's forgetting metrics, as small pure functions over accuracies.

TI  (target improvement) = 100 (acc_target_after - acc_target_before) / acc_target_before
BWT (backward transfer)  = mean over the non-target tasks of 100 (acc_after - acc_before) / acc_before
Both are relative changes in percent, measured against the untouched base model. Where the base accuracy is 0
a relative change is undefined; the change there is counted in percentage points instead (100 x (after - before)),
so one such task neither erases a method's BWT nor gets infinite weight. Reports say where this happened.

Spearman's rho relates a measure to BWT across fine-tunes (the inspect page, the mechanism analysis, the study).
"""

from __future__ import annotations

import math
from typing import Iterable, Mapping

import numpy as np


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


def average_ranks(values) -> np.ndarray:
    """Ranks 1..n of `values`, ties sharing the mean of the ranks they span."""
    values = np.asarray(values, dtype=np.float64)
    order = np.argsort(values, kind="mergesort")
    ranks = np.empty(len(values), dtype=np.float64)
    sorted_values = values[order]
    start = 0
    while start < len(values):
        end = start
        while end + 1 < len(values) and sorted_values[end + 1] == sorted_values[start]:
            end += 1
        ranks[order[start : end + 1]] = (start + end) / 2 + 1
        start = end + 1
    return ranks


def spearman(x, y) -> float | None:
    """Spearman's rho (Pearson correlation of average ranks); None when fewer than 3 pairs or a side is constant."""
    if len(x) != len(y):
        raise ValueError(f"spearman: {len(x)} x values but {len(y)} y values")
    if len(x) < 3:
        return None
    rx, ry = average_ranks(x), average_ranks(y)
    rx, ry = rx - rx.mean(), ry - ry.mean()
    denominator = math.sqrt(float((rx * rx).sum() * (ry * ry).sum()))
    return float((rx * ry).sum() / denominator) if denominator > 0 else None


def within_group_correlation(x, y, groups) -> tuple[float | None, int, int]:
    """Pearson correlation of x and y after subtracting each group's mean from both (groups as fixed factors):
    how x and y move together inside a group (a method along its learning rates, in one setting), not how the
    groups differ. Groups with one member carry no such information and are left out. Returns (r, n, groups
    used); r is None when fewer than 3 pairs remain or a side has no spread within groups."""
    if not len(x) == len(y) == len(groups):
        raise ValueError(f"within_group_correlation: {len(x)} x, {len(y)} y and {len(groups)} group values")
    members: dict = {}
    for xi, yi, g in zip(x, y, groups):
        members.setdefault(g, []).append((float(xi), float(yi)))
    dx, dy = [], []
    used = 0
    for pairs in members.values():
        if len(pairs) < 2:
            continue
        used += 1
        gx, gy = np.array(pairs).T
        dx += list(gx - gx.mean())
        dy += list(gy - gy.mean())
    dx, dy = np.array(dx), np.array(dy)
    denominator = math.sqrt(float((dx * dx).sum() * (dy * dy).sum())) if len(dx) else 0.0
    r = float((dx * dy).sum() / denominator) if len(dx) >= 3 and denominator > 0 else None
    return r, len(dx), used
