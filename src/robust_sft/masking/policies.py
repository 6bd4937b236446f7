"""Token selection: which answer tokens stay in the loss.

Small pure functions over numpy arrays of one example (`nll` aligned with input_ids, `answer` = the
answer mask), each returning a boolean `keep` array (True = trained), plus `apply_policy` that runs a
policy over a whole score file. A masked token stays in the input; only its label becomes -100.

Policies:
- threshold: mask answer tokens with perplexity exp(nll) > tau (STM). tau = inf masks nothing (GT).
- ratio:     mask exactly the top `ratio` of answer tokens by perplexity across the dataset.
- lowest:    mask, in each example, as many tokens as STM would, but the lowest-perplexity ones.
- random:    mask, in each example, as many tokens as STM would, drawn at random among answer tokens,
             seeded by (seed, example id) so runs are reproducible and independent of order.
- dpf:       mask tokens whose perplexity fell by more than a factor `dpf_tau` after a first GT
             fine-tune (needs a second score file made with that fine-tuned model).
- stm_dpf:   mask a token when either threshold or dpf would.
"""

from __future__ import annotations

import hashlib
import math
from dataclasses import dataclass, field
from typing import Literal

import numpy as np

from robust_sft.core.config_types import Options, check_choice

IGNORE_INDEX = -100
MaskKind = Literal["none", "threshold", "ratio", "lowest", "random", "dpf", "stm_dpf"]


# --------------------------------------------------------------------------------------------- one example


def threshold_keep(nll: np.ndarray, answer: np.ndarray, tau: float) -> np.ndarray:
    """Keep answer tokens whose perplexity is at most tau (comparing in log space avoids overflow)."""
    if not tau > 0:
        raise ValueError(f"tau must be positive, not {tau}")
    high = nll > math.log(tau) if math.isfinite(tau) else np.zeros_like(answer)
    return answer & ~high


def lowest_keep(nll: np.ndarray, answer: np.ndarray, n_mask: int) -> np.ndarray:
    """Mask the `n_mask` answer tokens of lowest perplexity."""
    candidates = np.flatnonzero(answer)
    order = candidates[np.argsort(_nan_to(nll[candidates], np.inf), kind="stable")]
    keep = answer.copy()
    keep[order[:n_mask]] = False
    return keep


def random_keep(answer: np.ndarray, n_mask: int, rng: np.random.Generator) -> np.ndarray:
    """Mask `n_mask` answer tokens drawn uniformly among the answer tokens only."""
    candidates = np.flatnonzero(answer)
    keep = answer.copy()
    keep[rng.choice(candidates, size=min(n_mask, len(candidates)), replace=False)] = False
    return keep


def dpf_keep(nll_before: np.ndarray, nll_after: np.ndarray, answer: np.ndarray, dpf_tau: float) -> np.ndarray:
    """Keep answer tokens whose perplexity did not drop by more than a factor dpf_tau during fine-tuning."""
    if nll_before.shape != nll_after.shape:
        raise ValueError("the two score files disagree on the length of an example")
    dropped = (nll_before - nll_after) > math.log(dpf_tau)
    return answer & ~dropped


def labels_from_keep(input_ids: np.ndarray, keep: np.ndarray) -> np.ndarray:
    """Causal-LM labels: the token id where it is trained, -100 elsewhere."""
    return np.where(keep, input_ids, IGNORE_INDEX).astype(np.int64)


def example_rng(seed: int, example_id: str) -> np.random.Generator:
    """A generator that depends only on (seed, example id): stable under reordering and resharding."""
    digest = hashlib.sha256(f"{seed}:{example_id}".encode()).digest()
    return np.random.default_rng(int.from_bytes(digest[:8], "little"))


def _nan_to(values: np.ndarray, fill: float) -> np.ndarray:
    return np.where(np.isnan(values), fill, values)


# --------------------------------------------------------------------------------------------- whole dataset


def ratio_to_tau(answer_nlls: list[np.ndarray], ratio: float) -> float:
    """The tau whose threshold masks the top `ratio` of all answer tokens (inf when ratio is 0)."""
    if not 0 <= ratio <= 1:
        raise ValueError(f"ratio must be in [0, 1], not {ratio}")
    values = np.sort(_nan_to(np.concatenate(answer_nlls), -np.inf))[::-1]
    n_mask = int(round(ratio * len(values)))
    if n_mask == 0:
        return math.inf
    # Masked = strictly above log(tau); put tau just under the smallest masked value.
    return math.exp(float(np.nextafter(values[n_mask - 1], -np.inf)))


@dataclass
class MaskPolicy:
    """Which answer tokens to drop from the loss (built from `MaskOptions.policy()`; its values are checked here)."""

    kind: MaskKind = "threshold"
    tau: float = 2.5
    ratio: float | None = None
    seed: int = 0
    dpf_tau: float = 1.5

    def __post_init__(self) -> None:
        check_choice("mask", self.kind, MaskKind)
        if self.kind == "ratio" and self.ratio is None:
            raise ValueError("the ratio policy needs `ratio`")
        # Every token has perplexity >= 1, so a tau of 1 or less would mask every answer token.
        if not self.tau > 1:
            raise ValueError(f"tau must be greater than 1 (a perplexity threshold), not {self.tau}")
        if self.ratio is not None and not 0 <= self.ratio <= 1:
            raise ValueError(f"ratio must be in [0, 1], not {self.ratio}")
        if not (self.dpf_tau > 0 and math.isfinite(self.dpf_tau)):
            raise ValueError(f"dpf_tau must be a positive factor, not {self.dpf_tau}")


@dataclass(kw_only=True)
class ThresholdOption(Options):
    """STM's threshold, alone (`inspect` marks what it would mask) or as part of `MaskOptions`."""

    tau: float = field(default=MaskPolicy.tau, metadata={
        "help": "STM threshold: answer tokens with perplexity > tau are masked (not trained)."})


@dataclass(kw_only=True)
class MaskOptions(ThresholdOption):
    """The token-policy options of `train` and `mask`: flat fields (flags and YAML keys), one `MaskPolicy`."""

    # Defaults are MaskPolicy's: the flags and the policy they build cannot drift apart.
    mask: MaskKind = field(default=MaskPolicy.kind, metadata={
        "help": "Token policy: none (GT baseline), threshold (STM), ratio, lowest, random, dpf, stm_dpf."})
    ratio: float | None = field(default=MaskPolicy.ratio, metadata={
        "help": "Mask this fraction of answer tokens (0-1) instead of using tau."})
    mask_seed: int = field(default=MaskPolicy.seed, metadata={"help": "Seed of the random policy."})
    dpf_scores: str | None = field(default=None, metadata={
        "help": "dpf/stm_dpf: the same data scored by a model fine-tuned on GT."})
    dpf_tau: float = field(default=MaskPolicy.dpf_tau, metadata={
        "help": "dpf: mask tokens whose ppl fell by more than this factor."})

    def check(self) -> None:
        self.policy()

    def policy(self) -> MaskPolicy:
        return MaskPolicy(kind=self.mask, tau=self.tau, ratio=self.ratio, seed=self.mask_seed, dpf_tau=self.dpf_tau)


@dataclass
class MaskResult:
    """Labels per kept example, and what the policy did."""

    keep_examples: list[int]  # indices into the score file
    labels: list[np.ndarray]  # aligned with keep_examples
    report: dict


def apply_policy(scores, policy: MaskPolicy, after=None) -> MaskResult:
    """Run `policy` over a `Scores` object. `after` is the second score file of dpf / stm_dpf."""
    answers = [m.astype(bool) for m in scores.answer_mask]
    tau = policy.tau
    if policy.ratio is not None and policy.kind in ("ratio", "threshold", "lowest", "random", "stm_dpf"):
        tau = ratio_to_tau([scores.answer_nll(i) for i in range(len(scores))], policy.ratio)
    if policy.kind in ("dpf", "stm_dpf"):
        if after is None:
            raise ValueError(f"policy {policy.kind} needs a second score file (scored after a GT fine-tune)")
        if list(after.ids) != list(scores.ids):
            raise ValueError("the two score files do not hold the same examples in the same order")

    keeps = []
    for i, answer in enumerate(answers):
        nll = scores.token_nll[i]
        if policy.kind == "none":
            keep = answer.copy()
        elif policy.kind in ("threshold", "ratio"):
            keep = threshold_keep(nll, answer, tau)
        elif policy.kind in ("lowest", "random"):
            n_mask = int((answer & ~threshold_keep(nll, answer, tau)).sum())
            keep = (
                lowest_keep(nll, answer, n_mask)
                if policy.kind == "lowest"
                else random_keep(answer, n_mask, example_rng(policy.seed, scores.ids[i]))
            )
        else:
            keep = dpf_keep(nll, after.token_nll[i], answer, policy.dpf_tau)
            if policy.kind == "stm_dpf":
                keep &= threshold_keep(nll, answer, tau)
        keeps.append(keep)

    keep_examples = [i for i, keep in enumerate(keeps) if keep.any()]
    labels = [labels_from_keep(scores.input_ids[i], keeps[i]) for i in keep_examples]
    n_answer = int(sum(a.sum() for a in answers))
    n_masked = int(sum((a & ~k).sum() for a, k in zip(answers, keeps)))
    report = {
        "policy": policy.kind,
        "tau": tau if policy.kind not in ("none", "dpf") else None,
        "ratio": policy.ratio,
        "n_examples": len(scores),
        "n_dropped_no_trainable_token": len(scores) - len(keep_examples),
        "answer_tokens": n_answer,
        "masked_tokens": n_masked,
        "masked_fraction": n_masked / n_answer if n_answer else 0.0,
    }
    return MaskResult(keep_examples, labels, report)
