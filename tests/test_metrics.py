import math

import numpy as np
import pytest

from robust_sft.evaluation.metrics import (
    backward_transfer,
    mean_std,
    relative_change,
    spearman,
    target_improvement,
    zero_base_tasks,
)


def test_relative_change_in_percent():
    assert relative_change(0.5, 0.6) == pytest.approx(20.0)
    assert relative_change(0.8, 0.4) == pytest.approx(-50.0)


def test_a_zero_base_counts_percentage_points():
    assert relative_change(0.0, 0.3) == pytest.approx(30.0)
    assert relative_change(0.0, 0.0) == 0.0
    before, after = {"target": 0.5, "a": 0.0, "b": 0.5}, {"target": 0.5, "a": 0.1, "b": 0.25}
    assert backward_transfer(before, after, ["a", "b"]) == pytest.approx((10.0 - 50.0) / 2)
    assert zero_base_tasks(before) == ["a"]


def test_ti_and_bwt_follow_the_paper_definitions():
    before = {"target": 0.4, "a": 0.8, "b": 0.5}
    after = {"target": 0.5, "a": 0.4, "b": 0.5}
    assert target_improvement(before, after, "target") == pytest.approx(25.0)
    assert backward_transfer(before, after, ["a", "b"]) == pytest.approx((-50.0 + 0.0) / 2)
    with pytest.raises(ValueError):
        backward_transfer(before, after, [])


def test_mean_and_sample_std_skip_nan():
    assert mean_std([1.0, 2.0, 3.0]) == pytest.approx((2.0, 1.0))
    assert mean_std([4.0]) == (4.0, 0.0)
    assert mean_std([1.0, float("nan"), 3.0]) == pytest.approx((2.0, math.sqrt(2)))
    assert all(math.isnan(x) for x in mean_std([]))


def test_one_spearman_serves_inspect_and_the_analysis():
    from robust_sft.analysis import mechanism
    from robust_sft.report import inspect

    assert mechanism.spearman is spearman and inspect.spearman is spearman
    assert spearman([1, 2, 3, 4], [10, 20, 25, 100]) == pytest.approx(1.0)
    assert spearman([1, 2, 3, 4], [5, 1, 0, -7]) == pytest.approx(-1.0)
    assert spearman([1, 2, 3], [1, 1, 2]) == pytest.approx(np.corrcoef([0, 1, 2], [0.5, 0.5, 2])[0, 1])
    assert spearman([1, 2], [2, 1]) is None and spearman([1, 2, 3], [4, 4, 4]) is None
