"""Figures shared by every page: atomic PNG saving and labels placed where they overlap nothing."""

from __future__ import annotations

from pathlib import Path

from robust_sft.core.artifacts import atomic_path


def save_figure(fig, path: str | Path) -> Path:
    """Write `fig` as a PNG atomically (a reader never sees half a file), close it, return the path."""
    import matplotlib.pyplot as plt

    with atomic_path(path, suffix=".png") as tmp:
        fig.savefig(tmp, format="png", dpi=120)
    plt.close(fig)
    return Path(path)


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
