"""The inspect page's two figures, as inline SVG: the token-perplexity histogram and the share STM would mask
against tau, a line per score file."""

from __future__ import annotations

import math

import numpy as np

HIST_LOG10_MAX = 5.0  # histogram x range: token ppl 1 .. 1e5 (larger values go in the last bin)
HIST_BINS = 50
CURVE_TAUS = tuple(float(t) for t in np.round(np.logspace(0, 3, 61), 4))  # 1 .. 1000
FILE_COLOURS = ("#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#ff7f0e", "#8c564b")


def histogram(tokens: np.ndarray) -> list[float]:
    """Share of tokens per log10(ppl) bin over [0, HIST_LOG10_MAX] (the last bin holds everything above)."""
    log10_ppl = np.clip(np.asarray(tokens, np.float64) / math.log(10), 0, HIST_LOG10_MAX - 1e-9)
    counts, _ = np.histogram(log10_ppl, bins=HIST_BINS, range=(0, HIST_LOG10_MAX))
    return (counts / max(len(tokens), 1)).tolist()


def masked_curve(tokens: np.ndarray, taus=CURVE_TAUS) -> list[float]:
    """% of tokens with ppl > tau, for each tau."""
    ordered = np.sort(np.asarray(tokens, np.float64))
    n = max(len(ordered), 1)
    return [100 * (len(ordered) - np.searchsorted(ordered, math.log(t), side="right")) / n for t in taus]


def _svg_axes(width, height, margin, x_ticks, y_ticks, x_label, y_label):
    left, right, top, bottom = margin
    parts = [f'<svg viewBox="0 0 {width} {height}" class="fig">',
             f'<line x1="{left}" y1="{height - bottom}" x2="{width - right}" y2="{height - bottom}" class="ax"/>',
             f'<line x1="{left}" y1="{top}" x2="{left}" y2="{height - bottom}" class="ax"/>']
    for x, label in x_ticks:
        parts.append(f'<line x1="{x:.1f}" y1="{height - bottom}" x2="{x:.1f}" y2="{height - bottom + 4}" class="ax"/>'
                     f'<text x="{x:.1f}" y="{height - bottom + 16}" class="tick" text-anchor="middle">{label}</text>')
    for y, label in y_ticks:
        parts.append(f'<line x1="{left - 4}" y1="{y:.1f}" x2="{left}" y2="{y:.1f}" class="ax"/>'
                     f'<text x="{left - 7}" y="{y + 4:.1f}" class="tick" text-anchor="end">{label}</text>')
    parts.append(f'<text x="{(left + width - right) / 2}" y="{height - 4}" class="lab" text-anchor="middle">'
                 f'{x_label}</text>')
    parts.append(f'<text transform="translate(13,{(top + height - bottom) / 2}) rotate(-90)" class="lab" '
                 f'text-anchor="middle">{y_label}</text>')
    return parts


def histogram_svg(hists: dict[str, list[float]], tau: float) -> str:
    width, height, margin = 460, 250, (52, 12, 12, 40)
    left, right, top, bottom = margin
    plot_w, plot_h = width - left - right, height - top - bottom
    peak = max((max(h) for h in hists.values() if h), default=1.0) or 1.0
    sx = lambda v: left + plot_w * v / HIST_LOG10_MAX  # noqa: E731
    sy = lambda v: top + plot_h * (1 - v / peak)  # noqa: E731
    x_ticks = [(sx(e), f"{10 ** e:g}" if e < 4 else f"1e{e}") for e in range(int(HIST_LOG10_MAX) + 1)]
    y_ticks = [(sy(v), f"{100 * v:.0f}%") for v in np.linspace(0, peak, 5)]
    parts = _svg_axes(width, height, margin, x_ticks, y_ticks, "token perplexity (log scale)", "share of tokens")
    step = HIST_LOG10_MAX / HIST_BINS
    for k, (name, h) in enumerate(hists.items()):
        points = [f"{sx(0):.1f},{sy(0):.1f}"]
        for b, v in enumerate(h):
            points += [f"{sx(b * step):.1f},{sy(v):.1f}", f"{sx((b + 1) * step):.1f},{sy(v):.1f}"]
        points.append(f"{sx(HIST_LOG10_MAX):.1f},{sy(0):.1f}")
        colour = FILE_COLOURS[k % len(FILE_COLOURS)]
        parts.append(f'<polyline points="{" ".join(points)}" fill="{colour}" fill-opacity="0.15" stroke="{colour}"/>')
    x = sx(math.log10(tau))
    parts.append(f'<line x1="{x:.1f}" y1="{top}" x2="{x:.1f}" y2="{height - bottom}" class="tau"/>'
                 f'<text x="{x + 4:.1f}" y="{top + 12}" class="tick">tau {tau:g}</text></svg>')
    return "".join(parts)


def curve_svg(curves: dict[str, list[float]], tau: float, at_tau: dict[str, float]) -> str:
    width, height, margin = 460, 250, (52, 12, 12, 40)
    left, right, top, bottom = margin
    plot_w, plot_h = width - left - right, height - top - bottom
    sx = lambda t: left + plot_w * math.log10(t) / 3  # noqa: E731
    sy = lambda p: top + plot_h * (1 - p / 100)  # noqa: E731
    x_ticks = [(sx(t), f"{t:g}") for t in (1, 1.5, 2.5, 5, 10, 30, 100, 1000)]
    y_ticks = [(sy(p), f"{p}%") for p in (0, 25, 50, 75, 100)]
    parts = _svg_axes(width, height, margin, x_ticks, y_ticks, "tau (log scale)", "% of answer tokens masked")
    for k, (name, curve) in enumerate(curves.items()):
        colour = FILE_COLOURS[k % len(FILE_COLOURS)]
        points = " ".join(f"{sx(t):.1f},{sy(p):.1f}" for t, p in zip(CURVE_TAUS, curve))
        parts.append(f'<polyline points="{points}" fill="none" stroke="{colour}" stroke-width="1.8"/>')
        parts.append(f'<circle cx="{sx(tau):.1f}" cy="{sy(at_tau[name]):.1f}" r="3.5" fill="{colour}"/>')
    x = sx(tau)
    parts.append(f'<line x1="{x:.1f}" y1="{top}" x2="{x:.1f}" y2="{height - bottom}" class="tau"/>'
                 f'<text x="{x + 4:.1f}" y="{top + 12}" class="tick">tau {tau:g}</text></svg>')
    return "".join(parts)
