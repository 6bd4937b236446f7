"""Where a token policy's masks fall: inside the answer the checker reads, or in the prose around it.

STM removes high-perplexity tokens from the loss. If those are the very tokens that carry the new
knowledge (the final answer the task's checker reads), STM cannot learn the target however little it
forgets. A task that knows where its checker reads (`Task.answer_span`) lets us measure this exactly:

  share_of_masked_in_answer   masked tokens inside the answer span / all masked answer tokens
  answer_tokens_masked        masked tokens inside the answer span / tokens inside the answer span
  prose_tokens_masked         masked tokens outside the span / tokens outside it (end-of-turn included)
"""

from __future__ import annotations

import numpy as np


def last_segment(mask: np.ndarray) -> tuple[int, int]:
    """(start, end) of the last run of True in a boolean array: the last assistant turn's tokens."""
    positions = np.flatnonzero(mask)
    if len(positions) == 0:
        return 0, 0
    end = int(positions[-1]) + 1
    start = end
    while start > 0 and mask[start - 1]:
        start -= 1
    return start, end


def token_char_ends(tokenizer, token_ids: list[int]) -> list[int]:
    """The end offset, in the decoded text, of each token: decoding prefixes is exact for any tokenizer."""
    return [len(tokenizer.decode(token_ids[: k + 1], skip_special_tokens=False)) for k in range(len(token_ids))]


def in_span_flags(char_ends: list[int], span: tuple[int, int]) -> np.ndarray:
    """True for each token whose characters overlap [span start, span end)."""
    starts = [0, *char_ends[:-1]]
    return np.array([s < span[1] and e > span[0] for s, e in zip(starts, char_ends)], bool)


def mask_location_counts(answer_mask: np.ndarray, keep: np.ndarray, in_span: np.ndarray) -> dict[str, int]:
    """Counts over one example's last answer turn: tokens and masked tokens, inside and outside the span."""
    masked = answer_mask & ~keep
    return {
        "answer_tokens": int((answer_mask & in_span).sum()),
        "prose_tokens": int((answer_mask & ~in_span).sum()),
        "masked_answer_tokens": int((masked & in_span).sum()),
        "masked_prose_tokens": int((masked & ~in_span).sum()),
    }


def shares(counts: dict[str, int]) -> dict[str, float]:
    def ratio(a: int, b: int) -> float:
        return a / b if b else float("nan")

    masked = counts["masked_answer_tokens"] + counts["masked_prose_tokens"]
    return {
        "share_of_masked_in_answer": ratio(counts["masked_answer_tokens"], masked),
        "answer_tokens_masked": ratio(counts["masked_answer_tokens"], counts["answer_tokens"]),
        "prose_tokens_masked": ratio(counts["masked_prose_tokens"], counts["prose_tokens"]),
    }


def mask_location(scores, keeps: dict[int, np.ndarray], task, tokenizer) -> dict | None:
    """Where a policy's masks fall over a score file, or None when the task cannot say where it reads.

    `keeps` maps example index -> boolean keep array (True = trained), for every example of `scores`
    (an example the policy dropped entirely keeps nothing).
    """
    totals = {"answer_tokens": 0, "prose_tokens": 0, "masked_answer_tokens": 0, "masked_prose_tokens": 0}
    located = 0
    for i in range(len(scores)):
        answer = scores.answer_mask[i].astype(bool)
        start, end = last_segment(answer)
        text = scores.messages[i][-1]["content"]
        span = task.answer_span(text)
        if span is None or end == start:
            continue
        ids = [int(t) for t in scores.input_ids[i][start:end]]
        flags = np.zeros_like(answer)
        flags[start:end] = in_span_flags(token_char_ends(tokenizer, ids), span)
        turn = np.zeros_like(answer)
        turn[start:end] = True
        for key, value in mask_location_counts(answer & turn, keeps[i], flags).items():
            totals[key] += value
        located += 1
    if located == 0:
        return None
    return {**totals, "examples": located, **shares(totals)}
