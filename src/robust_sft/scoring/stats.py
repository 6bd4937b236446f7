"""Perplexity statistics of score files: the paper's Table 1 and the masked share at each threshold."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from robust_sft.core.artifacts import check_output_file
from robust_sft.core.figures import save_figure
from robust_sft.scoring.files import Scores, load_scores, sequence_perplexity

DEFAULT_TAUS = (1.5, 2, 2.5, 3, 5, 10, 25, 100, 1000)
QUANTILES = (0.1, 0.25, 0.5, 0.75, 0.9, 0.99)


def fraction_above(token_nll: np.ndarray, tau: float) -> float:
    """Share of tokens with perplexity > tau."""
    return float(np.mean(token_nll > math.log(tau))) if len(token_nll) else float("nan")


def check_taus(taus) -> None:
    """Thresholds are perplexities > 1 (every token has perplexity >= 1); NaN, 0 or -1 would print nonsense."""
    bad = [t for t in taus if not t > 1]
    if bad:
        raise ValueError(f"taus must be perplexity thresholds greater than 1, not {bad[0]}")


def summarize(scores: Scores, taus=DEFAULT_TAUS) -> dict:
    """Examples, answer tokens, sequence perplexity (mean/variance over examples), % above each tau, quantiles."""
    check_taus(taus)
    per_example = [scores.answer_nll(i) for i in range(len(scores))]
    tokens = np.concatenate(per_example) if per_example else np.zeros(0, np.float32)
    seq_ppl = np.array([sequence_perplexity(n) for n in per_example if len(n)])
    token_ppl = np.exp(tokens.astype(np.float64))
    return {
        "examples": len(scores),
        "answer_tokens": int(len(tokens)),
        "sequence_ppl_mean": float(seq_ppl.mean()) if len(seq_ppl) else float("nan"),
        "sequence_ppl_var": float(seq_ppl.var()) if len(seq_ppl) else float("nan"),
        "mean_token_nll": float(tokens.mean()) if len(tokens) else float("nan"),
        "pct_tokens_ppl_above": {str(t): 100 * fraction_above(tokens, t) for t in taus},
        "token_ppl_quantiles": {str(q): float(np.quantile(token_ppl, q)) for q in QUANTILES} if len(tokens) else {},
        "model": scores.metadata.get("model"),
    }


def format_table(summaries: dict[str, dict]) -> str:
    """Side-by-side Markdown table of several summaries (e.g. GT, Rephrase, Self-Output)."""
    names = list(summaries)
    first = summaries[names[0]]
    rows = [
        ("examples", lambda s: f"{s['examples']}"),
        ("answer tokens", lambda s: f"{s['answer_tokens']}"),
        ("sequence ppl mean", lambda s: f"{s['sequence_ppl_mean']:.3f}"),
        ("sequence ppl variance", lambda s: f"{s['sequence_ppl_var']:.3f}"),
    ]
    rows += [(f"% tokens ppl > {t}", lambda s, t=t: f"{s['pct_tokens_ppl_above'][t]:.1f}")
             for t in first["pct_tokens_ppl_above"]]
    rows += [(f"token ppl q{q}", lambda s, q=q: f"{s['token_ppl_quantiles'].get(q, float('nan')):.3g}")
             for q in first["token_ppl_quantiles"]]
    lines = ["| | " + " | ".join(names) + " |", "|---" * (len(names) + 1) + "|"]
    lines += ["| " + label + " | " + " | ".join(fmt(summaries[n]) for n in names) + " |" for label, fmt in rows]
    return "\n".join(lines)


def plot_histogram(named_scores: dict[str, Scores], path: str | Path, tau: float | None = 2.5) -> Path:
    """Histogram of answer-token log perplexity per file, with the STM threshold marked."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4))
    bins = np.linspace(0, 10, 61)
    for name, scores in named_scores.items():
        tokens = np.concatenate([scores.answer_nll(i) for i in range(len(scores))])
        ax.hist(np.clip(tokens, 0, 10), bins=bins, alpha=0.5, density=True, label=name)
    if tau is not None:
        ax.axvline(math.log(tau), color="k", linestyle="--", label=f"tau = {tau}")
    ax.set_xlabel("token NLL = log perplexity (nats, clipped at 10)")
    ax.set_ylabel("density")
    ax.set_yscale("log")
    ax.legend()
    ax.set_title("Answer-token perplexity under the model")
    fig.tight_layout()
    return save_figure(fig, path)


@dataclass
class StatsConfig:
    """Options of `robust-sft stats SCORES...` (not converted by type: the default taus keep their printed form,
    2 and not 2.0, in the table's row names and the JSON keys)."""

    scores: list[str] = field(metadata={"help": "Score files (name=path to label a column), e.g. GT=gt.parquet."})
    taus: list[float] = field(
        default_factory=lambda: list(DEFAULT_TAUS),
        metadata={"help": "Thresholds for the 'percent of tokens with ppl > tau' rows."},
    )
    histogram: str | None = field(default=None, metadata={"help": "Write a PNG histogram of token perplexity here."})
    json: bool = field(default=False, metadata={"help": "Print JSON instead of a Markdown table."})

    def __post_init__(self) -> None:
        check_taus(self.taus)


def named_score_paths(items: list[str]) -> dict[str, str]:
    """`NAME=path` items, or bare paths named by their stem."""
    return dict(item.rpartition("=")[::2] if "=" in item else (Path(item).stem, item) for item in items)


def summarize_files(config: StatsConfig) -> dict[str, dict]:
    """`robust-sft stats`: a summary per score file (and the histogram, when asked). (Not named `stats`: the
    package's `stats` attribute is this module once it is imported.)"""
    if config.histogram:
        check_output_file(config.histogram)  # before any work
    named = {name: load_scores(path) for name, path in named_score_paths(config.scores).items()}
    if config.histogram:
        plot_histogram(named, config.histogram)
    return {name: summarize(scores, config.taus) for name, scores in named.items()}
