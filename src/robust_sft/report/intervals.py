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


def undominated(bwt: np.ndarray, ti: np.ndarray) -> np.ndarray:
    """Which points no other point beats: none forgets no more (BWT >=) and learns no less (TI >=), better in one.
    A rate whose point another rate dominates is not on the frontier (noise or an overshoot put it below)."""
    return np.array([not np.any((bwt >= b) & (ti >= t) & ((bwt > b) | (ti > t))) for b, t in zip(bwt, ti)])


def frontier_ti(bwt: float, frontier_bwt: np.ndarray, frontier_ti: np.ndarray) -> float:
    """The TI a frontier reaches at `bwt`: linear between its undominated points taken in order of BWT (along
    which TI falls as BWT rises), flat beyond its ends (no extrapolation past the rates that were run)."""
    keep = undominated(frontier_bwt, frontier_ti)
    order = np.argsort(frontier_bwt[keep], kind="stable")
    return float(np.interp(bwt, frontier_bwt[keep][order], frontier_ti[keep][order]))


def _points(target: tuple[np.ndarray, list[np.ndarray]], others: dict[str, tuple[np.ndarray, list[np.ndarray]]],
            draws: dict[str, np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    """(models, replicates) TI and BWT in points of each model in `target`/`others` ((before, [after, ...])), on
    the item draws given per task ("" for the target)."""
    def pp(before, afters, indices):
        return np.array([task_change_replicates(before, after, indices)["pp"] for after in afters])

    ti = pp(*target, draws[""])
    bwt = np.mean([pp(before, afters, draws[t]) for t, (before, afters) in others.items()], axis=0)
    return ti, bwt


def _item_draws(target: tuple, others: dict, seed: int, resamples: int) -> tuple[dict, dict]:
    """Per task ("" for the target): the draw that takes every item once, and `resamples` bootstrap draws, shared
    by every model of a joint bootstrap."""
    rng = np.random.default_rng(seed)
    every = {"": np.arange(len(target[0]))[None, :], **{t: np.arange(len(b))[None, :] for t, (b, _) in others.items()}}
    drawn = {"": resample_indices(len(target[0]), rng, resamples),
             **{t: resample_indices(len(b), rng, resamples) for t, (b, _) in others.items()}}
    return every, drawn


def frontier_gap_interval(target: tuple[np.ndarray, list[np.ndarray]],
                          others: dict[str, tuple[np.ndarray, list[np.ndarray]]], seed: int = 0,
                          resamples: int = BOOTSTRAP_RESAMPLES) -> dict:
    """A method's TI minus the TI that GT's learning-rate frontier reaches at the method's BWT, in points.

    `target` is (base (items,), [method (seeds, items), gt at rate 1 (seeds, items), ...]), `others` the same per
    other task. The frontier joins the undominated points among the base model (TI = BWT = 0: a rate of zero) and
    GT's points at each rate, so a method above it (gap > 0) learns more than GT at a rate that forgets as much.
    Each replicate draws every task's items once for all models, so the frontier and the method move together.
    """
    every, drawn = _item_draws(target, others, seed, resamples)

    def gaps(draws):
        ti, bwt = _points(target, others, draws)
        ti = np.vstack([ti, np.zeros((1, ti.shape[1]))])  # the base model closes the frontier at (0, 0)
        bwt = np.vstack([bwt, np.zeros((1, bwt.shape[1]))])
        return np.array([ti[0, r] - frontier_ti(bwt[0, r], bwt[1:, r], ti[1:, r]) for r in range(ti.shape[1])])

    return {"estimate": float(gaps(every)[0]), "interval": percentile_interval(gaps(drawn))}


def optimum_interval(target: tuple[np.ndarray, list[np.ndarray]],
                     others: dict[str, tuple[np.ndarray, list[np.ndarray]]], values: list[float], seed: int = 0,
                     resamples: int = BOOTSTRAP_RESAMPLES) -> dict:
    """Where TI + BWT (points) is highest along a grid: `values[k]` is the setting (a tau) of model k in
    `target`/`others` ((before, [after, ...]) as in frontier_gap_interval). Returns the best value, the interval of
    the best value over item replicates (percentiles taken on the grid's own values), and every value's
    TI + BWT. Ties go to the first value."""
    every, drawn = _item_draws(target, others, seed, resamples)
    grid = np.asarray(values, dtype=float)

    def scores(draws):
        ti, bwt = _points(target, others, draws)
        return ti + bwt  # (models, replicates)

    point = scores(every)[:, 0]
    best = grid[np.argmax(scores(drawn), axis=0)]
    tail = 100 * (1 - INTERVAL_LEVEL) / 2
    return {"estimate": float(grid[int(np.argmax(point))]),
            "interval": [float(np.percentile(best, tail, method="lower")),
                         float(np.percentile(best, 100 - tail, method="higher"))],
            "ti_plus_bwt": {f"{v:g}": float(s) for v, s in zip(values, point)}}
