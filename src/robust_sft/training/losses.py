"""Token losses as free functions: the mean NLL of the kept tokens, and the field's reweighted baselines DFT, EAFT
and InfoSFT; optional static per-token weights (the soft STM's) scale any of them."""

from __future__ import annotations

import math

from robust_sft.masking.policies import IGNORE_INDEX

EAFT_TOP_K = 20  # logits whose entropy approximates the full distribution's (as axolotl and LLaMA-Factory do)
INFOSFT_P = 0.93  # InfoSFT's P, the authors' default: tokens the model predicts with p >= P get no weight


def token_loss(logits, labels, kind: str = "nll", num_items_in_batch=None, weights=None, infosft_p: float = INFOSFT_P):
    """Loss over the tokens whose label is not -100 (labels are shifted here, as in HF causal LMs).

    nll: the usual token cross-entropy. dft: cross-entropy times the token's detached probability
    (Dynamic Fine-Tuning), which down-weights tokens the model finds unlikely, a soft cousin of STM.
    eaft: cross-entropy times the detached entropy of the model's top-k prediction divided by log k, so in
    [0, 1] (Entropy-Aware Fine-Tuning): a confident prediction that the label contradicts (low entropy, high
    loss) is down-weighted, an uncertain one trained fully. (axolotl's and LLaMA-Factory's EAFT use the raw
    top-20 entropy, up to log 20 = 3.0; dividing by log k keeps the learning rate's meaning.)
    infosft: cross-entropy times `infosft_weight` of the detached probability (InfoSFT).

    `weights` (aligned with `labels`, e.g. the soft STM's) multiply each token's loss; the loss is then the
    weighted sum divided by the sum of the weights of the trained tokens, so 0/1 weights give the plain mean over
    the tokens weighted 1. The normaliser is `num_items_in_batch` when the Trainer provides it (the token count,
    or with weights the weight sum, over every accumulated batch and device: exact under gradient accumulation).
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
    elif kind == "infosft":
        per_token = -log_probs * infosft_weight(log_probs.detach(), infosft_p)
    else:
        raise ValueError(f"unknown loss {kind!r}")
    if weights is None:
        denominator = num_items_in_batch if num_items_in_batch is not None else selected.sum().clamp(min=1)
        return per_token.sum() / denominator
    token_weights = weights[:, 1:][selected].to(per_token.dtype)
    if num_items_in_batch is None:
        num_items_in_batch = token_weights.sum()
    # An all-zero batch (every weight rounded to 0) trains nothing rather than dividing by 0.
    return (per_token * token_weights).sum() / torch.as_tensor(num_items_in_batch, dtype=per_token.dtype).clamp(
        min=torch.finfo(per_token.dtype).tiny)


def infosft_weight(log_p, p_max: float = INFOSFT_P):
    """InfoSFT's token weight (arXiv 2605.14967), as its authors' released loss computes it (the repository
    Helloworld10011/InfoSFT, training/infosft_loss.py; P = 0.93 is its default): with q = p(token),

        w(q) = q * max(0, 1 - logit(q) / logit(P)),   logit(q) = log(q / (1 - q)),

    i.e. w proportional to q (C - logit q) with C = logit P, clipped at 0 and divided by C. Tokens the model
    already predicts with q >= P get no weight; for small q, w is about q (DFT's weight) times
    1 + log(1/q) / logit(P). The gradient on the token's logit, w (1 - q), peaks at medium q: the "informative,
    medium-confidence" tokens. Like DFT, q is the model being trained (detached), not the base model's score.
    """
    import torch

    if not 0.5 < p_max < 1:
        raise ValueError(f"InfoSFT's P must be in (0.5, 1), not {p_max}")
    log_one_minus = torch.log(-torch.expm1(log_p))  # log(1 - q), exact for q near 1; -inf at q = 1 (weight 0)
    logit = log_p - log_one_minus
    return log_p.exp() * torch.relu(1 - logit / math.log(p_max / (1 - p_max)))


def normalized_top_k_entropy(logits, k: int):
    """Entropy of the softmax over each row's k largest logits, divided by log k (1 = uniform over k)."""
    import torch

    k = min(k, logits.shape[-1])
    if k < 2:
        return torch.zeros(logits.shape[:-1], dtype=logits.dtype, device=logits.device)
    log_p = torch.log_softmax(torch.topk(logits, k, dim=-1).values, dim=-1)
    return -(log_p.exp() * log_p).sum(-1) / math.log(k)
