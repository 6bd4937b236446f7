"""results.json, report.md and figures from an experiment's artifacts.

Every number here is read from the run directory (scores, train summaries, evaluation accuracies);
the claims of the paper are then judged from those numbers by fixed, stated criteria.
"""

from __future__ import annotations

import functools
import json
import logging
import math
from pathlib import Path

import numpy as np

from robust_sft.artifacts import atomic_path, read_text, write_json, write_text
from robust_sft.metrics import backward_transfer, mean_std, target_improvement, zero_base_tasks

logger = logging.getLogger(__name__)

# The positive control's forgetting tolerance: its BWT may dip this many points below 0 and still count as
# "no forgetting" (test-set noise on the other tasks is about this size).
ORACLE_BWT_TOLERANCE = 5.0

SOURCE_LABELS = {"gt": "GT", "rephrase": "Rephrase", "self_output": "Self-Output", "oracle": "Oracle (house style)"}


def _read_json(path: Path) -> dict:
    return json.loads(path.read_text())


def _accuracies(eval_dir: Path) -> dict[str, float]:
    return {task: v["accuracy"] for task, v in _read_json(eval_dir / "accuracies.json").items()}


def kept_token_ppl(scores, result) -> float:
    """exp(mean NLL) over the tokens a policy's `MaskResult` keeps: the perplexity the model is trained on."""
    kept = [scores.token_nll[i][lab != -100] for i, lab in zip(result.keep_examples, result.labels)]
    values = np.concatenate(kept) if kept else np.zeros(0)
    return float(math.exp(values.mean())) if len(values) else float("nan")


def policy_mask_location(scores, result, task, tokenizer) -> dict | None:
    """Where a policy's `MaskResult` masks: inside the answer span the task's checker reads, or in the prose."""
    from robust_sft.diagnostics import mask_location

    keeps = {i: np.zeros(len(ids), bool) for i, ids in enumerate(scores.input_ids)}
    keeps.update({i: labels != -100 for i, labels in zip(result.keep_examples, result.labels)})
    return mask_location(scores, keeps, task, tokenizer)


def item_correctness(eval_dir: Path, task: str) -> dict[str, bool]:
    """Per test item of a task: whether the evaluated model got it right (from the evaluation's sample log)."""
    from robust_sft.evaluation import task_file_name

    path = eval_dir / f"{task_file_name(task)}.jsonl"
    rows = [json.loads(line) for line in read_text(path).splitlines() if line.strip()]
    return {row["id"]: bool(row["correct"]) for row in rows}


def sample_transitions(before: dict[str, bool], after: dict[str, bool]) -> dict:
    """Sample-wise forgetting: the share of items right before that are wrong after, and the reverse.

    Accuracy alone hides items lost and regained; these two shares show both (NaN when a side is empty).
    """
    common = before.keys() & after.keys()
    right = [i for i in common if before[i]]
    wrong = [i for i in common if not before[i]]
    lost = sum(not after[i] for i in right)
    gained = sum(after[i] for i in wrong)
    return {"right_to_wrong": lost / len(right) if right else float("nan"),
            "wrong_to_right": gained / len(wrong) if wrong else float("nan"),
            "base_right": len(right), "base_wrong": len(wrong)}


def collect_results(exp, costs: dict[str, float]) -> dict:
    """The results.json document (schema in the README)."""
    from robust_sft.masking import MaskPolicy, apply_policy
    from robust_sft.modeling import load_tokenizer
    from robust_sft.scoring import load_scores
    from robust_sft.stats import summarize

    config = exp.config
    others = [t for t in exp.tasks if t != config.target]
    tokenizer = functools.cache(lambda: load_tokenizer(exp.base))
    base = _accuracies(exp.dir / "eval" / "base")
    base_items = {t: item_correctness(exp.dir / "eval" / "base", t) for t in others}
    scores = {s: load_scores(exp.scores_path(s)) for s in exp.sources}
    data = {}
    for source, sc in scores.items():
        summary = summarize(sc)
        entry = {k: summary[k] for k in ("examples", "answer_tokens", "sequence_ppl_mean", "sequence_ppl_var")}
        entry["pct_tokens_ppl_above_2.5"] = summary["pct_tokens_ppl_above"]["2.5"]
        entry["generation_seconds"] = costs.get(source, 0.0)
        entry["scoring_seconds"] = costs.get(f"score_{source}", 0.0)
        report_path = exp.data_path(source).with_suffix(".report.json")
        if report_path.exists():
            entry["generation_report"] = _read_json(report_path)
        data[source] = entry

    methods = {}
    for variant in exp.variants:
        summary0 = _read_json(exp.model_dir(variant, config.seeds[0]) / "train_summary.json")
        seeds = {}
        for seed in config.seeds:
            after = _accuracies(exp.eval_dir(variant, seed))
            train_summary = _read_json(exp.model_dir(variant, seed) / "train_summary.json")
            seeds[str(seed)] = {
                "accuracies": after,
                "target_accuracy": after[config.target],
                "ti": target_improvement(base, after, config.target),
                "bwt": backward_transfer(base, after, others),
                "best_checkpoint": train_summary.get("best_checkpoint"),
                "train_loss": train_summary.get("train_loss"),
                "transitions": {t: sample_transitions(base_items[t], item_correctness(exp.eval_dir(variant, seed), t))
                                for t in others},
            }
        policy = {**exp.config.train, **dict(variant.train_overrides)}
        mask_policy = MaskPolicy(
            kind=policy.get("mask", "none"), tau=policy.get("tau", 2.5), ratio=policy.get("ratio"),
            seed=config.seeds[0] if variant.method == "stm_random" else policy.get("mask_seed", 0))
        masked = apply_policy(scores[variant.source], mask_policy)  # once: the trained ppl and the diagnostic
        kept_ppl = kept_token_ppl(scores[variant.source], masked)
        location = (policy_mask_location(scores[variant.source], masked, exp.get_task(config.target),
                                         tokenizer()) if mask_policy.kind != "none" else None)
        data_cost = costs.get(variant.source, 0.0) + (
            costs.get("score_gt", 0.0) if variant.method in ("stm", "stm_random", "stm_lowest") else 0.0)
        methods[variant.name] = {
            "method": variant.method,
            "source": variant.source,
            "tau": variant.tau,
            "loss": policy.get("loss", "nll"),
            "learning_rate": policy.get("learning_rate"),
            "lr_scale": variant.lr_scale,
            "masked_fraction": summary0["mask_report"]["masked_fraction"],
            "trained_tokens": summary0["trained_tokens"],
            "train_examples": summary0["n_train_examples"],
            "trained_token_ppl": kept_ppl,
            "data_cost_seconds": data_cost,
            "mask_location": location,
            "seeds": seeds,
            **_aggregate(seeds, exp.tasks),
            "transitions": _mean_transitions(seeds, others),
        }
    results = {
        "schema": "robust-sft/results/v1",
        "name": config.name,
        "model": exp.base,
        "target": config.target,
        "others": others,
        "seeds": config.seeds,
        "base": {"accuracies": base},
        "percentage_point_tasks": zero_base_tasks(base),  # base accuracy 0: TI/BWT terms in points
        "data": data,
        "methods": methods,
    }
    results["claims"] = judge_claims(results)
    return results


def _aggregate(seeds: dict, tasks: list[str]) -> dict:
    out = {"mean": {}, "std": {}}
    for metric in ("target_accuracy", "ti", "bwt"):
        out["mean"][metric], out["std"][metric] = mean_std(s[metric] for s in seeds.values())
    for task in tasks:
        m, s = mean_std(seed["accuracies"][task] for seed in seeds.values())
        out["mean"].setdefault("accuracies", {})[task] = m
        out["std"].setdefault("accuracies", {})[task] = s
    return out


def _mean_transitions(seeds: dict, others: list[str]) -> dict:
    """Per other task, the seed means of the right->wrong and wrong->right shares."""
    return {t: {k: float(np.mean([s["transitions"][t][k] for s in seeds.values()]))
                for k in ("right_to_wrong", "wrong_to_right")} for t in others}


# --------------------------------------------------------------------------------------------- claims


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


# --------------------------------------------------------------------------------------------- report.md


def _percent(share: float) -> str:
    return "-" if math.isnan(share) else f"{100 * share:.1f}"


def _pm(mean: float, std: float, fmt: str = "+.1f") -> str:
    return f"{mean:{fmt}} ± {std:{fmt.lstrip('+')}}"


def render_markdown(results: dict) -> str:
    data, methods = results["data"], results["methods"]
    base = results["base"]["accuracies"]
    lines = [f"# {results['name']}: robust-sft report", "",
             f"Model `{results['model']}`; target task `{results['target']}`; other tasks "
             f"{', '.join(f'`{t}`' for t in results['others'])}; seeds {results['seeds']}.", "",
             "## Table 1: perplexity of the training sets under the base model", "",
             "| training set | examples | sequence ppl (mean) | variance | % tokens ppl > 2.5 | data cost (s) |",
             "|---|---|---|---|---|---|"]
    for source, d in data.items():
        cost = d["generation_seconds"]
        lines.append(f"| {SOURCE_LABELS.get(source, source)} | {d['examples']} | {d['sequence_ppl_mean']:.3f} | "
                     f"{d['sequence_ppl_var']:.3f} | {d['pct_tokens_ppl_above_2.5']:.1f} | {cost:.0f} |")
    lines += ["", "## Table 2: forgetting (BWT) and target gain (TI) per method, % relative to the base model", "",
              f"Base model accuracy: " + ", ".join(f"{t} {a:.3f}" for t, a in base.items()) + ".", "",
              "| method | % tokens masked | target acc | TI % | BWT % | data cost (s) |", "|---|---|---|---|---|---|"]
    for name, m in methods.items():
        mean, std = m["mean"], m["std"]
        lines.append(f"| {name} | {100 * m['masked_fraction']:.1f} | {_pm(mean['target_accuracy'], std['target_accuracy'], '.3f')} | "
                     f"{_pm(mean['ti'], std['ti'])} | {_pm(mean['bwt'], std['bwt'])} | {m['data_cost_seconds']:.0f} |")
    lines += ["", "Mean ± sample standard deviation over seeds. Data cost: seconds to make the training set beyond "
              "the raw GT (generation + verification for Self-Output and Rephrase, scoring for the STM variants).", ""]
    if results.get("percentage_point_tasks"):
        lines += [f"Base accuracy 0 on {', '.join(f'`{t}`' for t in results['percentage_point_tasks'])}: a relative "
                  "change is undefined there, so those tasks count their change in percentage points in TI/BWT.", ""]
    lines += [
              "## Per-task accuracy after fine-tuning (mean over seeds)", "",
              "| method | " + " | ".join(base) + " |", "|---" * (len(base) + 1) + "|",
              "| base | " + " | ".join(f"{a:.3f}" for a in base.values()) + " |"]
    for name, m in methods.items():
        lines.append(f"| {name} | " + " | ".join(f"{m['mean']['accuracies'][t]:.3f}" for t in base) + " |")
    others = results["others"]
    lines += ["", "## Sample-wise forgetting on the other tasks (mean over seeds)", "",
              "Per task: % of the items the base model got right that are wrong after fine-tuning (lost) / % of the "
              "items it got wrong that are right after (gained); - where the base model got none right (or none "
              "wrong). Accuracy alone hides items lost and regained.", "",
              "| method | " + " | ".join(f"{t} lost / gained" for t in others) + " |", "|---" * (len(others) + 1) + "|"]
    for name, m in methods.items():
        cells = [f"{_percent(m['transitions'][t]['right_to_wrong'])} / {_percent(m['transitions'][t]['wrong_to_right'])}"
                 for t in others]
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    located = {n: m["mask_location"] for n, m in methods.items() if m.get("mask_location")}
    if located:
        lines += ["", "## Where the masks fall: the answer the checker reads, or the prose around it", "",
                  "| method | % of answer-span tokens masked | % of prose tokens masked | "
                  "share of masked tokens in the answer span |", "|---|---|---|---|"]
        for name, loc in located.items():
            lines.append(f"| {name} | {100 * loc['answer_tokens_masked']:.1f} | {100 * loc['prose_tokens_masked']:.1f}"
                         f" | {100 * loc['share_of_masked_in_answer']:.1f} % |")
        lines += ["", "The answer span is the text the target task's checker reads (after the last `Answer:`); "
                  "the prose is every other trained token of the answer, end-of-turn included."]
    lines += ["", "## The paper's claims in this setting", "", "| claim | criterion | status | numbers |",
              "|---|---|---|---|"]
    for c in results["claims"]:
        lines.append(f"| ({c['id']}) {c['claim']} | {c['criterion']} | **{c['status']}** | {c['evidence']} |")
    figures = ["ti_vs_bwt", "ppl_vs_bwt", "tau_sweep", "token_ppl_hist"] + (["lr_control"] if has_lr_sweep(results)
                                                                              else [])
    lines += ["", "Figures: " + ", ".join(f"`figures/{f}.png`" for f in figures) + ".", ""]
    return "\n".join(lines)


# --------------------------------------------------------------------------------------------- figures


def _savefig(fig, path: Path) -> None:
    import matplotlib.pyplot as plt

    with atomic_path(path, suffix=".png") as tmp:
        fig.savefig(tmp, format="png", dpi=120)
    plt.close(fig)


def plot_ppl_vs_bwt(results: dict, path: Path) -> None:
    """Perplexity of what each method trains on against its BWT (the paper's Fig. 2)."""
    import matplotlib
    import matplotlib.ticker

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6.5, 4.5))
    points = []
    for name, m in results["methods"].items():
        bars = ax.errorbar(m["trained_token_ppl"], m["mean"]["bwt"], yerr=m["std"]["bwt"], fmt="o", capsize=3)
        points.append((m["trained_token_ppl"], m["mean"]["bwt"], name, bars.lines[0].get_color()))
    ax.axhline(0, color="grey", lw=0.8)
    ax.set_xscale("log")
    ax.xaxis.set_major_locator(matplotlib.ticker.LogLocator(base=10, subs=(1.0, 1.5, 2.0, 3.0, 5.0, 7.0)))
    ax.xaxis.set_major_formatter(matplotlib.ticker.FormatStrFormatter("%g"))
    ax.xaxis.set_minor_formatter(matplotlib.ticker.NullFormatter())
    ax.set_xlabel("perplexity of the trained tokens under the base model (log scale)")
    ax.set_ylabel("BWT on the other tasks (%)")
    ax.set_title("Lower-perplexity training data forgets less")
    ax.margins(x=0.12, y=0.12)  # room for labels beside the outermost points
    fig.tight_layout()
    place_labels(ax, points)
    _savefig(fig, path)


# Where a label may go relative to its point (offset in points, horizontal and vertical alignment), nearest
# first; then the same directions farther out, with a leader line back to the point.
_LABEL_SPOTS = [(5, 3, "left", "bottom"), (5, -3, "left", "top"), (-5, 3, "right", "bottom"),
                (-5, -3, "right", "top"), (0, 7, "center", "bottom"), (0, -7, "center", "top"),
                (8, 0, "left", "center"), (-8, 0, "right", "center")]


def place_labels(ax, points: list[tuple], fontsize: float = 8) -> list:
    """Label each (x, y, text[, colour]) point where the label overlaps no other label, point or the legend, and
    stays in the axes.

    Greedy: each label takes the first free spot among _LABEL_SPOTS at growing distances (with a leader
    line when pushed away); a label with no free spot anywhere keeps the nearest one.
    """
    fig = ax.figure
    fig.canvas.draw()
    renderer = fig.canvas.get_renderer()
    inside = ax.get_window_extent(renderer)
    dot = 5 * fig.dpi / 72  # half the size of a point marker, in pixels
    taken = []
    for x, y in ((p[0], p[1]) for p in points):
        px, py = ax.transData.transform((x, y))
        taken.append((px - dot, py - dot, px + dot, py + dot))
    if ax.get_legend() is not None:
        legend = ax.get_legend().get_window_extent(renderer)
        taken.append((legend.x0, legend.y0, legend.x1, legend.y1))
    labels = []
    for x, y, text, *colour in sorted(points, key=lambda p: (-p[1], p[0])):
        colour = colour[0] if colour else "black"
        chosen = None
        for scale in (1, 2.2, 3.6, 5.2):
            for dx, dy, ha, va in _LABEL_SPOTS:
                far = scale > 1
                label = ax.annotate(text, (x, y), xytext=(dx * scale, dy * scale), textcoords="offset points",
                                    ha=ha, va=va, fontsize=fontsize, color=colour,
                                    arrowprops={"arrowstyle": "-", "color": "0.5", "lw": 0.6} if far else None)
                box = label.get_window_extent(renderer)
                bounds = (box.x0 - 1, box.y0 - 1, box.x1 + 1, box.y1 + 1)
                fits = (bounds[0] >= inside.x0 and bounds[2] <= inside.x1 and bounds[1] >= inside.y0
                        and bounds[3] <= inside.y1 and not any(_overlap(bounds, t) for t in taken))
                if fits:
                    chosen = (label, bounds)
                    break
                label.remove()
            if chosen:
                break
        if chosen is None:  # nowhere free: the nearest spot, still drawn
            label = ax.annotate(text, (x, y), xytext=_LABEL_SPOTS[0][:2], textcoords="offset points",
                                ha="left", va="bottom", fontsize=fontsize, color=colour)
            box = label.get_window_extent(renderer)
            chosen = (label, (box.x0, box.y0, box.x1, box.y1))
        labels.append(chosen[0])
        taken.append(chosen[1])
    return labels


def _overlap(a: tuple, b: tuple) -> bool:
    return a[0] < b[2] and b[0] < a[2] and a[1] < b[3] and b[1] < a[3]


def plot_ti_vs_bwt(results: dict, path: Path) -> None:
    """Target gain against forgetting, one point per method with seed error bars: learning and keeping at once."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 5))
    for name, m in results["methods"].items():
        ax.errorbar(m["mean"]["bwt"], m["mean"]["ti"], xerr=m["std"]["bwt"], yerr=m["std"]["ti"], fmt="o",
                    capsize=3, label=name)
    ax.axhline(0, color="grey", lw=0.8)
    ax.axvline(0, color="grey", lw=0.8)
    ax.set_xlabel("BWT on the other tasks (%)  (right = forgets less)")
    ax.set_ylabel("TI on the target task (%)  (up = learns more)")
    ax.set_title("Learning the target vs keeping the rest (mean ± std over seeds)")
    ax.legend(fontsize=8, loc="best")
    fig.tight_layout()
    _savefig(fig, path)


def has_lr_sweep(results: dict) -> bool:
    return any(m.get("lr_scale", 1.0) != 1.0 for m in results["methods"].values())


def lr_control_series(results: dict) -> dict[str, list[dict]]:
    """Per swept method (gt, stm@tau, ...), its variants ordered by learning rate: the learning-rate control."""
    methods = results["methods"]
    series = {}
    for name, m in methods.items():
        if m.get("lr_scale", 1.0) != 1.0:
            family = name.rsplit("_lr", 1)[0]
            series.setdefault(family, [])
            series[family].append({"name": name, **m})
    for family in series:
        if family in methods:
            series[family].append({"name": family, **methods[family]})
        series[family].sort(key=lambda m: m["learning_rate"] or 0)
    return series


def plot_lr_control(results: dict, path: Path, title: str = "") -> None:
    """TI against BWT per (method, learning rate), seed error bars; the oracle at the config's rate for reference."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 5))
    labels = []
    for family, points in lr_control_series(results).items():
        bwt = [p["mean"]["bwt"] for p in points]
        ti = [p["mean"]["ti"] for p in points]
        ax.errorbar(bwt, ti, xerr=[p["std"]["bwt"] for p in points], yerr=[p["std"]["ti"] for p in points],
                    fmt="o-", capsize=3, label=family)
        labels += [(b, t, f"{p['learning_rate']:.0e}") for b, t, p in zip(bwt, ti, points) if p["learning_rate"]]
    if "oracle" in results["methods"]:
        o = results["methods"]["oracle"]
        ax.errorbar(o["mean"]["bwt"], o["mean"]["ti"], xerr=o["std"]["bwt"], yerr=o["std"]["ti"], fmt="*",
                    markersize=12, capsize=3, color="black", label="oracle")
    ax.axhline(0, color="grey", lw=0.8)
    ax.axvline(0, color="grey", lw=0.8)
    ax.set_xlabel("BWT on the other tasks (%)  (right = forgets less)")
    ax.set_ylabel("TI on the target task (%)  (up = learns more)")
    ax.set_title(title or "Learning-rate control: each point a (method, learning rate), mean ± std over seeds")
    ax.legend(fontsize=8, loc="best")
    ax.margins(0.12)
    fig.tight_layout()
    place_labels(ax, labels, fontsize=7)
    _savefig(fig, path)


def plot_tau_sweep(results: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    methods = results["methods"]
    sweep = sorted((m for m in methods.values() if m["method"] in ("stm", "gt")),
                   key=lambda m: m["masked_fraction"])
    if not sweep:
        return
    x = [100 * m["masked_fraction"] for m in sweep]
    fig, ax = plt.subplots(figsize=(6.5, 4.5))
    ax.errorbar(x, [m["mean"]["bwt"] for m in sweep], yerr=[m["std"]["bwt"] for m in sweep], marker="o",
                capsize=3, label="BWT (other tasks)")
    ax.errorbar(x, [m["mean"]["ti"] for m in sweep], yerr=[m["std"]["ti"] for m in sweep], marker="s",
                capsize=3, label="TI (target)")
    ax.axhline(0, color="grey", lw=0.8)
    ax.set_xlabel("% of answer tokens masked")
    ax.set_ylabel("relative change vs base (%)")
    ax.set_title("STM threshold sweep")
    ax.legend()
    ax.margins(x=0.12, y=0.12)
    fig.tight_layout()
    place_labels(ax, [(xi, m["mean"]["bwt"], "GT" if m["method"] == "gt" else f"tau {m['tau']:g}")
                      for m, xi in zip(sweep, x)])
    _savefig(fig, path)


def write_report(exp, costs: dict[str, float]) -> dict:
    """results.json, report.md, figures/, the inspect pages of the training sets and report.html."""
    from robust_sft.report_html import write_inspect_pages, write_report_html
    from robust_sft.scoring import load_scores
    from robust_sft.stats import plot_histogram

    results = collect_results(exp, costs)
    write_json(exp.dir / "results.json", results)  # first: a figure that fails must not lose the results
    figures = exp.dir / "figures"
    at_config_rate = {**results, "methods": {n: m for n, m in results["methods"].items()
                                             if m.get("lr_scale", 1.0) == 1.0}}
    _figure(plot_ti_vs_bwt, at_config_rate, figures / "ti_vs_bwt.png")
    _figure(plot_ppl_vs_bwt, at_config_rate, figures / "ppl_vs_bwt.png")
    _figure(plot_tau_sweep, at_config_rate, figures / "tau_sweep.png")
    if has_lr_sweep(results):
        _figure(plot_lr_control, results, figures / "lr_control.png")
    _figure(plot_histogram, {SOURCE_LABELS[s]: load_scores(exp.scores_path(s)) for s in exp.sources},
            figures / "token_ppl_hist.png")
    markdown = render_markdown(results)
    write_text(exp.dir / "report.md", markdown)
    views = write_inspect_pages(exp, results)
    write_report_html(exp.dir, results, markdown, views)
    return results


def _figure(plot, data, path: Path) -> None:
    """Draw one figure; a figure that cannot be drawn is logged and left out, never the report with it."""
    try:
        plot(data, path)
    except Exception as err:  # noqa: BLE001  (matplotlib raises many kinds; the numbers are already saved)
        logger.warning("figure %s not drawn (%s: %s); results.json and the report are written without it",
                       path.name, type(err).__name__, err)
        import matplotlib.pyplot as plt

        plt.close("all")


# --------------------------------------------------------------------------------------------- from a run dir


def run_costs(run_dir: Path, sources: list[str]) -> dict[str, float]:
    """Seconds spent making each training set and scoring it, as the runner recorded them."""
    costs = {}
    for source in sources:
        report = run_dir / "data" / f"{source}.report.json"  # generated sets only; GT and oracle cost nothing
        costs[source] = _read_json(report)["seconds"] if report.exists() else 0.0
        timing = run_dir / "scores" / f"{source}.parquet.seconds.json"
        if timing.exists():
            costs[f"score_{source}"] = _read_json(timing)["seconds"]
    return costs


def load_run(run_dir: str | Path):
    """The experiment of a finished run directory (config.json + its artifacts), without loading any model."""
    import pyarrow.parquet as pq

    from robust_sft.artifacts import METADATA_KEY
    from robust_sft.experiment import Experiment, ExperimentConfig

    run_dir = Path(run_dir)
    for needed in ("config.json", "eval/base/accuracies.json", "scores/gt.parquet"):
        if not (run_dir / needed).exists():
            raise FileNotFoundError(f"{run_dir}: not a finished run directory (no {needed})")
    exp = Experiment(ExperimentConfig(**_read_json(run_dir / "config.json")), run_dir, progress=False)
    # The base model and the task list as the run resolved them (the organism's path, its other tasks).
    exp.base = json.loads(pq.read_schema(exp.scores_path("gt")).metadata[METADATA_KEY])["model"]
    evaluated = list(_accuracies(run_dir / "eval" / "base"))
    exp.tasks = [exp.config.target, *[t for t in evaluated if t != exp.config.target]]
    return exp


def rebuild_report(run_dir: str | Path) -> dict:
    """`robust-sft report RUN_DIR`: every report artifact again, from the run directory alone."""
    exp = load_run(run_dir)
    return write_report(exp, run_costs(exp.dir, exp.sources))
