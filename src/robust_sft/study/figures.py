"""The study's own figures: the claims per setting, and the learning-rate control of every setting."""

from __future__ import annotations

from pathlib import Path

from robust_sft.core.figures import save_figure
from robust_sft.report.figures import lr_control_series


def plot_claims_grid(claims: list[dict], settings: list[str], path: Path) -> None:
    """One cell per (claim, setting): held, not held or not tested."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.colors import ListedColormap

    code = {"held": 2, "not held": 0, "not tested": 1}
    grid = [[code[row["settings"][s]["status"]] if s in row["settings"] else 1 for s in settings] for row in claims]
    fig, ax = plt.subplots(figsize=(1.2 * len(settings) + 3, 0.38 * len(claims) + 1.5))
    ax.imshow(grid, cmap=ListedColormap(["#d9534f", "#dddddd", "#5cb85c"]), vmin=0, vmax=2, aspect="auto")
    ax.set_xticks(range(len(settings)), settings, rotation=30, ha="right")
    ax.set_yticks(range(len(claims)), [f"({r['id']})  {r['held']}/{r['tested']}" for r in claims])
    for i, row in enumerate(grid):
        for j, value in enumerate(row):
            ax.text(j, i, {2: "held", 0: "not held", 1: "n/t"}[value], ha="center", va="center", fontsize=7)
    ax.set_title("The paper's claims per setting (green held, red not held)")
    fig.tight_layout()
    save_figure(fig, path)


def plot_lr_control_grid(results_by_setting: dict[str, dict], path: Path) -> None:
    """The learning-rate control of every setting that swept it: one panel each, TI against BWT."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    swept = {s: r for s, r in results_by_setting.items() if lr_control_series(r)}
    if not swept:
        return
    cols = min(3, len(swept))
    rows = -(-len(swept) // cols)
    fig, axes = plt.subplots(rows, cols, figsize=(4.6 * cols, 3.8 * rows), squeeze=False)
    for ax, (setting, results) in zip(axes.flat, swept.items()):
        for family, points in lr_control_series(results).items():
            ax.errorbar([p["mean"]["bwt"] for p in points], [p["mean"]["ti"] for p in points],
                        xerr=[p["std"]["bwt"] for p in points], yerr=[p["std"]["ti"] for p in points],
                        fmt="o-", capsize=2, label=family, markersize=4)
        if "oracle" in results["methods"]:
            o = results["methods"]["oracle"]
            ax.plot(o["mean"]["bwt"], o["mean"]["ti"], "k*", markersize=10, label="oracle")
        ax.axhline(0, color="grey", lw=0.6)
        ax.axvline(0, color="grey", lw=0.6)
        f = next((c for c in results["claims"] if c["id"] == "f"), None)
        ax.set_title(f"{setting}: (f) {f['status'] if f else 'n/t'}", fontsize=9)
        ax.set_xlabel("BWT %", fontsize=8)
        ax.set_ylabel("TI %", fontsize=8)
        ax.legend(fontsize=6)
    for ax in list(axes.flat)[len(swept):]:
        ax.axis("off")
    fig.suptitle("Learning-rate control per setting: larger markers to smaller rates along each line", fontsize=9)
    fig.tight_layout()
    save_figure(fig, path)
