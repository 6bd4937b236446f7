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
- answer_aware: threshold, but never mask a token inside the answer span the task's checker reads
             (`Task.answer_span`): the content the target needs stays trained, the surprising prose around it does not.
- hindsight: threshold, but keep a token above tau when the same model, given a content-only hint in the prompt
             (the final answer, ...: `Task.hint`), finds it at most tau: the hint explains it (content); a token
             that stays above tau with the hint is style and is masked. Needs a second score file of the same
             answers scored with the hint (`score --hint_field`).
- keep_departure: threshold, but always keep the departure token (the first answer token that is not the model's
             top-1 given the GT before it: scoring/departure.py), a control for what STM loses by masking it.

tau may be "auto" (`auto_tau`): tau = 10 x the median answer-token perplexity of the score file, i.e. a token is
masked when the model finds it more than ten times less likely than its typical answer token.
"""

from __future__ import annotations

import hashlib
import math
from dataclasses import dataclass, field
from typing import Literal

import numpy as np

from robust_sft.core.config_types import Options, check_choice

IGNORE_INDEX = -100
MaskKind = Literal["none", "threshold", "ratio", "lowest", "random", "dpf", "stm_dpf", "answer_aware", "hindsight",
                   "keep_departure"]
# tau: a perplexity, or "auto". `None` in the annotation only makes HfArgumentParser pass the flag's text through
# (it keeps `str` from a union only beside None); the checks refuse a None tau.
Tau = float | str | None
AUTO = "auto"
# tau auto = this factor x the median answer-token perplexity: ProFit's cut (train only tokens with p > 0.1,
# arXiv 2601.09195) made relative to how sure the model is of its typical answer token.
AUTO_TAU_FACTOR = 10.0


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


def answer_aware_keep(nll: np.ndarray, answer: np.ndarray, in_span: np.ndarray, tau: float) -> np.ndarray:
    """Threshold's keep, plus every answer token inside the answer span the checker reads."""
    return threshold_keep(nll, answer, tau) | (answer & in_span)


def hindsight_keep(nll: np.ndarray, nll_hinted: np.ndarray, answer: np.ndarray, tau: float) -> np.ndarray:
    """Threshold's keep, plus the tokens above tau whose perplexity with the hint in the prompt is at most tau.

    `nll_hinted` is aligned with `nll` (NaN where the hinted file has no score: such a token is not rescued)."""
    if nll.shape != nll_hinted.shape:
        raise ValueError("the plain and the hinted NLLs disagree on the length of an example")
    with np.errstate(invalid="ignore"):
        explained = answer & (nll_hinted <= math.log(tau))  # NaN compares False
    return threshold_keep(nll, answer, tau) | explained


def departure_keep(nll: np.ndarray, answer: np.ndarray, departure: int | None, tau: float) -> np.ndarray:
    """Threshold's keep, plus the departure token (an input position; None: the example has none)."""
    keep = threshold_keep(nll, answer, tau)
    if departure is not None:
        keep[departure] = bool(answer[departure])
    return keep


def labels_from_keep(input_ids: np.ndarray, keep: np.ndarray) -> np.ndarray:
    """Causal-LM labels: the token id where it is trained, -100 elsewhere."""
    return np.where(keep, input_ids, IGNORE_INDEX).astype(np.int64)


def example_rng(seed: int, example_id: str) -> np.random.Generator:
    """A generator that depends only on (seed, example id): stable under reordering and resharding."""
    digest = hashlib.sha256(f"{seed}:{example_id}".encode()).digest()
    return np.random.default_rng(int.from_bytes(digest[:8], "little"))


def _span_or_none(flags: np.ndarray | None, answer: np.ndarray) -> np.ndarray:
    """An example's answer-span flags; none for an answer without a span (its checker finds no answer there)."""
    return np.zeros_like(answer) if flags is None else flags


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


def auto_tau(answer_nlls: list[np.ndarray]) -> float:
    """tau "auto": AUTO_TAU_FACTOR x the median perplexity of all answer tokens (end-of-turn included).

    A token is masked when the model finds it more than ten times less likely than its typical answer token. The
    rule uses the score distribution alone (no pilot run, no task), is fixed in advance, and never falls below 10
    (every perplexity is at least 1), so low-perplexity data (Self-Output) keeps nearly everything."""
    values = np.concatenate(answer_nlls) if answer_nlls else np.zeros(0, np.float32)
    values = values[~np.isnan(values)]
    if not len(values):
        raise ValueError("tau auto needs at least one scored answer token")
    return AUTO_TAU_FACTOR * math.exp(max(float(np.median(values)), 0.0))


def auto_tau_reason(tau: float) -> str:
    """Why tau auto chose `tau` (written into mask and train summaries and onto the inspect page)."""
    return (f"auto: {AUTO_TAU_FACTOR:g} x the median answer-token perplexity ({tau / AUTO_TAU_FACTOR:.3f}) = "
            f"{tau:.3f}; a token is masked when the model finds it more than {AUTO_TAU_FACTOR:g} times less likely "
            "than its typical answer token")


def check_tau(tau) -> None:
    """A tau is "auto" or a perplexity above 1 (every token has perplexity >= 1: a tau of 1 or less masks all)."""
    if tau == AUTO:
        return
    if isinstance(tau, bool) or not isinstance(tau, (int, float)) or not tau > 1:
        raise ValueError(f"tau must be greater than 1 (a perplexity threshold) or {AUTO!r}, not {tau!r}")


@dataclass
class MaskPolicy:
    """Which answer tokens to drop from the loss (built from `MaskOptions.policy()`; its values are checked here)."""

    kind: MaskKind = "threshold"
    tau: float | str = 2.5  # or "auto"
    ratio: float | None = None
    seed: int = 0
    dpf_tau: float = 1.5

    def __post_init__(self) -> None:
        check_choice("mask", self.kind, MaskKind)
        if self.kind == "ratio" and self.ratio is None:
            raise ValueError("the ratio policy needs `ratio`")
        check_tau(self.tau)
        if self.ratio is not None and not 0 <= self.ratio <= 1:
            raise ValueError(f"ratio must be in [0, 1], not {self.ratio}")
        if not (self.dpf_tau > 0 and math.isfinite(self.dpf_tau)):
            raise ValueError(f"dpf_tau must be a positive factor, not {self.dpf_tau}")


@dataclass(kw_only=True)
class ThresholdOption(Options):
    """STM's threshold, alone (`inspect` marks what it would mask) or as part of `MaskOptions`."""

    tau: Tau = field(default=MaskPolicy.tau, metadata={
        "help": "STM threshold: answer tokens with perplexity > tau are masked (not trained). auto: 10 x the median "
                "answer-token perplexity of the data (a token the model finds 10x less likely than its typical "
                "answer token is masked)."})

    def check(self) -> None:
        check_tau(self.tau)


@dataclass(kw_only=True)
class SpanTaskOption(Options):
    """The task whose checker's answer span answer_aware keeps (`mask`, `train`) and `inspect` splits its shares by."""

    span_task: str | None = field(default=None, metadata={
        "help": "A task whose checker's answer span (Task.answer_span) answer_aware never masks, and that the inspect "
                "page splits masked shares by (e.g. organism/sort, gsm8k)."})


@dataclass(kw_only=True)
class MaskOptions(ThresholdOption, SpanTaskOption):
    """The token-policy options of `train` and `mask`: flat fields (flags and YAML keys), one `MaskPolicy`."""

    # Defaults are MaskPolicy's: the flags and the policy they build cannot drift apart.
    mask: MaskKind = field(default=MaskPolicy.kind, metadata={
        "help": "Token policy: none (GT baseline), threshold (STM), ratio, lowest, random, dpf, stm_dpf, "
                "answer_aware (never mask the answer span of --span_task), hindsight (keep the tokens a hint "
                "makes predictable: --hinted_scores), keep_departure (threshold, but keep the departure token: "
                "--departure_file)."})
    ratio: float | None = field(default=MaskPolicy.ratio, metadata={
        "help": "Mask this fraction of answer tokens (0-1) instead of using tau."})
    mask_seed: int = field(default=MaskPolicy.seed, metadata={"help": "Seed of the random policy."})
    dpf_scores: str | None = field(default=None, metadata={
        "help": "dpf/stm_dpf: the same data scored by a model fine-tuned on GT."})
    dpf_tau: float = field(default=MaskPolicy.dpf_tau, metadata={
        "help": "dpf: mask tokens whose ppl fell by more than this factor."})
    hinted_scores: str | None = field(default=None, metadata={
        "help": "hindsight: the same data scored with a hint in each prompt (`score --hint_field`)."})
    departure_file: str | None = field(default=None, metadata={
        "help": "keep_departure: JSON {example id: input position of its departure token, or null} "
                "(robust_sft.scoring.departure.write_departures; a run writes scores/<source>.departure.json)."})

    def check(self) -> None:
        self.policy()
        if self.mask == "answer_aware" and not self.span_task:
            raise ValueError("mask answer_aware needs span_task: the task whose answer span is never masked")
        if self.mask == "hindsight" and not self.hinted_scores:
            raise ValueError("mask hindsight needs hinted_scores: the same data scored with a hint in the prompt")
        if self.mask == "keep_departure" and not self.departure_file:
            raise ValueError("mask keep_departure needs departure_file: each example's departure token")

    def policy(self) -> MaskPolicy:
        return MaskPolicy(kind=self.mask, tau=self.tau, ratio=self.ratio, seed=self.mask_seed, dpf_tau=self.dpf_tau)


@dataclass
class MaskResult:
    """Labels per kept example, and what the policy did."""

    keep_examples: list[int]  # indices into the score file
    labels: list[np.ndarray]  # aligned with keep_examples
    report: dict


def resolve_tau(scores, policy: MaskPolicy) -> tuple[float, str]:
    """The tau a policy applies to `scores`, and how it was chosen (a ratio's quantile, the auto rule, or as given)."""
    answer_nlls = [scores.answer_nll(i) for i in range(len(scores))]
    if policy.ratio is not None and policy.kind in ("ratio", "threshold", "lowest", "random", "stm_dpf",
                                                     "answer_aware", "hindsight", "keep_departure"):
        return ratio_to_tau(answer_nlls, policy.ratio), f"ratio: the top {policy.ratio:g} of answer tokens"
    if policy.tau == AUTO:
        tau = auto_tau(answer_nlls)
        return tau, auto_tau_reason(tau)
    return float(policy.tau), "fixed"


def apply_policy(scores, policy: MaskPolicy, after=None, *, spans: list[np.ndarray] | None = None,
                 hinted: list[np.ndarray] | None = None, departures: list[int | None] | None = None) -> MaskResult:
    """Run `policy` over a `Scores` object.

    after:  the second score file of dpf / stm_dpf (a `Scores`, same examples in the same order).
    spans:  answer_aware: per example, True on the tokens inside the answer span the task's checker reads.
    hinted: hindsight: per example, the NLL of each answer token with the hint in the prompt, aligned with
            `scores` (masking/hindsight.py: `align_hinted`).
    departures: keep_departure: per example, the input position of its departure token (or None).
    """
    answers = [m.astype(bool) for m in scores.answer_mask]
    uses_tau = policy.kind not in ("none", "dpf")
    tau, tau_rule = resolve_tau(scores, policy) if uses_tau else (None, None)
    if policy.kind in ("dpf", "stm_dpf"):
        if after is None:
            raise ValueError(f"policy {policy.kind} needs a second score file (scored after a GT fine-tune)")
        if list(after.ids) != list(scores.ids):
            raise ValueError("the two score files do not hold the same examples in the same order")
    needed = {"answer_aware": (spans, "the answer span of each example (a task: span_task)"),
              "hindsight": (hinted, "the same answers scored with a hint in the prompt (hinted_scores)"),
              "keep_departure": (departures, "each example's departure token (departure_file)")}
    if policy.kind in needed:
        given, what = needed[policy.kind]
        if given is None or len(given) != len(scores):
            raise ValueError(f"policy {policy.kind} needs {what}, one entry per example")

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
        elif policy.kind == "answer_aware":
            keep = answer_aware_keep(nll, answer, _span_or_none(spans[i], answer), tau)
        elif policy.kind == "hindsight":
            keep = hindsight_keep(nll, hinted[i], answer, tau)
        elif policy.kind == "keep_departure":
            keep = departure_keep(nll, answer, departures[i], tau)
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
        "tau": tau,
        "tau_rule": tau_rule,
        "ratio": policy.ratio,
        "n_examples": len(scores),
        "n_dropped_no_trainable_token": len(scores) - len(keep_examples),
        "answer_tokens": n_answer,
        "masked_tokens": n_masked,
        "masked_fraction": n_masked / n_answer if n_answer else 0.0,
    }
    if policy.kind in needed:
        # The tokens above tau the policy kept: inside the answer span, or explained by the hint.
        above = [a & ~threshold_keep(scores.token_nll[i], a, tau) for i, a in enumerate(answers)]
        report["kept_above_tau"] = int(sum((h & k).sum() for h, k in zip(above, keeps)))
        if policy.kind == "answer_aware":
            report["examples_with_answer_span"] = int(sum((a & _span_or_none(s, a)).any() for a, s in zip(answers, spans)))
    return MaskResult(keep_examples, labels, report)
