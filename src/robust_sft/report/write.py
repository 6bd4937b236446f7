"""results.json, report.md and figures from an experiment's artifacts.

Every number here is read from the run directory (scores, train summaries, evaluation accuracies);
the claims of the paper are then judged from those numbers by fixed, stated criteria.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass, field
from pathlib import Path

from robust_sft.core.artifacts import write_json, write_text
from robust_sft.report.figures import has_lr_sweep, plot_lr_control, plot_ppl_vs_bwt, plot_tau_sweep, plot_ti_vs_bwt
from robust_sft.report.markdown import SOURCE_LABELS, render_markdown
from robust_sft.report.results import collect_results, eval_accuracies, read_json

logger = logging.getLogger(__name__)


def write_report(exp, costs: dict[str, float]) -> dict:
    """results.json, report.md, figures/, the inspect pages of the training sets and report.html."""
    from robust_sft.report.html import write_inspect_pages, write_report_html
    from robust_sft.scoring.stats import plot_histogram
    from robust_sft.scoring.token_nll import load_scores

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
        costs[source] = read_json(report)["seconds"] if report.exists() else 0.0
        timing = run_dir / "scores" / f"{source}.parquet.seconds.json"
        if timing.exists():
            costs[f"score_{source}"] = read_json(timing)["seconds"]
    return costs


def load_run(run_dir: str | Path):
    """The experiment of a finished run directory (config.json + its artifacts), without loading any model."""
    import pyarrow.parquet as pq

    from robust_sft.core.artifacts import METADATA_KEY
    from robust_sft.experiment.runner import Experiment, ExperimentConfig

    run_dir = Path(run_dir)
    for needed in ("config.json", "eval/base/accuracies.json", "scores/gt.parquet"):
        if not (run_dir / needed).exists():
            raise FileNotFoundError(f"{run_dir}: not a finished run directory (no {needed})")
    exp = Experiment(ExperimentConfig(**read_json(run_dir / "config.json")), run_dir, progress=False)
    # The base model and the task list as the run resolved them (the organism's path, its other tasks).
    exp.base = json.loads(pq.read_schema(exp.scores_path("gt")).metadata[METADATA_KEY])["model"]
    evaluated = list(eval_accuracies(run_dir / "eval" / "base"))
    exp.tasks = [exp.config.target, *[t for t in evaluated if t != exp.config.target]]
    return exp


def rebuild_report(run_dir: str | Path) -> dict:
    """`robust-sft report RUN_DIR`: every report artifact again, from the run directory alone."""
    exp = load_run(run_dir)
    return write_report(exp, run_costs(exp.dir, exp.sources))


@dataclass
class ReportConfig:
    """Options of `robust-sft report RUN_DIR`."""

    run_dir: str = field(metadata={"help": "Directory of a run (`robust-sft run` / `demo`)."})


def report(config: ReportConfig) -> dict:
    """`robust-sft report`: `rebuild_report` of `config.run_dir`."""
    return rebuild_report(config.run_dir)
