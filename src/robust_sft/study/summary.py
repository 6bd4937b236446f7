"""study.json and study.md: every claim held in k of n settings, TI/BWT per method and setting, the learning-rate
control and the mechanism measures, all read from the settings' run directories."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from robust_sft.analysis.mechanism import analysis_units, correlations, plot_mechanism
from robust_sft.core.artifacts import write_json, write_text
from robust_sft.core.rundir import RunDir
from robust_sft.report.criteria import criterion_subject
from robust_sft.report.figures import plot_lr_control
from robust_sft.study.config import StudyConfig
from robust_sft.study.figures import plot_claims_grid, plot_lr_control_grid


def claims_table(results_by_setting: dict[str, dict]) -> list[dict]:
    """Every claim id across settings: its statement and criterion, per setting its status and numbers, and k of n
    (n counts the settings where it was tested)."""
    rows = {}
    for setting, results in results_by_setting.items():
        for claim in results["claims"]:
            row = rows.setdefault(claim["id"], {"id": claim["id"], "claim": claim["claim"],
                                                "criterion": claim["criterion"], "settings": {}})
            row["settings"][setting] = {"status": claim["status"], "evidence": claim["evidence"]}
    for row in rows.values():
        statuses = [s["status"] for s in row["settings"].values()]
        row["held"] = statuses.count("held")
        row["tested"] = sum(s != "not tested" for s in statuses)
    return list(rows.values())


CRITERION_STATUSES = ("held", "not held", "not counted", "not tested")


def criteria_table(results_by_setting: dict[str, dict], world_of: dict[str, int], design_worlds: list[int]) -> list[dict]:
    """Every pre-registered criterion (the experiment's `criteria:`, judged in each setting's report): per setting its
    status and evidence, and the count of each status over the held-out settings and, apart, the design settings."""
    rows = {}
    for setting, results in results_by_setting.items():
        for judged in results.get("criteria", []):
            row = rows.setdefault(judged["id"], {
                "id": judged["id"], "claim": judged["claim"], "subject": criterion_subject(judged),
                "quantity": judged["quantity"], "holds_if": judged["holds_if"], "settings": {}})
            row["settings"][setting] = {"status": judged["status"], "evidence": judged["evidence"],
                                        "world": world_of[setting]}
    for row in rows.values():
        for group, design in (("held_out", False), ("design", True)):
            statuses = [s["status"] for s in row["settings"].values() if (s["world"] in design_worlds) == design]
            row[group] = {**{status: statuses.count(status) for status in CRITERION_STATUSES}, "n": len(statuses)}
    return list(rows.values())


def criteria_count(counts: dict) -> str:
    """Held in k of n, with the settings where a failed requirement or a missing variant left it undecided."""
    if not counts["n"]:
        return "-"
    text = f"{counts['held']} of {counts['n']}"
    extra = [f"{counts[s]} {s}" for s in ("not counted", "not tested") if counts[s]]
    return text + (f" ({', '.join(extra)})" if extra else "")


def method_table(results_by_setting: dict[str, dict]) -> dict[str, dict[str, dict]]:
    """Per method (at the config's learning rate), per setting: mean/std TI and BWT, and sample-wise forgetting
    averaged over the other tasks."""
    table = {}
    for setting, results in results_by_setting.items():
        for name, m in results["methods"].items():
            if m.get("lr_scale", 1.0) != 1.0:
                continue
            transitions = m.get("transitions", {})
            table.setdefault(name, {})[setting] = {
                "ti": m["mean"]["ti"], "ti_std": m["std"]["ti"], "bwt": m["mean"]["bwt"], "bwt_std": m["std"]["bwt"],
                "lost": float(np.nanmean([t["right_to_wrong"] for t in transitions.values()])) if transitions else None,
                "gained": float(np.nanmean([t["wrong_to_right"] for t in transitions.values()])) if transitions
                else None,
            }
    return table


def points_table(results_by_setting: dict[str, dict]) -> dict[str, dict[str, dict]]:
    """Per method (the learning-rate variants included: GT's frontier is read from them), per setting: TI and BWT in
    percentage points, each with its 95 % paired bootstrap interval over test items (the setting's report)."""
    table = {}
    for setting, results in results_by_setting.items():
        for name, m in results["methods"].items():
            intervals = m.get("intervals") or {}
            if "ti_pp" in intervals and "bwt_pp" in intervals:
                table.setdefault(name, {})[setting] = {q: {"estimate": intervals[q]["estimate"],
                                                           "interval": list(intervals[q]["interval"])}
                                                       for q in ("ti_pp", "bwt_pp")}
    return table


def write_summary(out: Path, config: StudyConfig, chosen: dict, runs: dict, control: dict | None,
                  timings: dict) -> dict:
    """study.json, study.md and figures/ from the settings' run directories (results.json, analysis.json)."""
    results = {name: RunDir(r["dir"]).read_results() for name, r in runs.items()}
    control_results = RunDir(control["dir"]).read_results() if control else None
    units = mechanism_units(runs, results)
    factors = ("setting", "method")  # a method's learning rates and seeds inside one setting
    mechanism = {"correlations": correlations(units, factors=factors),
                 "by_mode": {m: correlations([u for u in units if u["mode"] == m], factors=factors)
                             for m in config.modes},
                 "units": len(units)}
    write_figures(out / "figures", config, results, control_results, units, mechanism)
    summary = {
        "schema": "robust-sft/study/v1",
        "name": config.name,
        "worlds": config.worlds,
        "modes": {m: {"chosen": chosen[m]["options"], "selection": chosen[m]} for m in config.modes},
        "settings": {name: {**run, "target_base_accuracy": results[name]["base"]["accuracies"][results[name]["target"]],
                            "base_accuracies": results[name]["base"]["accuracies"]} for name, run in runs.items()},
        "claims": claims_table(results),
        "design_worlds": config.design_worlds,
        "criteria": criteria_table(results, {name: run["world"] for name, run in runs.items()}, config.design_worlds),
        "methods": method_table(results),
        "points": points_table(results),
        "lr_control": lr_control_summary(control, control_results) if control_results else None,
        "mechanism": mechanism,
        "seconds": timings,
    }
    write_json(out / "study.json", summary)
    write_text(out / "study.md", render_study(summary))
    return summary


def mechanism_units(runs: dict, results: dict[str, dict]) -> list[dict]:
    """Every fine-tuned model of every setting with its mechanism measures (the run's analysis.json) and BWT; the
    learning-rate variants labelled by their family ("gt (smaller lr)")."""
    units = []
    for name, run in runs.items():
        methods = results[name]["methods"]
        for unit in analysis_units(RunDir(run["dir"]).read_analysis()["methods"]):
            variant = unit["label"]
            family = variant.rsplit("_lr", 1)[0] + " (smaller lr)" if methods[variant].get("lr_scale", 1.0) != 1.0 \
                else variant
            units.append({**unit, "variant": variant, "label": family, "setting": name, "mode": run["mode"]})
    return units


def lr_control_summary(control: dict, control_results: dict) -> dict:
    """The learning-rate control's claim (f) and its (method, learning rate) points."""
    return {"same_as": control["same_as"], "claims": [c for c in control_results["claims"] if c["id"] == "f"],
            "points": {n: {"learning_rate": m.get("learning_rate"), "ti": m["mean"]["ti"], "ti_std": m["std"]["ti"],
                           "bwt": m["mean"]["bwt"], "bwt_std": m["std"]["bwt"]}
                       for n, m in control_results["methods"].items() if m["method"] in ("gt", "stm", "oracle")}}


def write_figures(figures: Path, config: StudyConfig, results: dict[str, dict], control_results: dict | None,
                  units: list[dict], mechanism: dict) -> None:
    if units:
        plot_mechanism(units, figures / "mechanism_scatter.png", mechanism["correlations"])
        for mode in config.modes:
            plot_mechanism([u for u in units if u["mode"] == mode], figures / f"mechanism_scatter_{mode}.png",
                           mechanism["by_mode"][mode])
    if control_results:
        plot_lr_control(control_results, figures / "lr_control.png",
                        title="Learning-rate control (world %d, the demo's LoRA options)" % config.worlds[0])
    plot_lr_control_grid(results, figures / "lr_control_by_setting.png")
    plot_claims_grid(claims_table(results), list(results), figures / "claims.png")


def _points(entry: dict) -> str:
    low, high = entry["interval"]
    return f"{entry['estimate']:+.1f} [{low:+.1f}, {high:+.1f}]"


def _status_cell(entry: dict) -> str:
    return {"held": "held", "not held": "**not held**", "not counted": "not counted", "not tested": "n/t"}[
        entry["status"]]


def render_criteria(criteria: list[dict], settings: list[str], design_worlds: list[int]) -> list[str]:
    """The pre-registered criteria's section of study.md: held in k of n held-out settings, the design ones apart."""
    if not criteria:
        return []
    held_out = "held-out settings" if design_worlds else "settings"
    lines = ["", f"## Pre-registered criteria: held in k of n {held_out}", "",
             f"Each criterion was judged in each setting from its paired bootstrap interval (the setting's report). "
             f"Design worlds {design_worlds or 'none'}: settings of worlds used in a design decision, counted apart. "
             "'Not counted': a criterion it requires (the positive control) did not hold there.", "",
             f"| criterion | rule | {held_out} | design settings | " + " | ".join(settings) + " |",
             "|---" * (len(settings) + 4) + "|"]
    for row in criteria:
        cells = [_status_cell(row["settings"][s]) if s in row["settings"] else "-" for s in settings]
        lines.append(f"| ({row['id']}) {row['claim']} | {row['subject']}: {row['quantity']} {row['holds_if']} | "
                     f"{criteria_count(row['held_out'])} | {criteria_count(row['design'])} | " + " | ".join(cells) + " |")
    lines += ["", "Estimates and intervals per setting (points):", ""]
    for row in criteria:
        lines.append(f"- ({row['id']}) " + "; ".join(f"{s}: {e['evidence']}" for s, e in row["settings"].items()))
    return lines


def render_study(summary: dict) -> str:
    settings = list(summary["settings"])
    lines = [f"# {summary['name']}: the paper's claims across worlds and fine-tuning modes", "",
             f"Organism worlds {summary['worlds']} x modes {', '.join(summary['modes'])} = {len(settings)} settings; "
             "every number is a mean over seeds with the sample standard deviation where shown.", "",
             "## Fine-tuning modes (chosen once, on the first world, by the oracle's validation accuracy)", "",
             "| mode | chosen | oracle validation accuracy (base) | grid |", "|---|---|---|---|"]
    for mode, m in summary["modes"].items():
        sel = m["selection"]
        grid = ", ".join(f"{t['name']} {t['validation_accuracy']:.3f}" for t in sel["trials"])
        lines.append(f"| {mode} | {sel['name']} | {max(t['validation_accuracy'] for t in sel['trials']):.3f} "
                     f"({sel['base_validation_accuracy']:.3f}) | {grid} |")
    lines += render_criteria(summary.get("criteria") or [], settings, summary.get("design_worlds") or [])
    lines += ["", "## Claims: held in k of n settings", "",
              "| claim | criterion | held | " + " | ".join(settings) + " |", "|---" * (len(settings) + 3) + "|"]
    for row in summary["claims"]:
        cells = [_status_cell(row["settings"][s]) if s in row["settings"] else "-" for s in settings]
        lines.append(f"| ({row['id']}) {row['claim']} | {row['criterion']} | {row['held']} of {row['tested']} | "
                     + " | ".join(cells) + " |")
    lines += ["", "n/t: not tested in that setting (what it needs is named in the setting's report). "
              "Numbers per setting:", ""]
    for row in summary["claims"]:
        lines.append(f"- ({row['id']}) " + "; ".join(f"{s}: {e['evidence']}" for s, e in row["settings"].items()))
    lines += ["", "## TI and BWT per method and setting (%, mean ± std over seeds)", "",
              "| method | " + " | ".join(settings) + " |", "|---" * (len(settings) + 1) + "|"]
    for method, per in summary["methods"].items():
        cells = [f"TI {p['ti']:+.1f} ± {p['ti_std']:.1f}, BWT {p['bwt']:+.1f} ± {p['bwt_std']:.1f}"
                 if (p := per.get(s)) else "-" for s in settings]
        lines.append(f"| {method} | " + " | ".join(cells) + " |")
    if summary.get("points"):
        lines += ["", "## TI and BWT per method and setting in percentage points (95 % paired bootstrap intervals)", "",
                  "The base model's accuracy subtracted, seeds averaged per test item, intervals over test items (each "
                  "setting's report). Cells: TI / BWT.", "",
                  "| method | " + " | ".join(settings) + " |", "|---" * (len(settings) + 1) + "|"]
        for method, per in summary["points"].items():
            cells = [f"{_points(p['ti_pp'])} / {_points(p['bwt_pp'])}" if (p := per.get(s)) else "-" for s in settings]
            lines.append(f"| {method} | " + " | ".join(cells) + " |")
    lines += ["", "## Sample-wise forgetting (% of base-right items lost / % of base-wrong items gained, mean over "
              "the other tasks and seeds)", "", "| method | " + " | ".join(settings) + " |",
              "|---" * (len(settings) + 1) + "|"]
    for method, per in summary["methods"].items():
        cells = [f"{100 * p['lost']:.1f} / {100 * p['gained']:.1f}" if (p := per.get(s)) and p["lost"] is not None
                 else "-" for s in settings]
        lines.append(f"| {method} | " + " | ".join(cells) + " |")
    control = summary.get("lr_control")
    if control:
        lines += ["", "## Learning-rate control (world %d, the demo's training options%s)" % (
            summary["worlds"][0], f"; the same run as setting {control['same_as']}" if control["same_as"] else ""),
            "", "| variant | learning rate | TI % | BWT % |", "|---|---|---|---|"]
        for name, p in control["points"].items():
            lr = f"{p['learning_rate']:.0e}" if p["learning_rate"] else "-"
            lines.append(f"| {name} | {lr} | {p['ti']:+.1f} ± {p['ti_std']:.1f} | {p['bwt']:+.1f} ± {p['bwt_std']:.1f} |")
        for c in control["claims"]:
            lines.append(f"\n({c['id']}) {c['claim']}: **{c['status']}** ({c['criterion']}). {c['evidence']}")
    mech = summary.get("mechanism") or {}
    if mech.get("correlations"):
        modes = list(mech["by_mode"])
        lines += ["", "## Mechanism: what goes with forgetting (every fine-tuned model of every setting)", "",
                  "Spearman rank correlation of each measure with BWT over all fine-tuned models (n), pooled and per "
                  "fine-tuning mode. A negative rho: the larger the measure, the more the model forgets. Pooled, the "
                  "models are not independent and the methods' clusters can make the correlation alone; the last "
                  "column is the correlation within each (setting, method), i.e. along a method's learning rates "
                  "and seeds (r, n models, groups).", "",
                  "| measure | all | " + " | ".join(modes) + " | within setting and method |",
                  "|---" * (len(modes) + 3) + "|"]

        def cell(c):
            return f"{c['rho']:+.2f} (n {c['n']})" if c["rho"] is not None else f"n/a (n {c['n']})"

        def within(c):
            w = c.get("within") or {}
            r = f"{w['r']:+.2f}" if w.get("r") is not None else "n/a"
            return f"{r} (n {w.get('n', 0)}, {w.get('groups', 0)} groups)"

        for measure, c in mech["correlations"].items():
            lines.append(f"| {measure} | {cell(c)} | " + " | ".join(cell(mech["by_mode"][m][measure]) for m in modes)
                         + f" | {within(c)} |")
    lines += ["", "## Time", "", "Wall-clock minutes of the call that wrote this summary, per stage; a stage it found done "
              "(cached by an earlier call) costs next to nothing here.", "", "| stage | minutes |", "|---|---|"]
    lines += [f"| {stage} | {seconds / 60:.1f} |" for stage, seconds in summary["seconds"].items()]
    lines += ["", "Figures: `figures/claims.png`, `figures/lr_control.png`, `figures/lr_control_by_setting.png`, "
              "`figures/mechanism_scatter.png` (+ one per mode); each setting's report, analysis and figures are in its "
              "directory.", ""]
    return "\n".join(lines)
