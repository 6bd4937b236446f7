"""The paper's claims, each judged held / not held / not tested from a results dict by a fixed, stated criterion.

One function per claim: each takes the results dict ({"data": per-source perplexities, "methods": per-variant
means and stds}) and returns its claim entries, none when the run has nothing the claim speaks about (no oracle,
no mask controls, ...) and "not tested" when the claim applies but its numbers cannot decide it. `judge_claims`
lists them in the report's order.
"""

from __future__ import annotations

from collections.abc import Callable

# The positive control's forgetting tolerance: its BWT may dip this many points below 0 and still count as
# "no forgetting" (test-set noise on the other tasks is about this size).
ORACLE_BWT_TOLERANCE = 5.0
# The tau the paper recommends: the claims' STM is the STM at this tau (else the first STM of the run).
CLAIMS_TAU = 2.5
# Claim (e): the best tau's masked share of the answer tokens lies in this range ("roughly a fifth").
BEST_TAU_MASKED_RANGE = (0.10, 0.35)
# The baselines users would pick instead, judged by claims (b) and (c) like STM: reweighted losses, self-distillation.
BASELINES = ("dft", "eaft", "infosft", "sdft")


def judge_claims(results: dict) -> list[dict]:
    """The paper's claims, each held / not held / not tested, with the numbers and the criterion used."""
    return [claim for judge in CLAIM_JUDGES for claim in judge(results)]


def claim_entry(cid: str, statement: str, criterion: str, held: bool | None, evidence: str) -> dict:
    """One judged claim; `held` None is "not tested", and so is any NaN in the evidence (e.g. a task the base
    model never solves makes BWT undefined), which decides nothing."""
    if "nan" in evidence.lower():
        held = None
    return {"id": cid, "claim": statement, "criterion": criterion,
            "status": "not tested" if held is None else ("held" if held else "not held"), "evidence": evidence}


# --------------------------------------------------------------------------------------------- what the claims read


def config_rate_methods(results: dict) -> dict:
    """The variants at the config's learning rate: claims (a)-(e) compare those; the learning-rate control,
    claim (f), alone looks at the swept rates."""
    return {n: m for n, m in results["methods"].items() if m.get("lr_scale", 1.0) == 1.0}


def claims_stm(methods: dict, method: str = "stm") -> str | None:
    """The STM variant (or `method`'s, e.g. the soft STM's) the claims speak about: the one at CLAIMS_TAU, else the
    first, else None."""
    stms = [n for n in methods if methods[n]["method"] == method]
    exact = [n for n in stms if methods[n]["tau"] == CLAIMS_TAU]
    return (exact or stms or [None])[0]


def judged_by_spread(results: dict, held: bool, evidence: str) -> tuple[bool | None, str]:
    """A criterion that reads the seed spread decides nothing with one seed (its std is 0): not tested then."""
    if len(results.get("seeds", [0, 1])) < 2:
        return None, evidence + "; one seed: no spread to judge by"
    return held, evidence


def mean_and_std(methods: dict, name: str, metric: str) -> tuple[float, float]:
    return methods[name]["mean"][metric], methods[name]["std"][metric]


# --------------------------------------------------------------------------------------------- the claims


def claim_perplexity_order(results: dict) -> list[dict]:
    """(a): the ground truth is the most surprising data for the model, its own outputs the least."""
    statement, criterion = "Sequence perplexity: GT > Rephrase > Self-Output", "strict order of the means"
    ppl = {source: stats["sequence_ppl_mean"] for source, stats in results["data"].items()}
    if not {"gt", "rephrase", "self_output"} <= set(ppl):
        return [claim_entry("a", statement, criterion, None, "needs gt, rephrase and self_output")]
    return [claim_entry("a", statement, criterion, ppl["gt"] > ppl["rephrase"] > ppl["self_output"],
                        f"GT {ppl['gt']:.3f}, Rephrase {ppl['rephrase']:.3f}, "
                        f"Self-Output {ppl['self_output']:.3f}")]


def claim_gt_forgets(results: dict) -> list[dict]:
    """(b1): fine-tuning on the ground truth degrades the other tasks beyond the seed spread."""
    methods = config_rate_methods(results)
    if "gt" not in methods:
        return []
    bwt, sd = mean_and_std(methods, "gt", "bwt")
    return [claim_entry("b1", "GT fine-tuning degrades the other tasks", "mean BWT < 0 by more than its seed std",
                        *judged_by_spread(results, bwt < 0 and bwt + sd < 0, f"GT BWT {bwt:+.1f} ± {sd:.1f} %"))]


def claim_methods_forget_less(results: dict) -> list[dict]:
    """(b-method): Self-Output, STM, the soft STM, DFT, EAFT, InfoSFT and SDFT each forget less than GT, beyond both
    seed spreads."""
    methods = config_rate_methods(results)
    if "gt" not in methods:
        return []
    g_bwt, g_sd = mean_and_std(methods, "gt", "bwt")
    claims = []
    for name in _present(methods, ("self_output", claims_stm(methods), claims_stm(methods, "stm_soft"), *BASELINES)):
        m_bwt, m_sd = mean_and_std(methods, name, "bwt")
        claims.append(claim_entry(
            f"b-{name}", f"{name} degrades the other tasks much less than GT",
            "BWT(method) - BWT(GT) > std(method) + std(GT)",
            *judged_by_spread(results, m_bwt - g_bwt > m_sd + g_sd,
                              f"{name} BWT {m_bwt:+.1f} ± {m_sd:.1f} vs GT {g_bwt:+.1f} ± {g_sd:.1f} %")))
    return claims


def claim_oracle_learns(results: dict) -> list[dict]:
    """(o): the positive control, target answers in the model's own style, learns the target without forgetting."""
    methods = config_rate_methods(results)
    if "oracle" not in methods:
        return []
    ti, ti_sd = mean_and_std(methods, "oracle", "ti")
    bwt, bwt_sd = mean_and_std(methods, "oracle", "bwt")
    return [claim_entry(
        "o", "Positive control: the oracle (target answers in the model's own style) learns the target "
        "without forgetting", f"TI(oracle) > its seed std, and BWT(oracle) >= -{ORACLE_BWT_TOLERANCE:g} %",
        *judged_by_spread(results, ti - ti_sd > 0 and bwt >= -ORACLE_BWT_TOLERANCE,
                          f"oracle TI {ti:+.1f} ± {ti_sd:.1f} %, BWT {bwt:+.1f} ± {bwt_sd:.1f} %"))]


def claim_methods_learn(results: dict) -> list[dict]:
    """(c-method): STM, the soft STM, Self-Output, Rephrase, DFT, EAFT, InfoSFT and SDFT each gain on the target
    beyond their seed spread;
    the evidence puts the gain beside the oracle's, where the oracle gained."""
    methods = config_rate_methods(results)
    oracle_ti = methods["oracle"]["mean"]["ti"] if "oracle" in methods else None
    claims = []
    for name in _present(methods, (claims_stm(methods), claims_stm(methods, "stm_soft"), "self_output", "rephrase",
                                   *BASELINES)):
        ti, sd = mean_and_std(methods, name, "ti")
        share = (f"; {100 * ti / oracle_ti:.0f} % of the oracle's gain ({oracle_ti:+.1f} %)"
                 if oracle_ti and oracle_ti > 0 else "; no oracle gain to compare with")
        claims.append(claim_entry(
            f"c-{name}", f"{name} learns the target: its target gain is above 0 beyond its seed spread",
            "TI(method) - std > 0", *judged_by_spread(results, ti - sd > 0, f"{name} TI {ti:+.1f} ± {sd:.1f} %{share}")))
    return claims


def claim_mask_spares_answers(results: dict) -> list[dict]:
    """(m): STM masks a smaller share of the answer span (what the checker reads) than of the prose."""
    methods = config_rate_methods(results)
    stm = claims_stm(methods)
    location = methods[stm].get("mask_location") if stm else None
    if not location:
        return []
    return [claim_entry(
        "m", f"{stm} keeps the tokens that carry the new knowledge: it masks a smaller share of the "
        "answer the checker reads than of the prose around it",
        "% of answer-span tokens masked < % of prose tokens masked",
        location["answer_tokens_masked"] < location["prose_tokens_masked"],
        f"masks {100 * location['answer_tokens_masked']:.1f} % of answer-span tokens vs "
        f"{100 * location['prose_tokens_masked']:.1f} % of prose tokens; "
        f"{100 * location['share_of_masked_in_answer']:.1f} % of its masked tokens lie in the answer span")]


def claim_beats_mask_controls(results: dict) -> list[dict]:
    """(d): masking the high-perplexity tokens beats masking as many random / lowest-perplexity ones, compared
    with the STM at the first control's tau."""
    methods = config_rate_methods(results)
    controls = [n for n in methods if methods[n]["method"] in ("stm_random", "stm_lowest")]
    if not controls:
        return []
    tau = methods[controls[0]]["tau"]
    same = next((n for n in methods if methods[n]["method"] == "stm" and methods[n]["tau"] == tau), None)
    if not same:
        return []
    score = {n: methods[n]["mean"]["bwt"] + methods[n]["mean"]["ti"] for n in (same, *controls)}
    held = all(score[same] > score[c] for c in controls)
    evidence = "; ".join(f"{n}: BWT {methods[n]['mean']['bwt']:+.1f}, TI {methods[n]['mean']['ti']:+.1f}"
                         for n in (same, *controls))
    return [claim_entry("d", "Masking high-perplexity tokens beats random / lowest masking of the same count",
                        "BWT + TI of STM above that of each control (means)", held, evidence)]


def claim_best_tau_masks_a_fifth(results: dict) -> list[dict]:
    """(e): over a sweep of three or more taus, the best BWT + TI masks roughly a fifth of the tokens."""
    methods = config_rate_methods(results)
    sweep = sorted((n for n in methods if methods[n]["method"] == "stm"), key=lambda n: methods[n]["tau"])
    if len(sweep) < 3:
        return []
    best = max(sweep, key=lambda n: methods[n]["mean"]["bwt"] + methods[n]["mean"]["ti"])
    frac, low, high = methods[best]["masked_fraction"], *BEST_TAU_MASKED_RANGE
    return [claim_entry(
        "e", "The best tau masks roughly a fifth of the tokens",
        f"best BWT + TI at a masked share in {100 * low:.0f}-{100 * high:.0f} %", low <= frac <= high,
        f"best tau {methods[best]['tau']:g} masks {100 * frac:.1f} % "
        f"(BWT {methods[best]['mean']['bwt']:+.1f}, TI {methods[best]['mean']['ti']:+.1f})")]


def claim_not_dominated_by_smaller_rate(results: dict) -> list[dict]:
    """(f): a smaller learning rate alone also forgets less; STM must not be dominated by some GT rate."""
    statement = "STM is not dominated by GT at a smaller learning rate (the learning-rate control)"
    criterion = "no GT point has both a higher mean TI and a higher mean BWT than STM's best point (best TI + BWT)"
    methods, stm = results["methods"], claims_stm(config_rate_methods(results))
    gt_points = [n for n, m in methods.items() if m["method"] == "gt"]
    stm_points = [n for n, m in methods.items() if stm and m["method"] == "stm" and m["tau"] == methods[stm]["tau"]]
    if len(gt_points) < 2 or not stm_points:
        return [claim_entry("f", statement, criterion, None,
                            "needs gt at two or more learning rates and stm (lr_sweep)")]

    def point(n):
        return methods[n]["mean"]["ti"], methods[n]["mean"]["bwt"]

    best = max(stm_points, key=lambda n: sum(point(n)))
    dominating = [n for n in gt_points if point(n)[0] > point(best)[0] and point(n)[1] > point(best)[1]]
    lr = methods[best].get("learning_rate")
    evidence = (f"STM's best: {best}" + (f" (lr {lr:.0e})" if lr else "") + f" TI {point(best)[0]:+.1f}, "
                f"BWT {point(best)[1]:+.1f}; " + "; ".join(f"{n}: TI {point(n)[0]:+.1f}, BWT {point(n)[1]:+.1f}"
                                                         for n in gt_points)
                + (f"; dominated by {', '.join(dominating)}" if dominating else ""))
    return [claim_entry("f", statement, criterion, not dominating, evidence)]


def _present(methods: dict, names) -> list[str]:
    """`names` that the run has, in order (a None name, e.g. no STM, is skipped)."""
    return [n for n in names if n and n in methods]


# The report's order of the claims.
CLAIM_JUDGES: tuple[Callable[[dict], list[dict]], ...] = (
    claim_perplexity_order, claim_gt_forgets, claim_methods_forget_less, claim_oracle_learns, claim_methods_learn,
    claim_mask_spares_answers, claim_beats_mask_controls, claim_best_tau_masks_a_fifth,
    claim_not_dominated_by_smaller_rate,
)
