"""Token losses as free functions: the mean NLL of the kept tokens, and the field's reweighted baselines DFT and EAFT."""

from __future__ import annotations

from robust_sft.masking.policies import IGNORE_INDEX

EAFT_TOP_K = 20  # logits whose entropy approximates the full distribution's (as axolotl and LLaMA-Factory do)


def token_loss(logits, labels, kind: str = "nll", num_items_in_batch=None):
    """Loss over the tokens whose label is not -100 (labels are shifted here, as in HF causal LMs).

    nll: the usual token cross-entropy. dft: cross-entropy times the token's detached probability
    (Dynamic Fine-Tuning), which down-weights tokens the model finds unlikely, a soft cousin of STM.
    eaft: cross-entropy times the detached entropy of the model's top-k prediction divided by log k, so in
    [0, 1] (Entropy-Aware Fine-Tuning): a confident prediction that the label contradicts (low entropy, high
    loss) is down-weighted, an uncertain one trained fully. (axolotl's and LLaMA-Factory's EAFT use the raw
    top-20 entropy, up to log 20 = 3.0; dividing by log k keeps the learning rate's meaning.)
    Normalised by `num_items_in_batch` when the Trainer provides it (exact under gradient accumulation).
    """
    import torch

    targets = labels[:, 1:]
    selected = targets != IGNORE_INDEX
    rows = logits[:, :-1][selected].float()  # only trained positions are upcast
    log_probs = torch.log_softmax(rows, dim=-1).gather(-1, targets[selected][:, None]).squeeze(-1)
    if kind == "nll":
        per_token = -log_probs
    elif kind == "dft":
        per_token = -log_probs * log_probs.detach().exp()
    elif kind == "eaft":
        per_token = -log_probs * normalized_top_k_entropy(rows.detach(), EAFT_TOP_K)
    else:
        raise ValueError(f"unknown loss {kind!r}")
    denominator = num_items_in_batch if num_items_in_batch is not None else selected.sum().clamp(min=1)
    return per_token.sum() / denominator


def normalized_top_k_entropy(logits, k: int):
    """Entropy of the softmax over each row's k largest logits, divided by log k (1 = uniform over k)."""
    import math

    import torch

    k = min(k, logits.shape[-1])
    if k < 2:
        return torch.zeros(logits.shape[:-1], dtype=logits.dtype, device=logits.device)
    log_p = torch.log_softmax(torch.topk(logits, k, dim=-1).values, dim=-1)
    return -(log_p.exp() * log_p).sum(-1) / math.log(k)
