"""What a token policy reads besides its score file, in one place for `mask`, `train` and the report: the dpf
file, the hinted score file (hindsight), the answer spans of a task (answer_aware) and the departure tokens
(keep_departure)."""

from __future__ import annotations

from pathlib import Path

from robust_sft.masking.diagnostics import answer_span_flags
from robust_sft.masking.hindsight import align_hinted, examples_with_hint
from robust_sft.masking.policies import MaskPolicy, MaskResult, apply_policy
from robust_sft.models.loading import load_tokenizer
from robust_sft.scoring.departure import read_departures
from robust_sft.scoring.files import Scores, load_scores
from robust_sft.tasks.base import Task, get_task


def mask_scores(scores: Scores, policy: MaskPolicy, *, where: str = "the score file",
                dpf_scores: str | Path | Scores | None = None, hinted_scores: str | Path | Scores | None = None,
                task: Task | str | None = None, tokenizer=None,
                departure_file: str | Path | None = None) -> MaskResult:
    """`apply_policy` with what the policy needs loaded: `dpf_scores` (dpf, stm_dpf), `hinted_scores` (hindsight),
    `task` (answer_aware: a Task or a registered name), `departure_file` (keep_departure) and the tokenizer that
    decodes the answers to place its spans
    (default: the scoring model's, named in the score file). The report says what the extra inputs gave."""
    after = _scores(dpf_scores, tokenizer) if dpf_scores is not None else None
    spans, hinted, extra = None, None, {}
    if policy.kind == "hindsight":
        if hinted_scores is None:
            raise ValueError(f"{where}: policy hindsight needs hinted_scores: the same data scored with a hint in "
                             "the prompt (`robust-sft score --hint_field ...`)")
        hinted_file = _scores(hinted_scores, tokenizer)
        hinted = align_hinted(scores, hinted_file, str(hinted_scores))
        extra["examples_with_hint"] = examples_with_hint(scores, hinted_file)
    if policy.kind == "answer_aware":
        if task is None:
            raise ValueError(f"{where}: policy answer_aware needs span_task: the task whose answer span is kept")
        task = get_task(task) if isinstance(task, str) else task
        spans = answer_span_flags(scores, task, tokenizer or scoring_tokenizer(scores, where), where=where)
        extra["span_task"] = task.name
    departures = None
    if policy.kind == "keep_departure":
        if departure_file is None:
            raise ValueError(f"{where}: policy keep_departure needs departure_file: each example's departure token")
        departures = read_departures(departure_file, scores)
        extra["examples_with_departure"] = sum(d is not None for d in departures)
    result = apply_policy(scores, policy, after, spans=spans, hinted=hinted, departures=departures)
    result.report.update(extra)
    return result


def scoring_tokenizer(scores: Scores, where: str):
    """The tokenizer of the model named in a score file (it made the ids)."""
    model = scores.metadata.get("model")
    if not model:
        raise ValueError(f"{where}: the score file names no model, so its answers cannot be decoded to place the "
                         "answer spans")
    try:
        return load_tokenizer(str(model))
    except (OSError, ValueError) as err:
        raise ValueError(f"{where}: cannot load the tokenizer of {model!r} to place the answer spans ({err})") from err


def _scores(given: str | Path | Scores, tokenizer) -> Scores:
    return given if isinstance(given, Scores) else load_scores(given, tokenizer)
