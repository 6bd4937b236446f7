"""Percentage-point changes and their paired bootstrap intervals (report/intervals.py)."""

import numpy as np
import pytest

from robust_sft.report.intervals import (
    change_interval,
    common_items,
    difference_interval,
    frontier_gap_interval,
    frontier_ti,
    item_matrix,
    optimum_interval,
    percentile_interval,
    undominated,
)


def test_no_change_has_a_zero_estimate_and_a_zero_width_interval():
    before = np.array([1, 0, 1, 1, 0, 0, 1, 0], dtype=float)
    after = before[None, :].repeat(3, axis=0)
    out = change_interval({"t": (before, after)})
    assert out["pp"] == {"estimate": 0.0, "interval": [0.0, 0.0]}
    assert out["relative"] == {"estimate": 0.0, "interval": [0.0, 0.0]}


def test_pairing_makes_a_consistent_gain_certain_where_unpaired_noise_would_not():
    # 300 items, 40 % right before; after, 30 more items right and none lost: +10 points
    rng = np.random.default_rng(1)
    before = (rng.random(300) < 0.4).astype(float)
    after = before.copy()
    after[np.flatnonzero(before == 0)[:30]] = 1
    out = change_interval({"t": (before, after[None, :])})
    lower, upper = out["pp"]["interval"]
    assert out["pp"]["estimate"] == pytest.approx(10.0)
    # only gains: every draw is >= 0, and the interval is about +-3.5 points wide (binomial on 30 of 300)
    assert 5.0 < lower < 10.0 < upper < 15.0
    assert out["relative"]["estimate"] == pytest.approx(100 * 0.1 / before.mean())


def test_seeds_are_averaged_per_item_and_bwt_averages_tasks():
    before = np.array([1, 1, 0, 0], dtype=float)
    after_seeds = np.array([[1, 0, 0, 0], [1, 1, 1, 0]], dtype=float)  # seed means: 0.25 and 0.75 -> 0.5
    same = {"a": (before, after_seeds), "b": (before, before[None, :])}
    out = change_interval(same)
    assert out["pp"]["estimate"] == pytest.approx((0.0 + 0.0) / 2)
    shifted = {"a": (before, np.ones((1, 4))), "b": (before, before[None, :])}  # +50 points on a, 0 on b
    assert change_interval(shifted)["pp"]["estimate"] == pytest.approx(25.0)


def test_a_zero_base_makes_the_relative_change_nan_not_infinite():
    out = change_interval({"t": (np.zeros(5), np.ones((1, 5)))})
    assert out["pp"]["estimate"] == 100.0
    assert np.isnan(out["relative"]["estimate"]) and np.isnan(out["relative"]["interval"]).all()


def test_difference_is_antisymmetric_and_zero_for_identical_models():
    rng = np.random.default_rng(0)
    a, b = (rng.random((3, 200)) < 0.6).astype(float), (rng.random((2, 200)) < 0.5).astype(float)
    ab, ba = difference_interval({"t": (a, b)}), difference_interval({"t": (b, a)})
    assert ab["estimate"] == pytest.approx(-ba["estimate"])
    assert ab["interval"][0] == pytest.approx(-ba["interval"][1]) and ab["interval"][0] < ab["estimate"]
    assert difference_interval({"t": (a, a)}) == {"estimate": 0.0, "interval": [0.0, 0.0]}


def test_items_are_paired_by_id_on_the_items_every_model_answered():
    base, after = {"x": True, "y": False, "z": True}, {"y": True, "z": True, "w": False}
    ids = common_items(base, after)
    assert ids == ["y", "z"]
    assert item_matrix([base, after], ids).tolist() == [[0.0, 1.0], [1.0, 1.0]]


def test_percentile_interval_drops_nan_replicates():
    assert percentile_interval(np.array([np.nan, 1.0, 1.0])) == [1.0, 1.0]
    assert np.isnan(percentile_interval(np.array([np.nan]))).all()


def _accuracy_row(n: int, right: int) -> np.ndarray:
    """A (1, n) 0/1 row with its first `right` items right."""
    row = np.zeros((1, n))
    row[0, :right] = 1
    return row


def test_frontier_ti_joins_points_in_order_of_bwt_and_is_flat_beyond_its_ends():
    bwt, ti = np.array([-30.0, 0.0, -10.0]), np.array([40.0, 0.0, 20.0])
    assert frontier_ti(-20.0, bwt, ti) == pytest.approx(30.0)
    assert frontier_ti(-5.0, bwt, ti) == pytest.approx(10.0)
    assert frontier_ti(-50.0, bwt, ti) == pytest.approx(40.0)  # forgets more than every rate run: no extrapolation
    assert frontier_ti(+4.0, bwt, ti) == pytest.approx(0.0)


def test_frontier_ti_leaves_out_rates_another_rate_beats_on_both_axes():
    # GT at three rates and the base: (-10, 50), (-1, 40), (-2, 15), (0, 0). (-1, 40) forgets less and learns
    # more than (-2, 15), so the frontier at BWT -2 is on the line from (-10, 50) to (-1, 40), not at 15.
    bwt, ti = np.array([-10.0, -1.0, -2.0, 0.0]), np.array([50.0, 40.0, 15.0, 0.0])
    assert undominated(bwt, ti).tolist() == [True, True, False, True]
    assert frontier_ti(-2.0, bwt, ti) == pytest.approx(40.0 + 10.0 / 9.0)
    # a rate that gains on the other tasks dominates the base model: the frontier above BWT 0 is that rate's TI
    bwt, ti = np.array([-10.0, 0.3, 0.0]), np.array([50.0, 20.0, 0.0])
    assert undominated(bwt, ti).tolist() == [True, True, False]
    assert frontier_ti(-0.1, bwt, ti) == pytest.approx(20.0 + 30.0 * 0.4 / 10.3)
    assert frontier_ti(0.3, bwt, ti) == pytest.approx(20.0)
    # equal points: both stay (neither is better in one), and the frontier passes through them
    assert undominated(np.array([-1.0, -1.0]), np.array([5.0, 5.0])).tolist() == [True, True]


def test_a_method_above_gts_frontier_has_a_positive_gap_and_one_below_a_negative_gap():
    # 1000 target items, base 200 right; one other task of 1000 items, base 800 right. GT at two rates:
    # (TI +20, BWT -10) and (TI +40, BWT -30); with the base model (0, 0) the frontier at BWT -20 is TI +30.
    n = 1000
    base_t, base_o = _accuracy_row(n, 200)[0], _accuracy_row(n, 800)[0]
    gt_gentle = (_accuracy_row(n, 400), _accuracy_row(n, 700))
    gt_strong = (_accuracy_row(n, 600), _accuracy_row(n, 500))
    for method_right, gap in ((550, +5.0), (450, -5.0)):  # TI +35 or +25, both at BWT -20
        method = (_accuracy_row(n, method_right), _accuracy_row(n, 600))
        out = frontier_gap_interval((base_t, [method[0], gt_gentle[0], gt_strong[0]]),
                                    {"other": (base_o, [method[1], gt_gentle[1], gt_strong[1]])}, resamples=500)
        lower, upper = out["interval"]
        assert out["estimate"] == pytest.approx(gap)
        assert lower <= gap <= upper
        assert (lower > 0) == (gap > 0) and (upper < 0) == (gap < 0)  # 1000 items: 5 points is beyond noise


def test_a_method_equal_to_a_gt_rate_sits_on_the_frontier():
    n = 50
    base_t, base_o = _accuracy_row(n, 10)[0], _accuracy_row(n, 40)[0]
    gt1, gt2 = (_accuracy_row(n, 20), _accuracy_row(n, 35)), (_accuracy_row(n, 30), _accuracy_row(n, 25))
    out = frontier_gap_interval((base_t, [gt1[0], gt1[0], gt2[0]]), {"o": (base_o, [gt1[1], gt1[1], gt2[1]])},
                                resamples=200)
    assert out["estimate"] == pytest.approx(0.0)
    assert out["interval"] == pytest.approx([0.0, 0.0])


def test_the_optimum_of_a_grid_is_found_with_an_interval_on_the_grid():
    # three taus; TI + BWT = +10, +30, +20 points on 1000 items each: the middle one is best beyond noise
    n = 1000
    base_t, base_o = _accuracy_row(n, 300)[0], _accuracy_row(n, 800)[0]
    targets = [_accuracy_row(n, 450), _accuracy_row(n, 600), _accuracy_row(n, 650)]  # TI +15, +30, +35
    others = [_accuracy_row(n, 750), _accuracy_row(n, 800), _accuracy_row(n, 650)]  # BWT -5, 0, -15
    out = optimum_interval((base_t, targets), {"o": (base_o, others)}, [2.5, 20, 1000], resamples=500)
    assert out["estimate"] == 20 and out["interval"] == [20, 20]
    assert out["ti_plus_bwt"] == pytest.approx({"2.5": 10.0, "20": 30.0, "1000": 20.0})
    # two settings within noise of each other: the interval spans both
    targets[2] = _accuracy_row(n, 752)  # TI +45.2, BWT -15: +30.2, a hair above tau 20
    out = optimum_interval((base_t, targets), {"o": (base_o, others)}, [2.5, 20, 1000], resamples=500)
    assert out["estimate"] == 1000 and out["interval"] == [20, 1000]
