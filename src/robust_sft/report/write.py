"""results.json, report.md, figures/, the inspect pages and report.html of a run, from its run directory alone.

Every number is read from the run directory (robust_sft.core.rundir: plan.json, scores, train summaries,
evaluation accuracies, cost sidecars); the claims of the paper are then judged from those numbers by fixed,
stated criteria. The runner and `robust-sft report RUN_DIR` call the same `write_report`, so a report rebuilt
from a copy of a run directory equals the original.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path

from robust_sft.core.artifacts import write_json, write_text
from robust_sft.core.rundir import RunDir
from robust_sft.models.loading import load_tokenizer
from robust_sft.report.figures import has_lr_sweep, plot_lr_control, plot_ppl_vs_bwt, plot_tau_sweep, plot_ti_vs_bwt
from robust_sft.report.html import write_inspect_pages, write_report_html
from robust_sft.report.markdown import SOURCE_LABELS, render_markdown
from robust_sft.report.results import collect_results
from robust_sft.scoring.files import load_scores
from robust_sft.scoring.stats import plot_histogram

logger = logging.getLogger(__name__)


def write_report(run_dir: str | Path) -> dict:
    """results.json, report.md, figures/, the inspect pages of the training sets and report.html; returns results."""
    run = RunDir(run_dir)
    plan = run.read_plan()
    tokenizer = load_tokenizer(plan["base_model"]["path"])  # token strings and answer spans; no model is loaded
    results = collect_results(run.root, tokenizer)
    write_json(run.results_file, results)  # first: a figure that fails must not lose the results
    write_figures(run, plan, results)
    markdown = render_markdown(results)
    write_text(run.report_md_file, markdown)
    views = write_inspect_pages(run, plan, results, tokenizer)
    write_report_html(run, results, markdown, views)
    return results


def write_figures(run: RunDir, plan: dict, results: dict) -> None:
    """figures/: TI and perplexity against BWT and the tau sweep (at the config's learning rate), the
    learning-rate control when swept, and the token perplexity of each training set."""
    figures = run.figures_dir
    at_config_rate = {**results, "methods": {n: m for n, m in results["methods"].items()
                                             if m.get("lr_scale", 1.0) == 1.0}}
    _figure(plot_ti_vs_bwt, at_config_rate, figures / "ti_vs_bwt.png")
    _figure(plot_ppl_vs_bwt, at_config_rate, figures / "ppl_vs_bwt.png")
    _figure(plot_tau_sweep, at_config_rate, figures / "tau_sweep.png")
    if has_lr_sweep(results):
        _figure(plot_lr_control, results, figures / "lr_control.png")
    _figure(plot_histogram, {SOURCE_LABELS[s]: load_scores(run.scores_file(s)) for s in plan["sources"]},
            figures / "token_ppl_hist.png")


def _figure(plot, data, path: Path) -> None:
    """Draw one figure; a figure that cannot be drawn is logged and left out, never the report with it."""
    try:
        plot(data, path)
    except Exception as err:  # noqa: BLE001  (matplotlib raises many kinds; the numbers are already saved)
        logger.warning("figure %s not drawn (%s: %s); results.json and the report are written without it",
                       path.name, type(err).__name__, err)
        import matplotlib.pyplot as plt

        plt.close("all")


@dataclass
class ReportConfig:
    """Options of `robust-sft report RUN_DIR`."""

    run_dir: str = field(metadata={"help": "Directory of a run (`robust-sft run` / `demo`)."})


def report(config: ReportConfig) -> dict:
    """`robust-sft report`: `write_report` of `config.run_dir`, from its files alone."""
    return write_report(config.run_dir)
