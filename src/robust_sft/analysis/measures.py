"""The mechanism measures' maths, pure: effective rank of a matrix's singular values, the merged LoRA/DoRA
update, KL between two next-token distributions, per-layer totals of the per-matrix norms. torch is imported
by the functions that take tensors (its start-up cost is not for the callers of the numpy ones)."""

from __future__ import annotations

import math
import re

import numpy as np

MEASURES = ("delta_norm_total", "effective_rank_mean", "kl_to_base", "kl_other_prompts", "final_train_loss")
MEASURE_LABELS = {
    "delta_norm_total": "||delta W|| (Frobenius, all matrices)",
    "effective_rank_mean": "effective rank of delta W (mean over matrices)",
    "kl_to_base": "KL(finetuned || base) per GT answer token (nats)",
    "kl_other_prompts": "KL(finetuned || base) per token of the base's answers to the other tasks (nats)",
    "final_train_loss": "final training loss",
}


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


def finite(value) -> bool:
    return isinstance(value, (int, float)) and math.isfinite(value)
