"""A config's pre-registered criteria: checked when the config is read, judged from results' intervals."""

import pytest

from robust_sft.core.config_types import ConfigError
from robust_sft.experiment.config import ExperimentConfig, load_config
from robust_sft.report.criteria import check_criteria, check_criteria_variants, judge_criteria, tau_grid


def criterion(**fields):
    return {"id": "C", "claim": "x", "method": "gt", "quantity": "bwt_pp", "holds_if": "upper < 0", **fields}


def test_each_bad_criterion_is_refused_naming_its_place_and_field():
    cases = [
        ([criterion(quantity="accuracy")], r"criteria\[0\] \(C\): quantity must be one of ti_pp"),
        ([criterion(holds_if="mean < 0")], r"criteria\[0\] \(C\): holds_if must read"),
        ([criterion(holds_if="upper < zero")], "threshold must be a number, not 'zero'"),
        ([criterion(versus="stm@2.5", quantity="bwt")], "versus.*is in points"),
        ([criterion(), criterion()], r"criteria\[1\] \(C\): id 'C' is used twice"),
        ([criterion(requires=["P"])], r"requires \['P'\], which are not criteria listed before it"),
        ([criterion(colour="red")], r"unknown field\(s\) \['colour'\]"),
        ([{"id": "C"}], r"missing \['claim', 'method', 'quantity', 'holds_if'\]"),
    ]
    for criteria, message in cases:
        with pytest.raises(ConfigError, match=message):
            check_criteria(criteria)


def test_a_criterion_naming_no_variant_of_the_run_fails_before_anything_runs():
    checked = check_criteria([criterion(method="stm@25")])
    with pytest.raises(ConfigError, match="'stm@25' is not a variant of this run; the variants are gt, stm@2.5"):
        check_criteria_variants(checked, ["gt", "stm@2.5"])


def interval(estimate, lower, upper):
    return {"estimate": estimate, "interval": [lower, upper]}


def test_criteria_are_judged_from_their_bound_with_requirements_and_missing_variants():
    criteria = check_criteria([
        criterion(id="P", method="oracle", quantity="ti_pp", holds_if="lower > 0"),
        criterion(id="B", method="gt", quantity="bwt_pp", holds_if="upper < 0", requires=["P"]),
        criterion(id="S", method="stm@2.5", versus="gt", quantity="bwt_pp", holds_if="lower > 0"),
        criterion(id="N", method="stm@10", quantity="ti", holds_if="estimate >= 5"),
        criterion(id="Q", method="gt", quantity="ti_pp", holds_if="estimate > 0", requires=["S"]),
    ])
    methods = {
        "oracle": {"intervals": {"ti_pp": interval(12.0, 4.0, 20.0)}},
        "gt": {"intervals": {"bwt_pp": interval(-6.0, -9.0, -2.5), "ti_pp": interval(3.0, 1.0, 5.0)}},
        "stm@2.5": {"versus": {"gt": {"bwt_pp": interval(2.0, -0.5, 4.5)}}},
    }
    judged = {c["id"]: c for c in judge_criteria(criteria, methods)}
    assert [judged[i]["status"] for i in "PBSNQ"] == ["held", "held", "not held", "not tested", "not counted"]
    assert judged["S"]["evidence"] == "+2.0 [-0.5, +4.5]"
    assert "requires S, which did not hold" in judged["Q"]["evidence"]
    # the other outcome is reachable: the same rule fails when the control's interval touches 0
    methods["oracle"]["intervals"]["ti_pp"] = interval(12.0, -1.0, 20.0)
    judged = {c["id"]: c for c in judge_criteria(criteria, methods)}
    assert judged["P"]["status"] == "not held" and judged["B"]["status"] == "not counted"


def test_quick_replaces_fields_and_names_its_own_run(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("name: real\nseeds: [0, 1, 2]\neval_limit: 300\nquick:\n  seeds: [0]\n  eval_limit: 50\n")
    full, quick = load_config(path), load_config(path, quick=True)
    assert (full.name, full.seeds, full.eval_limit) == ("real", [0, 1, 2], 300)
    assert (quick.name, quick.seeds, quick.eval_limit, quick.quick) == ("real-quick", [0], 50, {})
    path.write_text("name: real\nquick:\n  nmae: x\n")
    with pytest.raises(ConfigError, match=r"c.yaml: quick: unknown or unchangeable field\(s\) \['nmae'\]"):
        load_config(path, quick=True)
    path.write_text("name: real\n")
    with pytest.raises(ConfigError, match="c.yaml: --quick needs a `quick:` mapping"):
        load_config(path, quick=True)


def test_an_experiment_config_checks_its_criteria():
    with pytest.raises(ConfigError, match="holds_if must read"):
        ExperimentConfig(criteria=[criterion(holds_if="upper<0")])


def test_a_frontier_criterion_needs_gt_at_two_rates_and_reads_the_frontier_gap():
    checked = check_criteria([criterion(id="F", method="stm@2.5", quantity="ti_pp_over_gt_frontier",
                                        holds_if="lower > 0")])
    with pytest.raises(ConfigError, match="needs GT at two or more learning rates; this run has 1"):
        check_criteria_variants(checked, ["gt", "stm@2.5"], gt_rates=1)
    check_criteria_variants(checked, ["gt", "gt_lr1e-04", "stm@2.5"], gt_rates=2)
    with pytest.raises(ConfigError, match="versus.*is in points"):
        check_criteria([criterion(versus="gt", quantity="ti_pp_over_gt_frontier")])
    # a run whose results hold no frontier says why, rather than "did not run"
    judged = judge_criteria(checked, {"stm@2.5": {"intervals": {}}})
    assert judged[0]["status"] == "not tested" and judged[0]["evidence"] == "GT ran at fewer than two learning rates"
    above = {"stm@2.5": {"over_gt_frontier": {**interval(4.0, 1.5, 6.5), "frontier": ["gt", "gt_lr1e-04"]}}}
    assert judge_criteria(checked, above)[0]["status"] == "held"
    above["stm@2.5"]["over_gt_frontier"]["interval"] = [-0.5, 6.5]
    assert judge_criteria(checked, above)[0]["status"] == "not held"


def test_a_best_tau_criterion_reads_a_familys_grid_and_is_judged_on_the_grid():
    checked = check_criteria([criterion(id="E", method="stm", quantity="best_tau", holds_if="upper <= 5")])
    variants = ["gt", "stm@2.5", "stm@20", "stm@auto", "stm@2.5_lr1e-04", "stm_random@2.5"]
    check_criteria_variants(checked, variants)
    assert tau_grid(variants, "stm") == [(2.5, "stm@2.5"), (20.0, "stm@20")]
    with pytest.raises(ConfigError, match="'stm' has fewer than two taus"):
        check_criteria_variants(checked, ["gt", "stm@2.5", "stm@auto"])
    low = {"stm": {"estimate": 2.5, "interval": [2.5, 5.0]}}
    judged = judge_criteria(checked, {}, low)[0]
    assert judged["status"] == "held" and judged["evidence"] == "tau 2.5 [2.5, 5]"
    assert judge_criteria(checked, {}, {"stm": {"estimate": 2.5, "interval": [2.5, 20.0]}})[0]["status"] == "not held"
    assert judge_criteria(checked, {}, {})[0]["status"] == "not tested"
