"""Percentage-point changes with paired bootstrap intervals over test items.

A fine-tuned model and its base model answer the same test items, so their difference is paired: each bootstrap
replicate draws the test items of a task with replacement and uses the same draw for every model compared. Seeds
are fine-tunes, not samples of items: a replicate averages the seeds' correctness per drawn item. BWT draws each
other task's items independently and averages the per-task changes, as BWT itself does.

Point estimates are the plain (seed-averaged) changes; intervals are percentile intervals of the replicates.
Everything here is a pure function of 0/1 correctness arrays.
"""

from __future__ import annotations

import numpy as np

# Replicates per interval: the 2.5/97.5 percentiles of 2000 replicates move by about 0.1 point between draws.
BOOTSTRAP_RESAMPLES = 2000
INTERVAL_LEVEL = 0.95


def item_matrix(models: list[dict[str, bool]], items: list[str]) -> np.ndarray:
    """(len(models), len(items)) 0/1 array: model m's correctness on item i (one row per seed or model)."""
    return np.array([[float(model[item]) for item in items] for model in models], dtype=np.float64).reshape(
        len(models), len(items))


def common_items(*item_maps: dict[str, bool]) -> list[str]:
    """The item ids every map scored, sorted: a paired comparison reads only items that every model answered."""
    shared = set(item_maps[0])
    for item_map in item_maps[1:]:
        shared &= set(item_map)
    return sorted(shared)


def resample_indices(n_items: int, rng: np.random.Generator, resamples: int = BOOTSTRAP_RESAMPLES) -> np.ndarray:
    """(resamples, n_items) item indices drawn with replacement."""
    return rng.integers(0, n_items, size=(resamples, n_items))


def percentile_interval(values: np.ndarray, level: float = INTERVAL_LEVEL) -> list[float]:
    """The central `level` percentile interval of bootstrap replicates (NaN replicates, e.g. a zero base, dropped)."""
    finite = values[np.isfinite(values)]
    if finite.size == 0:
        return [float("nan"), float("nan")]
    tail = 100 * (1 - level) / 2
    return [float(np.percentile(finite, tail)), float(np.percentile(finite, 100 - tail))]


def _relative(before: np.ndarray, after: np.ndarray) -> np.ndarray:
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(before > 0, 100 * (after - before) / before, np.nan)


def task_change_replicates(before: np.ndarray, after: np.ndarray, indices: np.ndarray) -> dict[str, np.ndarray]:
    """One task's change per replicate, in points and relative %: `before` (items,) and `after` (seeds, items)
    0/1 arrays; `indices` (replicates, items) the drawn items."""
    before_acc = before[indices].mean(axis=1)
    after_acc = after.mean(axis=0)[indices].mean(axis=1)
    return {"pp": 100 * (after_acc - before_acc), "relative": _relative(before_acc, after_acc)}


def task_change(before: np.ndarray, after: np.ndarray) -> dict[str, float]:
    """One task's seed-averaged change: points and relative % (NaN where the base accuracy is 0); the draw
    that takes every item once."""
    every_item = np.arange(len(before))[None, :]
    return {unit: float(values[0]) for unit, values in task_change_replicates(before, after, every_item).items()}


def change_interval(tasks: dict[str, tuple[np.ndarray, np.ndarray]], seed: int = 0,
                    resamples: int = BOOTSTRAP_RESAMPLES) -> dict:
    """The mean change over `tasks` ({task: (before (items,), after (seeds, items))}): TI with one task, BWT with
    the others. Returns the point estimates and intervals, in points (`pp`) and relative % (`relative`)."""
    rng = np.random.default_rng(seed)
    points = [task_change(before, after) for before, after in tasks.values()]
    replicates = [task_change_replicates(before, after, resample_indices(len(before), rng, resamples))
                  for before, after in tasks.values()]
    out = {}
    for unit in ("pp", "relative"):
        estimate = float(np.mean([p[unit] for p in points]))
        stacked = np.mean([r[unit] for r in replicates], axis=0)
        out[unit] = {"estimate": estimate, "interval": percentile_interval(stacked)}
    return out


def difference_interval(tasks: dict[str, tuple[np.ndarray, np.ndarray]], seed: int = 0,
                        resamples: int = BOOTSTRAP_RESAMPLES) -> dict:
    """Method A minus method B on the same items, in points, averaged over `tasks` ({task: (after_a (seeds, items),
    after_b (seeds, items))}): e.g. STM's TI minus GT's TI, where the base model's accuracy cancels."""
    rng = np.random.default_rng(seed)
    estimate = float(np.mean([100 * (a.mean() - b.mean()) for a, b in tasks.values()]))
    replicates = []
    for a, b in tasks.values():
        indices = resample_indices(a.shape[1], rng, resamples)
        replicates.append(100 * (a.mean(axis=0)[indices].mean(axis=1) - b.mean(axis=0)[indices].mean(axis=1)))
    return {"estimate": estimate, "interval": percentile_interval(np.mean(replicates, axis=0))}
