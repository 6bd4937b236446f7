"""The analysis figures: each mechanism measure against BWT, the update per layer, the loss curves; a colour
per label, so units of several runs can be drawn together. matplotlib is imported when a figure is drawn."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from robust_sft.analysis.measures import MEASURE_LABELS, MEASURES, finite
from robust_sft.core.figures import save_figure


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _colours(units: list[dict]) -> dict[str, str]:
    import matplotlib

    labels = list(dict.fromkeys(u["label"] for u in units))
    if len(labels) <= 10:
        return {label: f"C{i}" for i, label in enumerate(labels)}
    palette = matplotlib.colormaps["tab20"].colors  # more labels than the default cycle: no colour twice
    return {label: matplotlib.colors.to_hex(palette[i % 20]) for i, label in enumerate(labels)}


def _legend_outside(fig, ax) -> None:
    if ax.get_legend_handles_labels()[0]:
        ax.legend(fontsize=7, loc="center left", bbox_to_anchor=(1.01, 0.5))
    fig.tight_layout()


def plot_mechanism(units: list[dict], path: str | Path, rhos: dict) -> Path:
    """One panel per measure: x = the measure, y = BWT, a colour per label; rho and n in each title (`rhos`:
    `mechanism.correlations` of the units)."""
    plt = _pyplot()
    colours = _colours(units)
    fig, axes = plt.subplots(1, len(MEASURES), figsize=(4.2 * len(MEASURES), 4), squeeze=False)
    for ax, measure in zip(axes[0], MEASURES):
        for label, colour in colours.items():
            points = [(u[measure], u["bwt"]) for u in units
                      if u["label"] == label and finite(u.get(measure)) and finite(u.get("bwt"))]
            if points:
                ax.scatter(*zip(*points), color=colour, label=label, s=30, alpha=0.8)
        rho = rhos[measure]["rho"]
        ax.set_title(f"rho = {rho:+.2f}, n = {rhos[measure]['n']}" if rho is not None
                     else f"rho: n/a, n = {rhos[measure]['n']}", fontsize=9)
        ax.set_xlabel(MEASURE_LABELS[measure], fontsize=8)
        ax.axhline(0, color="grey", linewidth=0.5)
    axes[0][0].set_ylabel("BWT (other tasks, relative change %)")
    handles = {label: h for ax in axes[0] for h, label in zip(*ax.get_legend_handles_labels())}
    if handles:
        fig.legend(handles.values(), handles.keys(), loc="center right", fontsize=7)
    fig.suptitle("Which change of the model goes with forgetting?")
    fig.tight_layout(rect=(0, 0, 0.9 if handles else 1, 1))
    return save_figure(fig, path)


def plot_layer_norms(units: list[dict], path: str | Path) -> Path:
    """||delta W|| per layer, mean over the seeds of each label, a line per label."""
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(8.5, 4))
    for label, colour in _colours(units).items():
        curves = [u["delta_norm_per_layer"] for u in units if u["label"] == label and u.get("delta_norm_per_layer")]
        if curves:
            width = max(len(c) for c in curves)
            mean = np.mean([c + [0.0] * (width - len(c)) for c in curves], axis=0)
            ax.plot(range(width), mean, marker="o", color=colour, label=f"{label} (n={len(curves)})")
    ax.set_xlabel("layer")
    ax.xaxis.get_major_locator().set_params(integer=True)
    ax.set_ylabel("||delta W|| of the layer (Frobenius)")
    ax.set_title("Where the fine-tune changed the weights")
    _legend_outside(fig, ax)
    return save_figure(fig, path)


def plot_loss_curves(units: list[dict], path: str | Path) -> Path:
    """Training loss against step, mean over the seeds of each label (at the steps all of them logged)."""
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(8.5, 4))
    for label, colour in _colours(units).items():
        curves = [{row["step"]: row["loss"] for row in u.get("loss_curve") or []} for u in units if u["label"] == label]
        curves = [c for c in curves if c]
        if not curves:
            continue
        steps = sorted(set.intersection(*(set(c) for c in curves)))
        ax.plot(steps, [np.mean([c[s] for c in curves]) for s in steps], color=colour, marker=".",
                label=f"{label} (mean of {len(curves)} seed{'s' if len(curves) > 1 else ''})")
    ax.set_xlabel("step")
    ax.set_ylabel("training loss")
    ax.set_title("Training loss")
    _legend_outside(fig, ax)
    return save_figure(fig, path)
