"""`robust-sft analyze RUN_DIR`: how far each fine-tune moved the model, and whether that predicts forgetting.

For every trained (variant, seed) of a run, on the model the evaluation used (`final/`, the selected epoch):
  delta-W          the weight update (fine-tuned minus base) per weight matrix: Frobenius norm, per layer, total
  effective rank   of each delta-W: exp of the entropy of its normalised singular values (Roy & Vetterli 2007)
  loss curve       the logged training loss, and its last value at the selected step
  KL to base       mean over the GT answer tokens of KL(p_finetuned || p_base) of the next-token distribution
and, over all units, the Spearman correlation of BWT with each measure. Results are cached per unit (keyed by
the trained model's stage key and the options), so a second call computes only what changed.

The measures are computed by weights.py (delta-W, effective rank), kl.py (KL to base) and loss.py, their maths in
measures.py; the figures are plots.py's. This module measures one unit and a whole run, and correlates.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass, field
from pathlib import Path

from robust_sft.analysis.kl import kl_to_base
from robust_sft.analysis.loss import final_train_loss, loss_curve, selected_step
from robust_sft.analysis.measures import MEASURE_LABELS, MEASURES, finite, summarize_matrices
from robust_sft.analysis.plots import plot_layer_norms, plot_loss_curves, plot_mechanism
from robust_sft.analysis.weights import adapter_deltas, full_deltas
from robust_sft.core.artifacts import write_json
from robust_sft.core.hashing import stable_hash
from robust_sft.core.rundir import RunDir, task_file_name
from robust_sft.evaluation.metrics import average_ranks, spearman, within_group_correlation
from robust_sft.models.loading import is_adapter

# Re-exported: the measures' names as this module always offered them (study, README); the rank correlation is
# evaluation.metrics' (one Spearman for the analysis, the inspect page and the study).
__all__ = ["ANALYSIS_VERSION", "AnalyzeConfig", "MEASURES", "MEASURE_LABELS", "analysis_units", "analyze",
           "analyze_run", "analyze_unit", "measure_unit",
           "average_ranks", "correlations", "find_units", "plot_layer_norms", "plot_loss_curves", "plot_mechanism",
           "spearman"]

logger = logging.getLogger(__name__)

ANALYSIS_VERSION = 2  # part of every unit's cache key: bump when a measure's definition changes (2: KL on the
# other tasks' prompts)


# --------------------------------------------------------------------------------------------- one unit


def analyze_unit(model_dir: str | Path, scores_path: str | Path, kl_limit: int | None = None,
                 progress: bool = True, other_answers: dict[str, Path] | None = None) -> dict:
    """Every measure of one trained model directory (models/<variant>/seed<k>); `other_answers`: the base
    model's sample logs of the other tasks, for the KL on their prompts."""
    model_dir = Path(model_dir)
    summary = json.loads((model_dir / "train_summary.json").read_text())
    config = summary["config"]
    base, final = config["model"], model_dir / "final"
    if is_adapter(final):
        matrices, left_out = adapter_deltas(final, base)
        compared = "the adapted linear layers (merged LoRA/DoRA update)"
    else:
        matrices, left_out = full_deltas(final, base)
        compared = "every 2-D weight both models store (embeddings and lm_head included)"
    curve = loss_curve(model_dir / "loss_log.jsonl") if (model_dir / "loss_log.jsonl").exists() else []
    step = selected_step(summary.get("best_checkpoint"))
    return {
        "finetuning": config.get("finetuning"),
        "base_model": base,
        "training_data": config.get("data"),
        "matrices_compared": compared,
        "tensors_left_out": left_out,
        **summarize_matrices(matrices),
        **kl_to_base(final, base, scores_path, kl_limit, progress, other_answers),
        "selected_step": step,
        "final_train_loss": final_train_loss(curve, step),
        "loss_curve": curve,
        "matrices": matrices,
    }


# --------------------------------------------------------------------------------------------- the run


def find_units(run: RunDir) -> tuple[list[tuple[str, int, Path]], list[dict]]:
    """(variant, seed, model dir) of every finished training the run's plan.json names, in its order, with its
    weights or with measures made while they existed (analyze_units); and the units left out, with why."""
    units, skipped = [], []
    plan = run.read_plan()
    for variant in plan["variants"]:
        for seed in plan["seeds"]:
            name, model_dir = variant["name"], run.model_dir(variant["name"], seed)
            if not (model_dir / "stage_key.json").exists():
                skipped.append({"variant": name, "seed": seed, "reason": "training not finished"})
            elif not run.final_model_dir(name, seed).is_dir() and not run.analysis_cache_file(name, seed).exists():
                skipped.append({"variant": name, "seed": seed, "reason": "weights removed before they were measured"})
            else:
                units.append((name, seed, model_dir))
    return units, skipped


def unit_key(model_dir: Path, scores_path: Path, kl_limit: int | None,
             other_answers: dict[str, Path] | None = None) -> str:
    scores_key = scores_path.with_name(scores_path.name + ".key.json")
    scores_id = scores_key.read_text() if scores_key.exists() else [scores_path.stat().st_size,
                                                                     scores_path.stat().st_mtime_ns]
    answers = {task: stable_hash(path.read_text()) for task, path in (other_answers or {}).items()}
    return stable_hash([ANALYSIS_VERSION, (model_dir / "stage_key.json").read_text(), scores_id, kl_limit, answers])


def base_answer_logs(run: RunDir) -> dict[str, Path]:
    """The base model's sample log of each other task the run evaluated (eval/base/<task>.jsonl)."""
    logs = {task: run.base_eval_dir / f"{task_file_name(task)}.jsonl" for task in run.read_plan()["others"]}
    return {task: path for task, path in logs.items() if path.exists()}


def cached_row(cache: Path, key: str) -> dict | None:
    """A unit's stored measures when they were made for `key`; an unreadable file counts as none."""
    try:
        stored = json.loads(cache.read_text())
    except (OSError, ValueError):
        return None
    return stored.get("row") if isinstance(stored, dict) and stored.get("key") == key else None


def measure_unit(run: RunDir, variant: str, seed: int, kl_limit: int | None, progress: bool = False,
                 other_answers: dict[str, Path] | None = None) -> tuple[dict, bool]:
    """One trained unit's measures, from RUN_DIR/analysis/ when made for the same model, data and limit, else
    measured from its `final/` weights and cached there; and whether they were measured now."""
    model_dir, scores_path = run.model_dir(variant, seed), run.scores_file("gt")
    other_answers = base_answer_logs(run) if other_answers is None else other_answers
    cache = run.analysis_cache_file(variant, seed)
    key = unit_key(model_dir, scores_path, kl_limit, other_answers)
    row = cached_row(cache, key)
    if row is not None:
        return row, False
    logger.info("[analyze] %s seed %d", variant, seed)
    try:
        row = analyze_unit(model_dir, scores_path, kl_limit, progress, other_answers)
    except (OSError, ValueError, KeyError) as err:  # the units measured so far stay cached
        raise ValueError(f"analyze {variant} seed {seed} ({model_dir}): {err}") from err
    write_json(cache, {"key": key, "row": row})
    return row, True


def analyze_run(run_dir: str | Path, kl_limit: int | None = None, progress: bool = True,
                out: str | Path | None = None) -> dict:
    """`robust-sft analyze RUN_DIR`: measures of every unit (cached in RUN_DIR/analysis/), their correlations
    with BWT, RUN_DIR/analysis.json (or `out`) and RUN_DIR/figures/{mechanism_scatter,delta_norm_per_layer,
    loss_curves}.png."""
    from tqdm.auto import tqdm

    run = RunDir(run_dir)
    run_dir = run.root
    scores_path = run.scores_file("gt")
    if not run.models_dir.is_dir():
        raise FileNotFoundError(f"{run_dir}: no models/ directory (not a run directory, or nothing trained yet)")
    if not scores_path.exists():
        raise FileNotFoundError(f"{run_dir}: no scores/gt.parquet (the target's training set, for the KL)")
    if kl_limit is not None and kl_limit < 1:
        raise ValueError(f"kl_limit must be at least 1 (or unset), not {kl_limit}")
    methods = run.read_results()["methods"] if run.results_file.exists() else {}
    units, skipped = find_units(run)
    other_answers = base_answer_logs(run)
    analysed: dict[str, dict] = {}
    computed = 0
    for variant, seed, model_dir in tqdm(units, desc="analyze", disable=not progress):
        row, measured = measure_unit(run, variant, seed, kl_limit, progress, other_answers)
        computed += measured
        outcome = methods.get(variant, {}).get("seeds", {}).get(str(seed), {})
        extra = {k: outcome[k] for k in ("ti", "bwt", "target_accuracy") if k in outcome}
        extra["method"] = methods.get(variant, {}).get("method", variant)  # lr_sweep variants share their method
        source = methods.get(variant, {}).get("source") or Path(row.get("training_data") or "").stem or None
        entry = analysed.setdefault(variant, {"source": source, "seeds": {}})
        entry["seeds"][str(seed)] = {**row, **extra}
    analysis = {
        "schema": "robust-sft/analysis/v1",
        "run_dir": str(run_dir),
        "kl_data": str(scores_path),
        "kl_limit": kl_limit,
        "methods": analysed,
        "skipped": skipped,
        "correlations": correlations(analysis_units(analysed)),
        "computed_units": computed,  # units measured by this call (the others came from the cache)
    }
    write_json(out or run.analysis_file, analysis)
    rows = analysis_units(analysed)
    figures = run.figures_dir
    plot_mechanism(rows, figures / "mechanism_scatter.png", analysis["correlations"])
    plot_layer_norms(rows, figures / "delta_norm_per_layer.png")
    plot_loss_curves(rows, figures / "loss_curves.png")
    return analysis


def analysis_units(methods: dict) -> list[dict]:
    """The analysis.json `methods` as a flat list of rows, each with its variant as "label" and its seed."""
    return [{**row, "label": variant, "seed": int(seed)}
            for variant, entry in methods.items() for seed, row in entry["seeds"].items()]


def correlations(units: list[dict], measures=MEASURES, factors: tuple[str, ...] = ("method",)) -> dict:
    """Per measure, over the units that have it and BWT: Spearman rho pooled (n of them), and `within`, the
    correlation inside groups of `factors` (each method along its learning rates and seeds; a study adds the
    setting), where what separates methods or settings cannot make the relation."""
    out = {}
    for measure in measures:
        kept = [u for u in units if finite(u.get(measure)) and finite(u.get("bwt"))]
        xs, ys = [u[measure] for u in kept], [u["bwt"] for u in kept]
        r, n, groups = within_group_correlation(xs, ys, [tuple(u.get(f) for f in factors) for u in kept])
        out[measure] = {"rho": spearman(xs, ys) if kept else None, "n": len(kept),
                        "within": {"r": r, "n": n, "groups": groups, "factors": list(factors)}}
    return out


@dataclass
class AnalyzeConfig:
    """Options of `robust-sft analyze RUN_DIR`."""

    run_dir: str = field(metadata={"help": "Directory of a run (`robust-sft run` / `demo`)."})
    kl_limit: int | None = field(
        default=None, metadata={"help": "KL to the base on the first N GT training examples and on the base's "
                                        "answers to the first N test prompts of each other task (default: all)."})
    out: str | None = field(default=None, metadata={"help": "Where to write analysis.json (default: RUN_DIR)."})


def analyze(config: AnalyzeConfig) -> dict:
    """`robust-sft analyze`: `analyze_run` with the verb's options."""
    return analyze_run(config.run_dir, kl_limit=config.kl_limit, out=config.out)
