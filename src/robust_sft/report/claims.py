"""The paper's claims, each judged held / not held / not tested from a results dict by a fixed, stated criterion."""

from __future__ import annotations

# The positive control's forgetting tolerance: its BWT may dip this many points below 0 and still count as
# "no forgetting" (test-set noise on the other tasks is about this size).
ORACLE_BWT_TOLERANCE = 5.0


def judge_claims(results: dict) -> list[dict]:
    """The paper's claims, each held / not held / not tested, with the numbers and the criterion used."""
    data, swept = results["data"], results["methods"]
    # Claims (a)-(e) compare methods at the config's learning rate; the learning-rate control is claim (f)'s.
    methods = {n: m for n, m in swept.items() if m.get("lr_scale", 1.0) == 1.0}

    def stat(name, metric):
        m = methods[name]
        return m["mean"][metric], m["std"][metric]

    claims = []

    def add(cid, statement, criterion, held, evidence):
        # NaN evidence (e.g. a task the base model never solves makes BWT undefined) decides nothing.
        if "nan" in evidence.lower():
            held = None
        claims.append({"id": cid, "claim": statement, "criterion": criterion,
                       "status": "not tested" if held is None else ("held" if held else "not held"),
                       "evidence": evidence})

    ppl = {s: data[s]["sequence_ppl_mean"] for s in data}
    if {"gt", "rephrase", "self_output"} <= set(ppl):
        add("a", "Sequence perplexity: GT > Rephrase > Self-Output", "strict order of the means",
            ppl["gt"] > ppl["rephrase"] > ppl["self_output"],
            f"GT {ppl['gt']:.3f}, Rephrase {ppl['rephrase']:.3f}, Self-Output {ppl['self_output']:.3f}")
    else:
        add("a", "Sequence perplexity: GT > Rephrase > Self-Output", "strict order of the means", None,
            "needs gt, rephrase and self_output")

    stm = _stm_at(methods, 2.5)
    if "gt" in methods:
        g_bwt, g_sd = stat("gt", "bwt")
        add("b1", "GT fine-tuning degrades the other tasks", "mean BWT < 0 by more than its seed std",
            g_bwt < 0 and g_bwt + g_sd < 0, f"GT BWT {g_bwt:+.1f} ± {g_sd:.1f} %")
        for name in [n for n in ("self_output", stm, "dft", "eaft") if n and n in methods]:
            m_bwt, m_sd = stat(name, "bwt")
            add(f"b-{name}", f"{name} degrades the other tasks much less than GT",
                "BWT(method) - BWT(GT) > std(method) + std(GT)",
                m_bwt - g_bwt > m_sd + g_sd, f"{name} BWT {m_bwt:+.1f} ± {m_sd:.1f} vs GT {g_bwt:+.1f} ± {g_sd:.1f} %")
    oracle_ti = None
    if "oracle" in methods:
        o_ti, o_sd = stat("oracle", "ti")
        o_bwt, o_bsd = stat("oracle", "bwt")
        oracle_ti = o_ti
        add("o", "Positive control: the oracle (target answers in the model's own style) learns the target "
            "without forgetting", f"TI(oracle) > its seed std, and BWT(oracle) >= -{ORACLE_BWT_TOLERANCE:g} %",
            o_ti - o_sd > 0 and o_bwt >= -ORACLE_BWT_TOLERANCE,
            f"oracle TI {o_ti:+.1f} ± {o_sd:.1f} %, BWT {o_bwt:+.1f} ± {o_bsd:.1f} %")
    for name in [n for n in (stm, "self_output", "rephrase", "dft", "eaft") if n and n in methods]:
        m_ti, m_sd = stat(name, "ti")
        share = (f"; {100 * m_ti / oracle_ti:.0f} % of the oracle's gain ({oracle_ti:+.1f} %)"
                 if oracle_ti and oracle_ti > 0 else "; no oracle gain to compare with")
        add(f"c-{name}", f"{name} learns the target: its target gain is above 0 beyond its seed spread",
            "TI(method) - std > 0", m_ti - m_sd > 0, f"{name} TI {m_ti:+.1f} ± {m_sd:.1f} %{share}")
    if stm and methods[stm].get("mask_location"):
        loc = methods[stm]["mask_location"]
        add("m", f"{stm} keeps the tokens that carry the new knowledge: it masks a smaller share of the "
            "answer the checker reads than of the prose around it",
            "% of answer-span tokens masked < % of prose tokens masked",
            loc["answer_tokens_masked"] < loc["prose_tokens_masked"],
            f"masks {100 * loc['answer_tokens_masked']:.1f} % of answer-span tokens vs "
            f"{100 * loc['prose_tokens_masked']:.1f} % of prose tokens; "
            f"{100 * loc['share_of_masked_in_answer']:.1f} % of its masked tokens lie in the answer span")
    controls = [n for n in methods if methods[n]["method"] in ("stm_random", "stm_lowest")]
    if controls:
        tau = methods[controls[0]]["tau"]
        same = next((n for n in methods if methods[n]["method"] == "stm" and methods[n]["tau"] == tau), None)
        if same:
            s_bwt, _ = stat(same, "bwt")
            s_ti, _ = stat(same, "ti")
            parts, held = [], True
            for c in controls:
                c_bwt, _ = stat(c, "bwt")
                c_ti, _ = stat(c, "ti")
                held &= (s_bwt + s_ti) > (c_bwt + c_ti)
                parts.append(f"{c}: BWT {c_bwt:+.1f}, TI {c_ti:+.1f}")
            add("d", "Masking high-perplexity tokens beats random / lowest masking of the same count",
                "BWT + TI of STM above that of each control (means)", held,
                f"{same}: BWT {s_bwt:+.1f}, TI {s_ti:+.1f}; " + "; ".join(parts))
    sweep = sorted((n for n in methods if methods[n]["method"] == "stm"), key=lambda n: methods[n]["tau"])
    if len(sweep) >= 3:
        best = max(sweep, key=lambda n: methods[n]["mean"]["bwt"] + methods[n]["mean"]["ti"])
        frac = methods[best]["masked_fraction"]
        add("e", "The best tau masks roughly a fifth of the tokens", "best BWT + TI at a masked share in 10-35 %",
            0.10 <= frac <= 0.35, f"best tau {methods[best]['tau']:g} masks {100 * frac:.1f} % "
            f"(BWT {methods[best]['mean']['bwt']:+.1f}, TI {methods[best]['mean']['ti']:+.1f})")
    add_lr_control_claim(add, swept, stm)
    return claims


def add_lr_control_claim(add, methods: dict, stm: str | None) -> None:
    """(f): a smaller learning rate alone also forgets less; STM must not be dominated by some GT rate."""
    statement = "STM is not dominated by GT at a smaller learning rate (the learning-rate control)"
    criterion = "no GT point has both a higher mean TI and a higher mean BWT than STM's best point (best TI + BWT)"
    gt_points = [n for n, m in methods.items() if m["method"] == "gt"]
    stm_points = [n for n, m in methods.items() if stm and m["method"] == "stm" and m["tau"] == methods[stm]["tau"]]
    if len(gt_points) < 2 or not stm_points:
        add("f", statement, criterion, None, "needs gt at two or more learning rates and stm (lr_sweep)")
        return

    def point(n):
        return methods[n]["mean"]["ti"], methods[n]["mean"]["bwt"]

    best = max(stm_points, key=lambda n: sum(point(n)))
    dominating = [n for n in gt_points if point(n)[0] > point(best)[0] and point(n)[1] > point(best)[1]]
    lr = methods[best].get("learning_rate")
    evidence = (f"STM's best: {best}" + (f" (lr {lr:.0e})" if lr else "") + f" TI {point(best)[0]:+.1f}, "
                f"BWT {point(best)[1]:+.1f}; " + "; ".join(f"{n}: TI {point(n)[0]:+.1f}, BWT {point(n)[1]:+.1f}"
                                                         for n in gt_points)
                + (f"; dominated by {', '.join(dominating)}" if dominating else ""))
    add("f", statement, criterion, not dominating, evidence)


def _stm_at(methods: dict, tau: float) -> str | None:
    exact = [n for n in methods if methods[n]["method"] == "stm" and methods[n]["tau"] == tau]
    if exact:
        return exact[0]
    stms = [n for n in methods if methods[n]["method"] == "stm"]
    return stms[0] if stms else None
