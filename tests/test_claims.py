"""Every claim rule of report.judge_claims, on both sides of its line and at its "not testable" case; then each
claim function on its own (held, not held, not testable, absent).

The numbers are made by hand: `paper_world()` is a run in which every claim holds, and each test moves one number
across one claim's line. No model is trained, so `scripts/mutate_claims.py` can rerun this file per mutant.
"""

import math

import pytest

from robust_sft.report import claims as rules
from robust_sft.report.claims import ORACLE_BWT_TOLERANCE, judge_claims

NAN = float("nan")


def method(kind, ti, ti_sd, bwt, bwt_sd, tau=None, masked=0.0, lr_scale=1.0, **extra):
    return {"method": kind, "tau": tau, "masked_fraction": masked, "lr_scale": lr_scale,
            "mean": {"ti": ti, "bwt": bwt, "target_accuracy": 0.5}, "std": {"ti": ti_sd, "bwt": bwt_sd}, **extra}


def paper_world() -> dict:
    """A results dict in which every claim holds, by margins that the tests below cross one at a time."""
    data = {"gt": {"sequence_ppl_mean": 3.0}, "rephrase": {"sequence_ppl_mean": 2.0},
            "self_output": {"sequence_ppl_mean": 1.5}, "oracle": {"sequence_ppl_mean": 1.2}}
    location = {"answer_tokens_masked": 0.02, "prose_tokens_masked": 0.30, "share_of_masked_in_answer": 0.01}
    methods = {
        "gt": method("gt", 10, 2, -30, 3),
        "stm@1.5": method("stm", 12, 2, -12, 2, tau=1.5, masked=0.40),  # TI + BWT 0
        "stm@2.5": method("stm", 20, 4, -5, 2, tau=2.5, masked=0.20, mask_location=location),  # TI + BWT 15: best
        "stm@5": method("stm", 15, 3, -15, 2, tau=5, masked=0.05),  # TI + BWT 0
        "stm_random@2.5": method("stm_random", 8, 2, -25, 2, tau=2.5, masked=0.20),  # TI + BWT -17
        "stm_lowest@2.5": method("stm_lowest", 2, 2, -40, 2, tau=2.5, masked=0.20),  # TI + BWT -38
        "self_output": method("self_output", 15, 3, -4, 1),
        "rephrase": method("rephrase", 12, 3, -10, 2),
        "dft": method("dft", 9, 2, -8, 2),
        "eaft": method("eaft", 11, 2, -9, 2),
        "oracle": method("oracle", 40, 5, -1, 1),
        # the learning-rate control: GT and STM at half the rate
        "gt_lr5e-04": method("gt", 5, 1, -15, 2, lr_scale=0.5),
        "stm@2.5_lr5e-04": method("stm", 12, 2, -3, 1, tau=2.5, masked=0.20, lr_scale=0.5),  # TI + BWT 9
    }
    return {"data": data, "methods": methods}


def judged(results: dict) -> dict[str, dict]:
    return {c["id"]: c for c in judge_claims(results)}


def status(results: dict, claim_id: str) -> str:
    return judged(results)[claim_id]["status"]


def set_mean(results: dict, name: str, **values) -> dict:
    results["methods"][name]["mean"].update(values)
    return results


def set_std(results: dict, name: str, **values) -> dict:
    results["methods"][name]["std"].update(values)
    return results


def without(results: dict, *names: str) -> dict:
    for name in names:
        results["methods"].pop(name)
    return results


ALL_CLAIMS = ["a", "b1", "b-self_output", "b-stm@2.5", "b-dft", "b-eaft", "o", "c-stm@2.5", "c-self_output",
              "c-rephrase", "c-dft", "c-eaft", "m", "d", "e", "f"]


def test_in_the_paper_world_every_claim_holds():
    claims = judge_claims(paper_world())
    assert [c["id"] for c in claims] == ALL_CLAIMS
    assert {c["id"]: c["status"] for c in claims} == dict.fromkeys(ALL_CLAIMS, "held")


# --------------------------------------------------------------------------------------------- (a) perplexity order


@pytest.mark.parametrize("gt, rephrase, self_output, expected", [
    (3.0, 2.0, 1.5, "held"),
    (1.8, 2.0, 1.5, "not held"),  # GT below Rephrase
    (3.0, 1.4, 1.5, "not held"),  # Rephrase below Self-Output
    (2.0, 2.0, 1.5, "not held"),  # a tie is no strict order
    (3.0, 1.5, 1.5, "not held"),
    (1.0, 2.0, 3.0, "not held"),  # reversed
])
def test_a_needs_the_strict_perplexity_order(gt, rephrase, self_output, expected):
    results = paper_world()
    for source, ppl in (("gt", gt), ("rephrase", rephrase), ("self_output", self_output)):
        results["data"][source]["sequence_ppl_mean"] = ppl
    assert status(results, "a") == expected


def test_a_needs_only_the_three_sets():
    results = paper_world()
    del results["data"]["oracle"]
    assert status(results, "a") == "held"


def test_a_is_not_tested_without_all_three_sets_or_with_a_nan_perplexity():
    results = paper_world()
    del results["data"]["rephrase"]
    claim = judged(results)["a"]
    assert claim["status"] == "not tested" and claim["evidence"] == "needs gt, rephrase and self_output"
    results = paper_world()
    results["data"]["self_output"]["sequence_ppl_mean"] = NAN
    assert status(results, "a") == "not tested"


# --------------------------------------------------------------------------------------------- (b) forgetting


@pytest.mark.parametrize("bwt, sd, expected", [
    (-30, 3, "held"),
    (-3, 2, "held"),  # -3 + 2 < 0: below 0 beyond its spread
    (-3, 3, "not held"),  # -3 + 3 = 0: within its spread
    (-3, 5, "not held"),
    (25, 3, "not held"),  # GT that improves the other tasks
    (0, 0, "not held"),
])
def test_b1_gt_forgets_beyond_its_seed_spread(bwt, sd, expected):
    results = set_std(set_mean(paper_world(), "gt", bwt=bwt), "gt", bwt=sd)
    assert status(results, "b1") == expected


def test_b1_evidence_shows_gt_bwt_and_is_not_tested_on_nan_or_absent_without_gt():
    assert judged(paper_world())["b1"]["evidence"] == "GT BWT -30.0 ± 3.0 %"
    assert status(set_mean(paper_world(), "gt", bwt=NAN), "b1") == "not tested"
    claims = judged(without(paper_world(), "gt"))  # GT at a smaller learning rate is not GT for (b)
    assert not [i for i in claims if i.startswith("b")] and claims["f"]["status"] == "not tested"


@pytest.mark.parametrize("name", ["self_output", "stm@2.5", "dft", "eaft"])
@pytest.mark.parametrize("bwt, sd, expected", [
    (-5, 2, "held"),  # 25 points above GT, spreads 2 + 3
    (-24, 2, "held"),  # 6 > 5
    (-25, 2, "not held"),  # 5 = 5: not beyond the spreads
    (-28, 2, "not held"),
    (-40, 2, "not held"),  # forgets more than GT
])
def test_b_method_forgets_less_than_gt_beyond_both_spreads(name, bwt, sd, expected):
    results = set_std(set_mean(paper_world(), name, bwt=bwt), name, bwt=sd)  # GT: BWT -30 ± 3
    assert status(results, f"b-{name}") == expected


def test_b_method_is_not_tested_on_nan_and_absent_without_the_method():
    assert status(set_mean(paper_world(), "dft", bwt=NAN), "b-dft") == "not tested"
    assert status(set_std(paper_world(), "gt", bwt=NAN), "b-eaft") == "not tested"
    claims = judged(without(paper_world(), "dft", "eaft"))
    assert "b-dft" not in claims and "b-eaft" not in claims and claims["b-self_output"]["status"] == "held"


# --------------------------------------------------------------------------------------------- (o) positive control


@pytest.mark.parametrize("ti, sd, bwt, expected", [
    (40, 5, -1, "held"),
    (6, 5, 0, "held"),  # TI 1 point beyond its spread
    (5, 5, 0, "not held"),  # TI within its spread
    (-10, 5, 0, "not held"),
    (40, 5, -ORACLE_BWT_TOLERANCE, "held"),  # at the tolerance
    (40, 5, -ORACLE_BWT_TOLERANCE - 0.1, "not held"),  # forgets
    (40, 5, 10, "held"),
])
def test_o_oracle_learns_beyond_its_spread_without_forgetting(ti, sd, bwt, expected):
    results = set_std(set_mean(paper_world(), "oracle", ti=ti, bwt=bwt), "oracle", ti=sd)
    assert status(results, "o") == expected


def test_o_is_not_tested_on_nan_and_absent_without_an_oracle():
    assert status(set_mean(paper_world(), "oracle", bwt=NAN), "o") == "not tested"
    assert status(set_mean(paper_world(), "oracle", ti=NAN), "o") == "not tested"
    assert "o" not in judged(without(paper_world(), "oracle"))


# --------------------------------------------------------------------------------------------- (c) learning


@pytest.mark.parametrize("name", ["stm@2.5", "self_output", "rephrase", "dft", "eaft"])
@pytest.mark.parametrize("ti, sd, expected", [(20, 4, "held"), (4.5, 4, "held"), (4, 4, "not held"),
                                              (3, 4, "not held"), (-20, 4, "not held")])
def test_c_method_gains_on_the_target_beyond_its_spread(name, ti, sd, expected):
    results = set_std(set_mean(paper_world(), name, ti=ti), name, ti=sd)
    assert status(results, f"c-{name}") == expected


def test_c_evidence_compares_with_the_oracles_gain_only_when_it_gained():
    evidence = judged(paper_world())["c-stm@2.5"]["evidence"]
    assert evidence == "stm@2.5 TI +20.0 ± 4.0 %; 50 % of the oracle's gain (+40.0 %)"
    for oracle_ti in (0.0, -10.0):
        evidence = judged(set_mean(paper_world(), "oracle", ti=oracle_ti))["c-stm@2.5"]["evidence"]
        assert evidence == "stm@2.5 TI +20.0 ± 4.0 %; no oracle gain to compare with"
    evidence = judged(without(paper_world(), "oracle"))["c-dft"]["evidence"]
    assert evidence.endswith("no oracle gain to compare with")


def test_c_is_not_tested_on_nan():
    assert status(set_mean(paper_world(), "rephrase", ti=NAN), "c-rephrase") == "not tested"
    assert status(set_std(paper_world(), "eaft", ti=NAN), "c-eaft") == "not tested"


# --------------------------------------------------------------------------------------------- STM at tau 2.5


def test_the_stm_of_the_claims_is_the_one_at_tau_2_5_else_the_first():
    ids = set(judged(paper_world()))
    assert {"c-stm@2.5", "b-stm@2.5"} <= ids and not {"c-stm@1.5", "c-stm@5", "b-stm@1.5"} & ids
    ids = set(judged(without(paper_world(), "stm@2.5")))
    assert {"c-stm@1.5", "b-stm@1.5"} <= ids and "c-stm@5" not in ids


def test_learning_rate_swept_variants_stay_out_of_claims_a_to_e():
    results = paper_world()
    # listed first, a swept STM at tau 2.5 would be the claims' STM if it were let in
    results["methods"] = {"stm@2.5_lr5e-04": results["methods"].pop("stm@2.5_lr5e-04"), **results["methods"]}
    ids = [c["id"] for c in judge_claims(results)]
    assert ids == ALL_CLAIMS
    # two taus and a swept variant are not a sweep of three taus: (e) needs three at the config's rate
    assert "e" not in judged(without(paper_world(), "stm@5"))
    # a dreadful GT at a smaller rate does not make (b1) or the (b-...) claims
    results = set_mean(paper_world(), "gt_lr5e-04", bwt=-90)
    results["methods"] = {"gt_lr5e-04": results["methods"].pop("gt_lr5e-04"), **results["methods"]}
    assert judged(results)["b1"]["evidence"] == "GT BWT -30.0 ± 3.0 %"


# --------------------------------------------------------------------------------------------- (m) mask location


@pytest.mark.parametrize("answer, prose, expected", [(0.02, 0.30, "held"), (0.29, 0.30, "held"),
                                                     (0.30, 0.30, "not held"), (0.50, 0.30, "not held")])
def test_m_stm_masks_less_of_the_answer_span_than_of_the_prose(answer, prose, expected):
    results = paper_world()
    results["methods"]["stm@2.5"]["mask_location"].update(answer_tokens_masked=answer, prose_tokens_masked=prose)
    assert status(results, "m") == expected


def test_m_is_not_tested_on_nan_and_absent_without_a_mask_location():
    results = paper_world()
    results["methods"]["stm@2.5"]["mask_location"]["prose_tokens_masked"] = NAN
    assert status(results, "m") == "not tested"
    results = paper_world()
    results["methods"]["stm@2.5"]["mask_location"] = None
    assert "m" not in judged(results)


# --------------------------------------------------------------------------------------------- (d) mask controls


@pytest.mark.parametrize("control", ["stm_random@2.5", "stm_lowest@2.5"])
@pytest.mark.parametrize("ti, bwt, expected", [(8, -25, "held"), (14, 0, "held"), (15, 0, "not held"),
                                               (20, -4, "not held")])
def test_d_stm_beats_each_control_of_the_same_tau_on_bwt_plus_ti(control, ti, bwt, expected):
    results = set_mean(paper_world(), control, ti=ti, bwt=bwt)  # stm@2.5: TI + BWT 15
    assert status(results, "d") == expected


def test_d_compares_with_the_stm_of_the_controls_tau():
    results = set_mean(paper_world(), "stm_random@2.5", ti=8, bwt=-5)  # TI + BWT 3: below stm@2.5, above stm@5
    assert status(results, "d") == "held"
    for name in ("stm_random@2.5", "stm_lowest@2.5"):
        results["methods"][name]["tau"] = 5.0  # now stm@5 (TI + BWT 0) is the one compared
    claim = judged(results)["d"]
    assert claim["status"] == "not held" and claim["evidence"].startswith("stm@5: BWT -15.0, TI +15.0")
    claim = judged(paper_world())["d"]
    assert claim["evidence"] == ("stm@2.5: BWT -5.0, TI +20.0; stm_random@2.5: BWT -25.0, TI +8.0; "
                                 "stm_lowest@2.5: BWT -40.0, TI +2.0")


def test_d_is_not_tested_on_nan_and_absent_without_controls_or_their_stm():
    assert status(set_mean(paper_world(), "stm_lowest@2.5", bwt=NAN), "d") == "not tested"
    assert "d" not in judged(without(paper_world(), "stm_random@2.5", "stm_lowest@2.5"))
    assert "d" not in judged(without(paper_world(), "stm@2.5", "stm@2.5_lr5e-04"))
    claims = judged(without(paper_world(), "stm_lowest@2.5"))
    assert claims["d"]["status"] == "held" and "stm_lowest" not in claims["d"]["evidence"]


# --------------------------------------------------------------------------------------------- (e) best tau


@pytest.mark.parametrize("masked, expected", [(0.20, "held"), (0.10, "held"), (0.35, "held"), (0.09, "not held"),
                                              (0.36, "not held"), (0.60, "not held")])
def test_e_the_best_tau_masks_a_tenth_to_a_third(masked, expected):
    results = paper_world()
    results["methods"]["stm@2.5"]["masked_fraction"] = masked
    assert status(results, "e") == expected


def test_e_takes_the_best_bwt_plus_ti_of_the_sweep():
    results = set_mean(paper_world(), "stm@5", ti=30, bwt=-5)  # now the best, masking 5 %
    claim = judged(results)["e"]
    assert claim["status"] == "not held"
    assert claim["evidence"] == "best tau 5 masks 5.0 % (BWT -5.0, TI +30.0)"
    assert judged(paper_world())["e"]["evidence"] == "best tau 2.5 masks 20.0 % (BWT -5.0, TI +20.0)"


def test_e_is_not_tested_on_nan_and_absent_below_three_taus():
    results = paper_world()
    results["methods"]["stm@2.5"]["masked_fraction"] = NAN
    assert status(results, "e") == "not tested"
    assert "e" not in judged(without(paper_world(), "stm@1.5"))


# --------------------------------------------------------------------------------------------- (f) learning rate


@pytest.mark.parametrize("ti, bwt, expected", [
    (5, -15, "held"),  # below STM's best on both
    (25, -10, "held"),  # more TI, less BWT: a trade-off, not domination
    (15, -2, "held"),  # less TI, more BWT
    (21, -4, "not held"),  # more of both: dominates stm@2.5 (20, -5)
    (20, -4, "held"),  # equal TI is not more
    (21, -5, "held"),  # equal BWT is not more
])
def test_f_no_gt_learning_rate_dominates_stm(ti, bwt, expected):
    results = set_mean(paper_world(), "gt_lr5e-04", ti=ti, bwt=bwt)
    assert status(results, "f") == expected


def test_f_names_the_dominating_gt_point_and_uses_stms_best_rate():
    claim = judged(set_mean(paper_world(), "gt_lr5e-04", ti=21, bwt=-4))["f"]
    assert claim["evidence"].startswith("STM's best: stm@2.5 ")
    assert claim["evidence"].endswith("; dominated by gt_lr5e-04")
    # STM's best point is its best TI + BWT over its learning rates: here the swept one, which GT does not dominate
    results = set_mean(set_mean(paper_world(), "stm@2.5_lr5e-04", ti=30, bwt=-2), "gt_lr5e-04", ti=21, bwt=-4)
    assert judged(results)["f"]["status"] == "held"
    assert judged(results)["f"]["evidence"].startswith("STM's best: stm@2.5_lr5e-04 ")


def test_f_looks_only_at_the_stm_of_the_claims_tau():
    # GT at the smaller rate dominates stm@1.5 (12, -12) but not stm@2.5 (20, -5)
    assert status(set_mean(paper_world(), "gt_lr5e-04", ti=13, bwt=-10), "f") == "held"


def test_f_is_not_tested_without_two_gt_rates_or_without_stm():
    claim = judged(without(paper_world(), "gt_lr5e-04"))["f"]
    assert claim["status"] == "not tested"
    assert claim["evidence"] == "needs gt at two or more learning rates and stm (lr_sweep)"
    stm = [n for n, m in paper_world()["methods"].items() if m["method"] == "stm"]
    assert status(without(paper_world(), *stm), "f") == "not tested"
    assert status(set_mean(paper_world(), "gt_lr5e-04", bwt=NAN), "f") == "not tested"


# --------------------------------------------------------------------------------------------- NaN


def test_every_status_is_one_of_three_and_nan_anywhere_in_evidence_decides_nothing():
    claims = judge_claims(set_mean(paper_world(), "stm@2.5", ti=math.nan))
    by_id = {c["id"]: c["status"] for c in claims}
    # stm@2.5's TI feeds (c), (d) and (f); its BWT alone feeds (b): that stays decided
    assert {by_id[i] for i in ("c-stm@2.5", "d", "f")} == {"not tested"}
    assert by_id["b-stm@2.5"] == "held" and by_id["o"] == "held"


# --------------------------------------------------------------------------------------------- one function per claim


def statuses(claims: list[dict]) -> dict[str, str]:
    return {c["id"]: c["status"] for c in claims}


def test_judge_claims_is_the_claim_functions_in_the_reports_order():
    results = set_mean(paper_world(), "dft", bwt=-29)  # one claim not held, so the order of mixed statuses counts
    assert judge_claims(results) == [c for judge in rules.CLAIM_JUDGES for c in judge(results)]
    ids = [[c["id"] for c in judge(paper_world())] for judge in rules.CLAIM_JUDGES]
    assert ids == [["a"], ["b1"], ["b-self_output", "b-stm@2.5", "b-dft", "b-eaft"], ["o"],
                   ["c-stm@2.5", "c-self_output", "c-rephrase", "c-dft", "c-eaft"], ["m"], ["d"], ["e"], ["f"]]


def test_claim_entry_holds_not_holds_and_nan_decides_nothing():
    entry = rules.claim_entry("x", "a statement", "a criterion", True, "1.0 < 2.0")
    assert entry == {"id": "x", "claim": "a statement", "criterion": "a criterion", "status": "held",
                     "evidence": "1.0 < 2.0"}
    assert rules.claim_entry("x", "s", "c", False, "2.0 < 1.0")["status"] == "not held"
    assert rules.claim_entry("x", "s", "c", None, "needs more")["status"] == "not tested"
    assert rules.claim_entry("x", "s", "c", True, "TI NaN")["status"] == "not tested"


def test_claims_stm_prefers_the_claims_tau_then_the_first_stm():
    methods = rules.config_rate_methods(paper_world())
    assert rules.claims_stm(methods) == "stm@2.5"
    assert rules.claims_stm({n: m for n, m in methods.items() if n != "stm@2.5"}) == "stm@1.5"
    assert rules.claims_stm({n: m for n, m in methods.items() if m["method"] != "stm"}) is None


def test_config_rate_methods_drop_the_learning_rate_sweep():
    kept = rules.config_rate_methods(paper_world())
    assert "gt_lr5e-04" not in kept and "stm@2.5_lr5e-04" not in kept and "gt" in kept
    results = paper_world()
    del results["methods"]["gt"]["lr_scale"]  # absent means the config's rate
    assert "gt" in rules.config_rate_methods(results)


def _data(results, **ppl):
    for source, value in ppl.items():
        results["data"][source]["sequence_ppl_mean"] = value
    return results


def _drop_data(results, source):
    del results["data"][source]
    return results


def _location(results, answer, prose):
    results["methods"]["stm@2.5"]["mask_location"].update(answer_tokens_masked=answer, prose_tokens_masked=prose)
    return results


def _masked(results, fraction):
    results["methods"]["stm@2.5"]["masked_fraction"] = fraction
    return results


def _no_location(results):
    results["methods"]["stm@2.5"]["mask_location"] = None
    return results


STM_TAUS = ("stm@1.5", "stm@2.5", "stm@5", "stm@2.5_lr5e-04")

# (claim function, claim id, a change to the paper world that makes it not held, one that makes it not testable,
#  one that leaves the run without anything the claim speaks about: no entry at all, or "not tested")
PER_FUNCTION = [
    (rules.claim_perplexity_order, "a", lambda r: _data(r, gt=1.8), lambda r: _data(r, rephrase=NAN),
     lambda r: _drop_data(r, "self_output")),
    (rules.claim_gt_forgets, "b1", lambda r: set_mean(r, "gt", bwt=-1), lambda r: set_std(r, "gt", bwt=NAN),
     lambda r: without(r, "gt")),
    (rules.claim_methods_forget_less, "b-eaft", lambda r: set_mean(r, "eaft", bwt=-25),
     lambda r: set_mean(r, "eaft", bwt=NAN), lambda r: without(r, "gt")),
    (rules.claim_oracle_learns, "o", lambda r: set_mean(r, "oracle", bwt=-ORACLE_BWT_TOLERANCE - 1),
     lambda r: set_std(r, "oracle", ti=NAN), lambda r: without(r, "oracle")),
    (rules.claim_methods_learn, "c-rephrase", lambda r: set_mean(r, "rephrase", ti=3),
     lambda r: set_std(r, "rephrase", ti=NAN), lambda r: without(r, *STM_TAUS, "self_output", "rephrase", "dft",
                                                                 "eaft")),
    (rules.claim_mask_spares_answers, "m", lambda r: _location(r, 0.4, 0.3), lambda r: _location(r, NAN, 0.3),
     _no_location),
    (rules.claim_beats_mask_controls, "d", lambda r: set_mean(r, "stm_random@2.5", ti=21, bwt=-5),
     lambda r: set_mean(r, "stm_random@2.5", ti=NAN), lambda r: without(r, "stm_random@2.5", "stm_lowest@2.5")),
    (rules.claim_best_tau_masks_a_fifth, "e", lambda r: _masked(r, 0.5), lambda r: _masked(r, NAN),
     lambda r: without(r, "stm@5")),
    (rules.claim_not_dominated_by_smaller_rate, "f", lambda r: set_mean(r, "gt_lr5e-04", ti=25, bwt=0),
     lambda r: set_mean(r, "gt_lr5e-04", ti=NAN), lambda r: without(r, "gt_lr5e-04")),
]


@pytest.mark.parametrize("judge, cid, not_held, untestable, absent", PER_FUNCTION,
                         ids=[row[1] for row in PER_FUNCTION])
def test_each_claim_function_held_not_held_and_not_testable(judge, cid, not_held, untestable, absent):
    held = statuses(judge(paper_world()))
    assert held[cid] == "held" and set(held.values()) == {"held"}
    assert statuses(judge(not_held(paper_world())))[cid] == "not held"
    assert statuses(judge(untestable(paper_world())))[cid] == "not tested"
    # a claim with nothing to speak about says so when the run was meant to test it ((a), (f)), else is left out
    assert statuses(judge(absent(paper_world()))) in ({}, {cid: "not tested"})


@pytest.mark.parametrize("judge", rules.CLAIM_JUDGES)
def test_each_claim_function_leaves_its_input_alone(judge):
    results = paper_world()
    judge(results)
    assert results == paper_world()


def test_claim_perplexity_order_evidence_and_not_tested_without_a_source():
    [claim] = rules.claim_perplexity_order(paper_world())
    assert claim["evidence"] == "GT 3.000, Rephrase 2.000, Self-Output 1.500"
    [claim] = rules.claim_perplexity_order(_drop_data(paper_world(), "gt"))
    assert claim["status"] == "not tested" and claim["evidence"] == "needs gt, rephrase and self_output"


def test_claim_methods_forget_less_names_each_present_method_against_gt():
    claims = rules.claim_methods_forget_less(without(paper_world(), "dft"))
    assert [c["id"] for c in claims] == ["b-self_output", "b-stm@2.5", "b-eaft"]
    assert claims[0]["evidence"] == "self_output BWT -4.0 ± 1.0 vs GT -30.0 ± 3.0 %"


def test_claim_oracle_learns_evidence_and_criterion():
    [claim] = rules.claim_oracle_learns(paper_world())
    assert claim["evidence"] == "oracle TI +40.0 ± 5.0 %, BWT -1.0 ± 1.0 %"
    assert claim["criterion"] == "TI(oracle) > its seed std, and BWT(oracle) >= -5 %"


def test_claim_mask_spares_answers_evidence():
    [claim] = rules.claim_mask_spares_answers(paper_world())
    assert claim["evidence"] == ("masks 2.0 % of answer-span tokens vs 30.0 % of prose tokens; "
                                 "1.0 % of its masked tokens lie in the answer span")
    assert claim["claim"].startswith("stm@2.5 keeps the tokens")


def test_claim_best_tau_criterion_states_the_range():
    [claim] = rules.claim_best_tau_masks_a_fifth(paper_world())
    assert claim["criterion"] == "best BWT + TI at a masked share in 10-35 %"


def test_claim_not_dominated_evidence_lists_every_gt_point_and_the_rate():
    results = paper_world()
    results["methods"]["stm@2.5"]["learning_rate"] = 1e-3
    [claim] = rules.claim_not_dominated_by_smaller_rate(results)
    assert claim["evidence"] == ("STM's best: stm@2.5 (lr 1e-03) TI +20.0, BWT -5.0; gt: TI +10.0, BWT -30.0; "
                                 "gt_lr5e-04: TI +5.0, BWT -15.0")


def test_claims_that_read_the_seed_spread_are_not_tested_with_one_seed():
    results = paper_world()
    spread_claims = {"b1", "b-self_output", "b-stm@2.5", "o", "c-stm@2.5", "c-self_output"}
    judged = {c["id"]: c for c in judge_claims({**results, "seeds": [0]})}
    for cid in spread_claims:
        assert judged[cid]["status"] == "not tested" and judged[cid]["evidence"].endswith("no spread to judge by")
    assert judged["a"]["status"] == "held"  # a claim on the means alone is still judged
    two = {c["id"]: c["status"] for c in judge_claims({**results, "seeds": [0, 1]})}
    assert all(two[cid] == "held" for cid in spread_claims)
