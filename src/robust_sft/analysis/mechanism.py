"""`robust-sft analyze RUN_DIR`: how far each fine-tune moved the model, and whether that predicts forgetting.

For every trained (variant, seed) of a run, on the model the evaluation used (`final/`, the selected epoch):
  delta-W          the weight update (fine-tuned minus base) per weight matrix: Frobenius norm, per layer, total
  effective rank   of each delta-W: exp of the entropy of its normalised singular values (Roy & Vetterli 2007)
  loss curve       the logged training loss, and its last value at the selected step
  KL to base       mean over the GT answer tokens of KL(p_finetuned || p_base) of the next-token distribution
and, over all units, the Spearman correlation of BWT with each measure. Results are cached per unit (keyed by
the trained model's stage key and the options), so a second call computes only what changed.

Memory: a LoRA delta is computed from the adapter's two thin factors alone (no base weights); DoRA reads each
base matrix it needs lazily from the base model's safetensors; a full fine-tune is compared tensor by tensor.
"""

from __future__ import annotations

import contextlib
import json
import logging
import math
import re
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from robust_sft.core.artifacts import write_json
from robust_sft.core.figures import save_figure
from robust_sft.evaluation.metrics import average_ranks, spearman  # noqa: F401 (average_ranks: public here too)
from robust_sft.models.loading import adapter_config, is_adapter

logger = logging.getLogger(__name__)

ANALYSIS_VERSION = 1  # part of every unit's cache key: bump when a measure's definition changes
MEASURES = ("delta_norm_total", "effective_rank_mean", "kl_to_base", "final_train_loss")
MEASURE_LABELS = {
    "delta_norm_total": "||delta W|| (Frobenius, all matrices)",
    "effective_rank_mean": "effective rank of delta W (mean over matrices)",
    "kl_to_base": "KL(finetuned || base) per GT answer token (nats)",
    "final_train_loss": "final training loss",
}
KL_BATCH_TOKENS = 8192  # padded tokens per forward pass
KL_CHUNK_BYTES = 256 << 20  # float32 logits materialised at once per model


# --------------------------------------------------------------------------------------------- maths (pure)


def effective_rank(singular_values) -> float:
    """exp(H(p)) with p_i = s_i / sum(s): 1 for a rank-1 matrix, n for n equal singular values; 0 for a zero matrix."""
    s = np.asarray(singular_values, dtype=np.float64)
    s = s[s > 0]
    if s.size == 0:
        return 0.0
    p = s / s.sum()
    return float(np.exp(-(p * np.log(p)).sum()))


def lora_scaling(alpha: float, r: int, use_rslora: bool = False) -> float:
    """PEFT's LoRA scaling: alpha / r, or alpha / sqrt(r) with rank-stabilised LoRA."""
    return alpha / math.sqrt(r) if use_rslora else alpha / r


def low_rank_singular_values(lora_a, lora_b, scaling: float):
    """Singular values of scaling * B @ A without forming it: B = Qb Rb, A^T = Qa Ra, so the product is
    Qb (scaling Rb Ra^T) Qa^T, and its singular values are those of the r x r core (float64)."""
    import torch

    _, r_b = torch.linalg.qr(lora_b.double())
    _, r_a = torch.linalg.qr(lora_a.double().T)
    return torch.linalg.svdvals(scaling * r_b @ r_a.T)


def dora_delta(base_weight, lora_a, lora_b, magnitude, scaling: float):
    """Merged DoRA update m * (W + s B A) / ||W + s B A||_row - W, as PEFT merges it (norm over each output row)."""
    import torch

    weight = base_weight.float()
    directed = weight + scaling * (lora_b.float() @ lora_a.float())
    norm = torch.linalg.norm(directed, dim=1)
    return (magnitude.float() / norm)[:, None] * directed - weight


def kl_rows(logits_p, logits_q):
    """KL(p || q) in nats for each row of two [rows, vocab] logit tensors (float32)."""
    import torch

    log_p = torch.log_softmax(logits_p.float(), dim=-1)
    log_q = torch.log_softmax(logits_q.float(), dim=-1)
    return (log_p.exp() * (log_p - log_q)).sum(-1)


LAYER = re.compile(r"(?:^|\.)layers\.(\d+)\.")


def layer_index(name: str) -> int | None:
    """The transformer layer of a parameter name (model.layers.N....), None for embeddings, lm_head, ..."""
    match = LAYER.search(name)
    return int(match.group(1)) if match else None


def summarize_matrices(matrices: dict[str, dict]) -> dict:
    """Totals over per-matrix {norm, effective_rank}: sqrt of summed squares per layer and overall; rank means."""
    norms = {name: m["norm"] for name, m in matrices.items()}
    layers = [layer_index(name) for name in norms]
    n_layers = max([i for i in layers if i is not None], default=-1) + 1
    per_layer = [0.0] * n_layers
    other = 0.0
    for (name, norm), layer in zip(norms.items(), layers):
        if layer is None:
            other += norm**2
        else:
            per_layer[layer] += norm**2
    ranks = np.array([m["effective_rank"] for m in matrices.values()], dtype=np.float64)
    weights = np.array(list(norms.values()), dtype=np.float64)
    return {
        "delta_norm_total": math.sqrt(sum(n**2 for n in norms.values())),
        "delta_norm_per_layer": [math.sqrt(v) for v in per_layer],
        "delta_norm_outside_layers": math.sqrt(other),
        "effective_rank_mean": float(ranks.mean()) if len(ranks) else None,
        "effective_rank_weighted": float((ranks * weights).sum() / weights.sum()) if weights.sum() > 0 else None,
    }


# --------------------------------------------------------------------------------------------- tensors on disk


def local_model_dir(name_or_path: str | Path) -> Path:
    """The directory of a model's files: the path itself, or the Hub cache's snapshot of a model name (offline)."""
    if Path(name_or_path).is_dir():
        return Path(name_or_path)
    from huggingface_hub import snapshot_download

    try:
        return Path(snapshot_download(str(name_or_path), local_files_only=True))
    except (OSError, ValueError) as err:
        raise FileNotFoundError(f"{name_or_path}: neither a directory nor a model in the Hugging Face cache "
                                f"({type(err).__name__})") from None


@contextlib.contextmanager
def open_weights(model_dir: str | Path):
    """A name -> tensor reader over a model's safetensors (one file or sharded); loads one tensor per call."""
    from safetensors import safe_open

    model_dir = local_model_dir(model_dir)
    index = model_dir / "model.safetensors.index.json"
    if index.exists():
        weight_map = json.loads(index.read_text())["weight_map"]
        files = sorted(set(weight_map.values()))
    elif (model_dir / "model.safetensors").exists():
        files, weight_map = ["model.safetensors"], None
    else:
        raise FileNotFoundError(f"{model_dir}: no model.safetensors(.index.json): cannot read the weights lazily")
    with contextlib.ExitStack() as stack:
        handles = {f: stack.enter_context(safe_open(str(model_dir / f), framework="pt")) for f in files}
        if weight_map is None:
            weight_map = {key: files[0] for key in handles[files[0]].keys()}
        yield _Weights(handles, weight_map, model_dir)


class _Weights:
    def __init__(self, handles, weight_map: dict[str, str], model_dir: Path):
        self.handles, self.weight_map, self.model_dir = handles, weight_map, model_dir

    def keys(self) -> list[str]:
        return list(self.weight_map)

    def __contains__(self, key: str) -> bool:
        return key in self.weight_map

    def get(self, key: str):
        if key not in self.weight_map:
            raise KeyError(f"{self.model_dir}: no tensor {key!r}")
        return self.handles[self.weight_map[key]].get_tensor(key)


def _matrix_entry(norm: float, singular_values, shape) -> dict:
    return {"norm": float(norm), "effective_rank": effective_rank(singular_values), "shape": list(shape)}


def adapter_deltas(adapter_dir: str | Path, base_dir: str | Path) -> tuple[dict[str, dict], list[str]]:
    """{matrix name: {norm, effective_rank, shape}} of a LoRA/DoRA adapter's merged update, and the names of the
    adapter's other tensors, left out (e.g. modules_to_save copies, LoRA on embeddings).

    LoRA: from the adapter's factors only (the r x r core gives both norm and singular values). DoRA: the
    merged update depends on the base matrix, read alone from the base model's files.
    """
    import torch
    from peft.utils.other import get_pattern_key
    from safetensors import safe_open

    adapter_dir = Path(adapter_dir)
    config = adapter_config(adapter_dir)
    with safe_open(str(adapter_dir / "adapter_model.safetensors"), framework="pt") as f:
        tensors = {key: f.get_tensor(key) for key in f.keys()}
    modules = sorted({k[: -len(".lora_A.weight")] for k in tensors if k.endswith(".lora_A.weight")})
    if not modules:
        raise ValueError(f"{adapter_dir}: no lora_A weights in adapter_model.safetensors")
    out = {}
    with open_weights(base_dir) if config.get("use_dora") else contextlib.nullcontext() as base:
        for module in modules:
            name = module.removeprefix("base_model.model.")  # the module's name in the base model
            lora_a, lora_b = tensors[f"{module}.lora_A.weight"].float(), tensors[f"{module}.lora_B.weight"].float()
            r = config.get("rank_pattern", {}).get(get_pattern_key(config.get("rank_pattern", {}), name), config["r"])
            alpha = config.get("alpha_pattern", {}).get(
                get_pattern_key(config.get("alpha_pattern", {}), name), config["lora_alpha"])
            if r != lora_a.shape[0]:
                raise ValueError(f"{adapter_dir}: {module} has rank {lora_a.shape[0]} but the config says {r}")
            scaling = lora_scaling(alpha, r, config.get("use_rslora", False))
            shape = (lora_b.shape[0], lora_a.shape[1])
            if config.get("fan_in_fan_out"):  # Conv1D-style weights are stored [in, out]
                shape = shape[::-1]
            magnitude_key = f"{module}.lora_magnitude_vector"
            if config.get("use_dora"):
                weight = base.get(f"{name}.weight").float()
                if config.get("fan_in_fan_out"):
                    raise ValueError(f"{adapter_dir}: DoRA with fan_in_fan_out is not supported by analyze")
                delta = dora_delta(weight, lora_a, lora_b, tensors[magnitude_key], scaling)
                out[f"{name}.weight"] = _matrix_entry(torch.linalg.norm(delta), torch.linalg.svdvals(delta), shape)
            else:
                singular_values = low_rank_singular_values(lora_a, lora_b, scaling)
                # ||delta||_F = sqrt(sum s^2): the core has all of the product's singular values.
                out[f"{name}.weight"] = _matrix_entry(torch.linalg.norm(singular_values), singular_values, shape)
    used = {f"{m}.{part}" for m in modules for part in ("lora_A.weight", "lora_B.weight", "lora_magnitude_vector")}
    return out, sorted(set(tensors) - used)


def full_deltas(finetuned_dir: str | Path, base_dir: str | Path) -> tuple[dict[str, dict], list[str]]:
    """Per-matrix update of a full fine-tune, one tensor pair in memory at a time.

    Every 2-D tensor both models store is compared (embeddings and lm_head included); returns the entries and
    the names of the tensors left out (1-D norms/biases, or stored by one model only, e.g. a tied lm_head).
    """
    import torch

    out, left_out = {}, []
    with open_weights(finetuned_dir) as tuned, open_weights(base_dir) as base:
        for key in sorted(set(tuned.keys()) | set(base.keys())):
            if key not in tuned or key not in base:
                left_out.append(key)
                continue
            after = tuned.get(key)
            if after.ndim != 2:
                left_out.append(key)
                continue
            before = base.get(key)
            if before.shape != after.shape:
                raise ValueError(f"{finetuned_dir}: {key} has shape {tuple(after.shape)} but the base's is "
                                 f"{tuple(before.shape)} ({base_dir})")
            delta = after.float() - before.float()
            out[key] = _matrix_entry(torch.linalg.norm(delta), torch.linalg.svdvals(delta), delta.shape)
    return out, left_out


# --------------------------------------------------------------------------------------------- KL to the base


def _decoder_and_head(model):
    base = model.get_base_model() if hasattr(model, "get_base_model") else model
    return base.get_decoder(), base.get_output_embeddings()


def _predicting_features(model, fast: bool, ids, attention, positions):
    """Per position, what predicts the next token: the last hidden state (fast) or the model's logits."""
    mask = None if bool(attention.all()) else attention  # no padding: attention's fast causal path
    if fast:
        decoder = _decoder_and_head(model)[0]
        return decoder(input_ids=ids, attention_mask=mask, position_ids=positions).last_hidden_state
    return model(input_ids=ids, attention_mask=mask, position_ids=positions).logits


def kl_to_base(final_dir: str | Path, base_dir: str | Path, scores_path: str | Path, limit: int | None = None,
               progress: bool = True) -> dict:
    """Mean KL(p_finetuned || p_base) over the answer tokens GT training trains on (the first `limit` examples).

    An adapter runs as one model: the base's logits come from the same weights with the adapter disabled.
    A full fine-tune needs the base loaded beside it: two models' memory.
    """
    import torch
    from tqdm.auto import tqdm

    from robust_sft.masking.policies import IGNORE_INDEX, MaskPolicy
    from robust_sft.models.loading import load_model, load_tokenizer
    from robust_sft.scoring.token_nll import TokenScorer, logit_postprocessor, pad_batch, plan_batches
    from robust_sft.training.trainer import load_training_data

    final_dir = Path(final_dir)
    tokenizer = load_tokenizer(str(base_dir))
    data = load_training_data(str(scores_path), MaskPolicy(kind="none"), tokenizer)
    input_ids, labels = data.input_ids[:limit], data.labels[:limit]
    if is_adapter(final_dir):
        model = load_model(str(base_dir), dtype="float32", device="cpu", adapter=str(final_dir))
        states = [(model, contextlib.nullcontext), (model, model.disable_adapter)]
    else:
        states = [(load_model(str(final_dir), dtype="float32", device="cpu"), contextlib.nullcontext),
                  (load_model(str(base_dir), dtype="float32", device="cpu"), contextlib.nullcontext)]
    # Decoder + LM head at the answer positions only, when that reproduces the model's logits (checked once).
    fast = TokenScorer(states[0][0]).fast
    post = logit_postprocessor(states[0][0].config)
    rows_per_chunk = max(1, KL_CHUNK_BYTES // (4 * states[0][0].config.get_text_config().vocab_size))
    total, tokens = 0.0, 0
    batches = plan_batches([len(x) for x in input_ids], KL_BATCH_TOKENS, 64)
    with torch.no_grad():
        for batch in tqdm(batches, desc="KL to base", disable=not progress, leave=False):
            ids, attention, positions, trained = pad_batch(
                [input_ids[i].tolist() for i in batch], [(labels[i] != IGNORE_INDEX).tolist() for i in batch],
                tokenizer.pad_token_id)
            trained[:, 0] = False  # the first token has no context (never trained either)
            rows, cols = trained.nonzero(as_tuple=True)
            features = []
            for model, context in states:
                with context():
                    features.append(_predicting_features(model, fast, ids, attention, positions)[rows, cols - 1])
            for start in range(0, len(rows), rows_per_chunk):
                logits = []
                for (model, context), f in zip(states, features):
                    with context():
                        chunk = f[start : start + rows_per_chunk]
                        logits.append(post(_decoder_and_head(model)[1](chunk)) if fast else chunk)
                total += float(kl_rows(*logits).sum())
            tokens += len(rows)
    return {"kl_to_base": total / tokens if tokens else None, "kl_tokens": tokens, "kl_examples": len(input_ids)}


# --------------------------------------------------------------------------------------------- training loss


def loss_curve(loss_log: str | Path) -> list[dict]:
    """(step, epoch, loss) of every training-loss row the Trainer logged."""
    rows = []
    path = Path(loss_log)
    for lineno, line in enumerate(path.read_text().splitlines(), start=1):
        if not line.strip():
            continue
        try:
            entry = json.loads(line)
        except ValueError as err:
            raise ValueError(f"{path}:{lineno}: not JSON ({err})") from None
        if "loss" in entry and "step" in entry:
            rows.append({"step": entry["step"], "epoch": entry.get("epoch"), "loss": entry["loss"]})
    return rows


def selected_step(best_checkpoint: str | None) -> int | None:
    """The step of the checkpoint kept as final/ (checkpoint-N), None when the last step was kept."""
    if not best_checkpoint:
        return None
    tail = Path(best_checkpoint).name.rpartition("-")[2]
    return int(tail) if tail.isdigit() else None


def final_train_loss(curve: list[dict], step: int | None) -> float | None:
    """The last logged training loss at or before the selected step (the last one when no epoch was selected)."""
    kept = [row["loss"] for row in curve if step is None or row["step"] <= step]
    return kept[-1] if kept else None


# --------------------------------------------------------------------------------------------- one unit


def analyze_unit(model_dir: str | Path, scores_path: str | Path, kl_limit: int | None = None,
                 progress: bool = True) -> dict:
    """Every measure of one trained model directory (models/<variant>/seed<k>)."""
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
        **kl_to_base(final, base, scores_path, kl_limit, progress),
        "selected_step": step,
        "final_train_loss": final_train_loss(curve, step),
        "loss_curve": curve,
        "matrices": matrices,
    }


# --------------------------------------------------------------------------------------------- the run


def find_units(run_dir: Path) -> tuple[list[tuple[str, int, Path]], list[dict]]:
    """(variant, seed, model dir) of every finished training in the run, in the config's order; and the skipped."""
    from robust_sft.experiment.runner import ExperimentConfig, plan_variants

    order: list[str] = []
    try:
        order = [v.name for v in plan_variants(ExperimentConfig(**json.loads((run_dir / "config.json").read_text())))]
    except (OSError, ValueError, TypeError) as err:  # no or an older config: units in name order then
        logger.info("%s/config.json unreadable (%s): units in name order", run_dir, err)
    units, skipped = [], []
    for seed_dir in sorted((run_dir / "models").glob("*/seed*")):
        if not seed_dir.name[4:].isdigit():
            continue
        variant, seed = seed_dir.parent.name, int(seed_dir.name[4:])
        if not (seed_dir / "stage_key.json").exists() or not (seed_dir / "final").is_dir():
            skipped.append({"variant": variant, "seed": seed, "reason": "training not finished"})
            continue
        units.append((variant, seed, seed_dir))
    rank = {name: i for i, name in enumerate(order)}
    units.sort(key=lambda u: (rank.get(u[0], len(rank)), u[0], u[1]))
    return units, skipped


def unit_key(model_dir: Path, scores_path: Path, kl_limit: int | None) -> str:
    from robust_sft.experiment.runner import stable_hash

    scores_key = scores_path.with_name(scores_path.name + ".key.json")
    scores_id = scores_key.read_text() if scores_key.exists() else [scores_path.stat().st_size,
                                                                     scores_path.stat().st_mtime_ns]
    return stable_hash([ANALYSIS_VERSION, (model_dir / "stage_key.json").read_text(), scores_id, kl_limit])


def cached_row(cache: Path, key: str) -> dict | None:
    """A unit's stored measures when they were made for `key`; an unreadable file counts as none."""
    try:
        stored = json.loads(cache.read_text())
    except (OSError, ValueError):
        return None
    return stored.get("row") if isinstance(stored, dict) and stored.get("key") == key else None


def analyze_run(run_dir: str | Path, kl_limit: int | None = None, progress: bool = True,
                out: str | Path | None = None) -> dict:
    """`robust-sft analyze RUN_DIR`: measures of every unit (cached in RUN_DIR/analysis/), their correlations
    with BWT, RUN_DIR/analysis.json (or `out`) and RUN_DIR/figures/{mechanism_scatter,delta_norm_per_layer,
    loss_curves}.png."""
    from tqdm.auto import tqdm

    run_dir = Path(run_dir)
    scores_path = run_dir / "scores" / "gt.parquet"
    if not (run_dir / "models").is_dir():
        raise FileNotFoundError(f"{run_dir}: no models/ directory (not a run directory, or nothing trained yet)")
    if not scores_path.exists():
        raise FileNotFoundError(f"{run_dir}: no scores/gt.parquet (the target's training set, for the KL)")
    if kl_limit is not None and kl_limit < 1:
        raise ValueError(f"kl_limit must be at least 1 (or unset), not {kl_limit}")
    results_path = run_dir / "results.json"
    methods = json.loads(results_path.read_text())["methods"] if results_path.exists() else {}
    units, skipped = find_units(run_dir)
    analysed: dict[str, dict] = {}
    computed = 0
    for variant, seed, model_dir in tqdm(units, desc="analyze", disable=not progress):
        cache = run_dir / "analysis" / variant / f"seed{seed}.json"
        key = unit_key(model_dir, scores_path, kl_limit)
        row = cached_row(cache, key)
        if row is None:
            logger.info("[analyze] %s seed %d", variant, seed)
            try:
                row = analyze_unit(model_dir, scores_path, kl_limit, progress)
            except (OSError, ValueError, KeyError) as err:  # the units measured so far stay cached
                raise ValueError(f"analyze {variant} seed {seed} ({model_dir}): {err}") from err
            write_json(cache, {"key": key, "row": row})
            computed += 1
        outcome = methods.get(variant, {}).get("seeds", {}).get(str(seed), {})
        extra = {k: outcome[k] for k in ("ti", "bwt", "target_accuracy") if k in outcome}
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
    write_json(out or run_dir / "analysis.json", analysis)
    rows = analysis_units(analysed)
    figures = run_dir / "figures"
    plot_mechanism(rows, figures / "mechanism_scatter.png", analysis["correlations"])
    plot_layer_norms(rows, figures / "delta_norm_per_layer.png")
    plot_loss_curves(rows, figures / "loss_curves.png")
    return analysis


def analysis_units(methods: dict) -> list[dict]:
    """The analysis.json `methods` as a flat list of rows, each with its variant as "label" and its seed."""
    return [{**row, "label": variant, "seed": int(seed)}
            for variant, entry in methods.items() for seed, row in entry["seeds"].items()]


def correlations(units: list[dict], measures=MEASURES) -> dict:
    """Spearman rho of BWT with each measure over the units that have both (n of them)."""
    out = {}
    for measure in measures:
        pairs = [(u[measure], u["bwt"]) for u in units if _finite(u.get(measure)) and _finite(u.get("bwt"))]
        out[measure] = {"rho": spearman(*zip(*pairs)) if pairs else None, "n": len(pairs)}
    return out


def _finite(value) -> bool:
    return isinstance(value, (int, float)) and math.isfinite(value)


# --------------------------------------------------------------------------------------------- figures


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


def plot_mechanism(units: list[dict], path: str | Path, rhos: dict | None = None) -> Path:
    """One panel per measure: x = the measure, y = BWT, a colour per label; rho and n in each title."""
    plt = _pyplot()
    rhos = rhos or correlations(units)
    colours = _colours(units)
    fig, axes = plt.subplots(1, len(MEASURES), figsize=(4.2 * len(MEASURES), 4), squeeze=False)
    for ax, measure in zip(axes[0], MEASURES):
        for label, colour in colours.items():
            points = [(u[measure], u["bwt"]) for u in units
                      if u["label"] == label and _finite(u.get(measure)) and _finite(u.get("bwt"))]
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


@dataclass
class AnalyzeConfig:
    """Options of `robust-sft analyze RUN_DIR`."""

    run_dir: str = field(metadata={"help": "Directory of a run (`robust-sft run` / `demo`)."})
    kl_limit: int | None = field(
        default=None, metadata={"help": "KL to the base on the first N GT training examples (default: all)."})
    out: str | None = field(default=None, metadata={"help": "Where to write analysis.json (default: RUN_DIR)."})


def analyze(config: AnalyzeConfig) -> dict:
    """`robust-sft analyze`: `analyze_run` with the verb's options."""
    return analyze_run(config.run_dir, kl_limit=config.kl_limit, out=config.out)
