"""The numbers of results.json and report.md from hand-made inputs with known answers: the seed aggregate, sample-wise
forgetting, the trained-token perplexity, and report.md's tables read back against results.json."""

import math
import re

import numpy as np
import pytest

from robust_sft.masking.policies import MaskResult
from robust_sft.report.claims import judge_claims
from robust_sft.report.criteria import check_criteria, judge_criteria
from robust_sft.report.markdown import SOURCE_LABELS, render_markdown
from robust_sft.report.results import _aggregate, _mean_transitions, kept_token_ppl, sample_transitions

NAN = float("nan")


# --------------------------------------------------------------------------------------------- seeds


def seed(target_accuracy, ti, bwt, other_accuracy):
    return {"target_accuracy": target_accuracy, "ti": ti, "bwt": bwt,
            "accuracies": {"t": target_accuracy, "o": other_accuracy}}


def test_the_aggregate_is_the_mean_and_sample_std_over_every_seed():
    seeds = {"0": seed(0.5, 10.0, -10.0, 0.2), "1": seed(0.6, 20.0, -20.0, 0.4), "2": seed(0.7, 30.0, -60.0, 0.9)}
    out = _aggregate(seeds, ["t", "o"])
    assert out["mean"]["ti"] == pytest.approx(20.0) and out["std"]["ti"] == pytest.approx(10.0)
    assert out["mean"]["bwt"] == pytest.approx(-30.0)
    assert out["std"]["bwt"] == pytest.approx(math.sqrt((20**2 + 10**2 + 30**2) / 2))
    assert out["mean"]["target_accuracy"] == pytest.approx(0.6) and out["std"]["target_accuracy"] == pytest.approx(0.1)
    assert out["mean"]["accuracies"] == pytest.approx({"t": 0.6, "o": 0.5})
    assert out["std"]["accuracies"]["o"] == pytest.approx(math.sqrt((0.3**2 + 0.1**2 + 0.4**2) / 2))


def test_a_seed_with_an_undefined_metric_is_left_out_of_that_metric_only():
    seeds = {"0": seed(0.5, 10.0, NAN, 0.2), "1": seed(0.6, 20.0, -20.0, 0.4), "2": seed(0.7, 30.0, -40.0, 0.9)}
    out = _aggregate(seeds, ["t", "o"])
    assert out["mean"]["bwt"] == pytest.approx(-30.0) and out["std"]["bwt"] == pytest.approx(math.sqrt(200))
    assert out["mean"]["ti"] == pytest.approx(20.0)


# --------------------------------------------------------------------------------------------- sample-wise


def test_sample_transitions_count_items_lost_and_gained():
    before = {"a": True, "b": True, "c": True, "d": False, "e": False, "only_before": True}
    after = {"a": True, "b": False, "c": False, "d": True, "e": False, "only_after": False}
    assert sample_transitions(before, after) == {"right_to_wrong": pytest.approx(2 / 3), "wrong_to_right": 0.5,
                                                 "base_right": 3, "base_wrong": 2}


def test_sample_transitions_are_nan_where_the_base_model_has_no_item_on_a_side():
    out = sample_transitions({"a": False, "b": False}, {"a": True, "b": False})
    assert math.isnan(out["right_to_wrong"]) and out["wrong_to_right"] == 0.5
    out = sample_transitions(dict.fromkeys("abcd", True), {"a": False, "b": True, "c": True, "d": True})
    assert out["right_to_wrong"] == 0.25 and math.isnan(out["wrong_to_right"])


def test_mean_transitions_average_each_share_over_seeds():
    seeds = {"0": {"transitions": {"o": {"right_to_wrong": 0.1, "wrong_to_right": 0.6}}},
             "1": {"transitions": {"o": {"right_to_wrong": 0.3, "wrong_to_right": 0.2}}}}
    assert _mean_transitions(seeds, ["o"]) == {"o": {"right_to_wrong": pytest.approx(0.2),
                                                     "wrong_to_right": pytest.approx(0.4)}}


# --------------------------------------------------------------------------------------------- trained tokens


class FakeScores:
    def __init__(self, token_nll):
        self.token_nll = [np.asarray(row, dtype=np.float32) for row in token_nll]


def test_kept_token_ppl_is_exp_mean_nll_of_the_trained_tokens_of_the_kept_examples():
    scores = FakeScores([[NAN, 1.0, 2.0, 3.0], [NAN, 9.0, 9.0], [NAN, 2.0, 2.0]])
    labels = [np.array([-100, 5, -100, 7]), np.array([-100, 9, 9])]
    result = MaskResult(keep_examples=[0, 2], labels=labels, report={})  # example 1 dropped; token 2 of 0 masked
    assert kept_token_ppl(scores, result) == pytest.approx(math.exp((1 + 3 + 2 + 2) / 4))
    assert math.isnan(kept_token_ppl(scores, MaskResult(keep_examples=[], labels=[], report={})))


# --------------------------------------------------------------------------------------------- report.md


def markdown_tables(text: str) -> dict[str, list[list[str]]]:
    """Every table of a markdown document under its `## heading`: header and rows as lists of cells."""
    tables, heading = {}, None
    for line in text.splitlines():
        if line.startswith("## "):
            heading = line[3:]
        elif line.startswith("|") and not line.startswith("|---"):
            tables.setdefault(heading, []).append([cell.strip() for cell in line.strip().strip("|").split(" | ")])
    return tables


def numbers(cell: str) -> list[float]:
    """The numbers of a cell ("+20.0 ± 4.0", "66.7 / -"), nan for nan or a lone "-"."""
    parts = re.findall(r"[+-]?\d+(?:\.\d+)?|nan|(?<![\w.])-(?![\d\w])", cell)
    return [NAN if p in ("nan", "-") else float(p) for p in parts]


def close(cell: str, *expected: float, digits: int) -> bool:
    tolerance = 0.51 * 10**-digits
    return numbers(cell) == pytest.approx(list(expected), abs=tolerance, nan_ok=True)


def table(tables: dict, start: str) -> list[list[str]]:
    (rows,) = [rows for heading, rows in tables.items() if heading and heading.startswith(start)]
    return rows


def assert_report_matches_results(markdown: str, results: dict) -> None:
    """report.md's tables say what results.json says: each cell read back and compared with its number."""
    tables = markdown_tables(markdown)
    data, methods = results["data"], results["methods"]
    header, *rows = table(tables, "Table 1")
    assert [r[0] for r in rows] == [SOURCE_LABELS.get(s, s) for s in data]
    for row, d in zip(rows, data.values()):
        assert int(row[1]) == d["examples"]
        assert close(row[2], d["sequence_ppl_mean"], digits=3) and close(row[3], d["sequence_ppl_var"], digits=3)
        assert close(row[4], d["pct_tokens_ppl_above_2.5"], digits=1)
        assert close(row[5], d["generation_seconds"], digits=0)
    header, *rows = table(tables, "Table 2")
    assert header[3:5] == ["TI %", "BWT %"] and [r[0] for r in rows] == list(methods)
    for row, m in zip(rows, methods.values()):
        mean, std = m["mean"], m["std"]
        assert close(row[1], 100 * m["masked_fraction"], digits=1)
        assert close(row[2], mean["target_accuracy"], std["target_accuracy"], digits=3)
        assert close(row[3], mean["ti"], std["ti"], digits=1) and close(row[4], mean["bwt"], std["bwt"], digits=1)
        assert close(row[5], m["data_cost_seconds"], digits=0)
    header, base, *rows = table(tables, "Per-task accuracy")
    tasks = list(results["base"]["accuracies"])
    assert header[1:] == tasks and base[0] == "base"
    assert close(" ".join(base[1:]), *results["base"]["accuracies"].values(), digits=3)
    for row, (name, m) in zip(rows, methods.items()):
        assert row[0] == name and close(" ".join(row[1:]), *[m["mean"]["accuracies"][t] for t in tasks], digits=3)
    header, *rows = table(tables, "Sample-wise forgetting")
    assert header[1:] == [f"{t} lost / gained" for t in results["others"]]
    for row, (name, m) in zip(rows, methods.items()):
        shares = [100 * m["transitions"][t][k] for t in results["others"] for k in ("right_to_wrong", "wrong_to_right")]
        assert row[0] == name and close(" ".join(row[1:]), *shares, digits=1)
    located = {n: m["mask_location"] for n, m in methods.items() if m.get("mask_location")}
    if located:
        header, *rows = table(tables, "Where the masks fall")
        assert [r[0] for r in rows] == list(located)
        for row, loc in zip(rows, located.values()):
            assert close(" ".join(row[1:]), *[100 * loc[k] for k in ("answer_tokens_masked", "prose_tokens_masked",
                                                                      "share_of_masked_in_answer")], digits=1)
    header, *rows = table(tables, "In percentage points")
    assert [r[0] for r in rows] == list(methods)
    for row, m in zip(rows, methods.values()):
        versus = m.get("versus", {}).get("gt")
        for cell, value in zip(row[1:], [m["intervals"]["ti_pp"], m["intervals"]["bwt_pp"],
                                         *([versus["ti_pp"], versus["bwt_pp"]] if versus else [None, None])]):
            assert cell == "-" if value is None else close(cell, value["estimate"], *value["interval"], digits=1)
    if results.get("criteria"):
        header, *rows = table(tables, "Pre-registered criteria")
        assert [r[0] for r in rows] == [f"({c['id']}) {c['claim']}" for c in results["criteria"]]
        assert [r[4] for r in rows] == [f"**{c['status']}**" for c in results["criteria"]]
    header, *rows = table(tables, "The paper's claims")
    assert len(rows) == len(results["claims"])
    for row, claim in zip(rows, results["claims"]):
        assert row == [f"({claim['id']}) {claim['claim']}", claim["criterion"], f"**{claim['status']}**",
                       claim["evidence"]]


def hand_made_results() -> dict:
    """A results dict in which no two numbers a table shows are equal."""
    def method(kind, k, tau=None, location=None):
        transitions = {"o1": {"right_to_wrong": 0.11 * k, "wrong_to_right": 0.05 * k},
                       "o2": {"right_to_wrong": NAN if k == 2 else 0.07 * k, "wrong_to_right": 0.03 * k}}
        return {"method": kind, "tau": tau, "lr_scale": 1.0, "masked_fraction": 0.1 * k, "data_cost_seconds": 7.0 * k,
                "mean": {"target_accuracy": 0.31 + 0.1 * k, "ti": 12.3 * k, "bwt": -4.56 * k,
                         "accuracies": {"t": 0.31 + 0.1 * k, "o1": 0.52 - 0.03 * k, "o2": 0.27 + 0.02 * k}},
                "std": {"target_accuracy": 0.012 * k, "ti": 1.7 * k, "bwt": 0.8 * k,
                        "accuracies": {"t": 0.0, "o1": 0.0, "o2": 0.0}},
                "transitions": transitions, "mask_location": location,
                "intervals": {q: {"estimate": 1.1 * k + j, "interval": [0.9 * k + j, 1.3 * k + j]}
                              for j, q in enumerate(("ti_pp", "bwt_pp", "ti", "bwt"))},
                "versus": {} if kind == "gt" else {"gt": {
                    q: {"estimate": -2.2 * k - j, "interval": [-2.6 * k - j, -1.8 * k - j]}
                    for j, q in enumerate(("ti_pp", "bwt_pp"))}}}

    location = {"answer_tokens_masked": 0.034, "prose_tokens_masked": 0.281, "share_of_masked_in_answer": 0.052}
    results = {
        "name": "hand", "model": "tiny", "target": "t", "others": ["o1", "o2"], "seeds": [0, 1],
        "base": {"accuracies": {"t": 0.4, "o1": 0.61, "o2": 0.33}},
        "data": {"gt": {"examples": 40, "sequence_ppl_mean": 3.456, "sequence_ppl_var": 1.234,
                        "pct_tokens_ppl_above_2.5": 17.5, "generation_seconds": 0.0},
                 "self_output": {"examples": 31, "sequence_ppl_mean": 1.234, "sequence_ppl_var": 0.056,
                                 "pct_tokens_ppl_above_2.5": 3.2, "generation_seconds": 95.0}},
        "methods": {"gt": method("gt", 1), "stm@2.5": method("stm", 2, 2.5, location),
                    "self_output": method("self_output", 3)},
    }
    results["claims"] = judge_claims(results)
    results["criteria"] = judge_criteria(check_criteria([
        {"id": "P", "claim": "the control learns", "method": "self_output", "quantity": "ti_pp",
         "holds_if": "lower > 0"},
        {"id": "S", "claim": "STM forgets less than GT", "method": "self_output", "versus": "gt",
         "quantity": "bwt_pp", "holds_if": "lower > 0", "requires": ["P"]}]), results["methods"])
    return results


def test_report_md_tables_say_what_results_json_says():
    results = hand_made_results()
    assert_report_matches_results(render_markdown(results), results)


def test_the_report_table_check_catches_swapped_columns():
    results = hand_made_results()
    swapped = {**results, "methods": {n: {**m, "mean": {**m["mean"], "ti": m["mean"]["bwt"], "bwt": m["mean"]["ti"]}}
                                      for n, m in results["methods"].items()}}
    with pytest.raises(AssertionError):
        assert_report_matches_results(render_markdown(swapped), results)
