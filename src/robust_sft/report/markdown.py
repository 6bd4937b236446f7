"""report.md: the run's tables and claims as Markdown, from results.json alone."""

from __future__ import annotations

import math

from robust_sft.report.criteria import criterion_subject
from robust_sft.report.figures import has_lr_sweep

SOURCE_LABELS = {"gt": "GT", "rephrase": "Rephrase", "self_output": "Self-Output", "oracle": "Oracle (house style)"}


def _percent(share: float) -> str:
    return "-" if math.isnan(share) else f"{100 * share:.1f}"


def _pm(mean: float, std: float, fmt: str = "+.1f") -> str:
    return f"{mean:{fmt}} ± {std:{fmt.lstrip('+')}}"


# What each token policy beside plain STM does (masking/policies.py), said once under Table 2 when it ran.
POLICY_NOTES = {
    "stm_auto": "STM at the tau the auto rule picks from GT's scores",
    "answer_aware": "STM that never masks a token of the answer span the target's checker reads",
    "hindsight": "STM that keeps a token above tau when a content-only hint in the prompt (the task's `hint`) brings "
                 "its perplexity to tau or below (GT scored a second time, with hints)",
    "departure_kept": "STM that always trains each answer's departure token (the first GT token that is not the base "
                      "model's greedy choice), the token a switch of style hangs on",
    "style_only": "GT on only the problems Self-Output solved: the human style without content the model lacks",
}


def _interval(value: dict | None) -> str:
    """`+3.1 [+0.4, +5.9]`: an estimate and its 95 % interval, in points (- when not measured)."""
    if not value:
        return "-"
    lower, upper = value["interval"]
    return f"{value['estimate']:+.1f} [{lower:+.1f}, {upper:+.1f}]"


def points_table(methods: dict) -> list[str]:
    """Table 2 in percentage points, with paired bootstrap intervals; each variant also against GT."""
    lines = ["## In percentage points: TI and BWT with 95 % paired bootstrap intervals", "",
             "Accuracy change in points (the base model's accuracy subtracted); TI on the target, BWT the mean over the "
             "other tasks; the seeds averaged per test item. Intervals: paired bootstrap over test items (the same "
             "items drawn for the base and the fine-tuned models; 2000 draws). The last two columns: the variant "
             "minus GT on the same items.", "",
             "| method | TI (points) | BWT (points) | TI minus GT's (points) | BWT minus GT's (points) |",
             "|---|---|---|---|---|"]
    for name, m in methods.items():
        versus = m.get("versus", {}).get("gt", {})
        lines.append(f"| {name} | {_interval(m['intervals']['ti_pp'])} | {_interval(m['intervals']['bwt_pp'])} | "
                     f"{_interval(versus.get('ti_pp'))} | {_interval(versus.get('bwt_pp'))} |")
    return lines + [""]


def criteria_table(criteria: list[dict]) -> list[str]:
    """The config's pre-registered criteria, each with its status and the interval it read."""
    if not criteria:
        return []
    lines = ["## Pre-registered criteria (from the config, committed before the run)", "",
             "| criterion | variant | quantity | holds if | status | estimate [95 % interval] |",
             "|---|---|---|---|---|---|"]
    for c in criteria:
        requires = f" (requires {', '.join(c['requires'])})" if c["requires"] else ""
        lines.append(f"| ({c['id']}) {c['claim']} | {criterion_subject(c)} | {c['quantity']} | {c['holds_if']}{requires} | "
                     f"**{c['status']}** | {c['evidence']} |")
    return lines + [""]


def policy_notes(methods: dict) -> list[str]:
    """One line per policy variant: what it does, and the tau a rule chose (with the rule)."""
    lines = []
    for name, m in methods.items():
        if m["method"] in POLICY_NOTES:
            chosen = f"; tau {m['tau']:.3g} ({m['tau_rule']})" if m.get("tau_rule") not in (None, "fixed") else ""
            lines.append(f"- `{name}`: {POLICY_NOTES[m['method']]}{chosen}.")
    return lines + ([""] if lines else [])


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
    lines += policy_notes(methods)
    if results.get("percentage_point_tasks"):
        lines += [f"Base accuracy 0 on {', '.join(f'`{t}`' for t in results['percentage_point_tasks'])}: a relative "
                  "change is undefined there, so those tasks count their change in percentage points in TI/BWT.", ""]
    lines += points_table(methods)
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
        lines += ["", "The answer span is the text the target task's checker reads (its `Task.answer_span`); "
                  "the prose is every other trained token of the answer, end-of-turn included."]
    lines += [""] + criteria_table(results.get("criteria", []))
    lines += ["## The paper's claims in this setting", "", "| claim | criterion | status | numbers |",
              "|---|---|---|---|"]
    for c in results["claims"]:
        lines.append(f"| ({c['id']}) {c['claim']} | {c['criterion']} | **{c['status']}** | {c['evidence']} |")
    figures = ["ti_vs_bwt", "ppl_vs_bwt", "tau_sweep", "token_ppl_hist"] + (["lr_control"] if has_lr_sweep(results)
                                                                              else [])
    lines += ["", "Figures: " + ", ".join(f"`figures/{f}.png`" for f in figures) + ".", ""]
    return "\n".join(lines)
