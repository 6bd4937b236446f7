"""The run's figures (TI against BWT, perplexity against BWT, the tau sweep, the learning-rate control), from
results.json alone."""

from __future__ import annotations

import math
from pathlib import Path

from robust_sft.core.figures import place_labels, save_figure


def plot_ppl_vs_bwt(results: dict, path: Path) -> None:
    """Perplexity of what each method trains on against its BWT (the paper's Fig. 2)."""
    import matplotlib
    import matplotlib.ticker

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6.5, 4.5))
    points = []
    for name, m in results["methods"].items():
        if not math.isfinite(m["trained_token_ppl"]):  # sdft: it trains on its own samples, scored by no one
            continue
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
    save_figure(fig, path)


# Beyond ten methods matplotlib's colours repeat: the marker changes with each round of the ten colours.
MARKERS = ("o", "s", "^", "D", "v")


def method_style(index: int) -> dict:
    """The colour and marker of the index-th method in a legend: distinct for the first 50 methods."""
    return {"color": f"C{index % 10}", "marker": MARKERS[(index // 10) % len(MARKERS)]}


def plot_ti_vs_bwt(results: dict, path: Path) -> None:
    """Target gain against forgetting, one point per method with seed error bars: learning and keeping at once."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 5))
    for index, (name, m) in enumerate(results["methods"].items()):
        ax.errorbar(m["mean"]["bwt"], m["mean"]["ti"], xerr=m["std"]["bwt"], yerr=m["std"]["ti"], linestyle="none",
                    capsize=3, label=name, **method_style(index))
    ax.axhline(0, color="grey", lw=0.8)
    ax.axvline(0, color="grey", lw=0.8)
    ax.set_xlabel("BWT on the other tasks (%)  (right = forgets less)")
    ax.set_ylabel("TI on the target task (%)  (up = learns more)")
    ax.set_title("Learning the target vs keeping the rest (mean ± std over seeds)")
    ax.legend(fontsize=8, loc="best")
    fig.tight_layout()
    save_figure(fig, path)


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
    save_figure(fig, path)


def tau_sweep_points(results: dict) -> list[dict]:
    """STM at each tau (the auto rule's among them) and GT (tau = infinity), at the config's learning rate, by the
    share of tokens masked."""
    return sorted((m for m in results["methods"].values()
                   if m["method"] in ("stm", "stm_auto", "gt") and m.get("lr_scale", 1.0) == 1.0),
                  key=lambda m: m["masked_fraction"])


def sweep_label(method: dict) -> str:
    if method["method"] == "gt":
        return "GT"
    return f"auto: tau {method['tau']:.3g}" if method["method"] == "stm_auto" else f"tau {method['tau']:g}"


def plot_tau_sweep(results: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    sweep = tau_sweep_points(results)
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
    place_labels(ax, [(xi, m["mean"]["bwt"], sweep_label(m)) for m, xi in zip(sweep, x)])
    save_figure(fig, path)
