"""Where a token policy's masks fall: inside the answer the checker reads, or in the prose around it.

STM removes high-perplexity tokens from the loss. If those are the very tokens that carry the new
knowledge (the final answer the task's checker reads), STM cannot learn the target however little it
forgets. A task that knows where its checker reads (`Task.answer_span`) lets us measure this exactly:

  share_of_masked_in_answer   masked tokens inside the answer span / all masked answer tokens
  answer_tokens_masked        masked tokens inside the answer span / tokens inside the answer span
  prose_tokens_masked         masked tokens outside the span / tokens outside it (end-of-turn included)

Without a span, `token_classes` sorts an answer's tokens by what they are (code, carriage return, indentation,
other whitespace, fence, end-of-turn), and `first_difference` finds where two token sequences part (the GT answer
and the model's own greedy answer: the departure token).
"""

from __future__ import annotations

import numpy as np

from robust_sft.tasks.base import has_answer_span


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
    prefixes = [list(token_ids[: k + 1]) for k in range(len(token_ids))]
    return [len(text) for text in tokenizer.batch_decode(prefixes, skip_special_tokens=False)]


def in_span_flags(char_ends: list[int], span: tuple[int, int]) -> np.ndarray:
    """True for each token whose characters overlap [span start, span end)."""
    starts = [0, *char_ends[:-1]]
    return np.array([s < span[1] and e > span[0] for s, e in zip(starts, char_ends)], bool)


TOKEN_CLASSES = ("code", "carriage_return", "indentation", "other_whitespace", "fence", "end_of_turn")


def token_classes(texts: list[str], end_of_turn: list[bool] | None = None) -> list[str]:
    """The class of each token of one answer, from the tokens' decoded texts in order (one of TOKEN_CLASSES).

    - end_of_turn: flagged in `end_of_turn` (the template's end-of-turn token, e.g. <|im_end|>);
    - fence: a token with a visible character on a line that starts with a backtick (```python, ```);
    - code: any other token with a visible character (in MBPP's GT every such token is code; in a model's own
      answer, prose falls here too);
    - carriage_return: a whitespace-only token holding a carriage return ("\r\n", " \r\n\t");
    - indentation: a whitespace-only token that ends in spaces or tabs at the start of a line (the line holds
      nothing visible before it), e.g. "\t" after a line break, "\n    ";
    - other_whitespace: the remaining whitespace-only tokens (line breaks, spaces inside or at the end of a line).
    """
    flags = end_of_turn if end_of_turn is not None else [False] * len(texts)
    if len(flags) != len(texts):
        raise ValueError(f"{len(texts)} token texts but {len(flags)} end-of-turn flags")
    out = []
    line = ""  # the current line's text before the token
    for text, eot in zip(texts, flags):
        if eot:
            out.append("end_of_turn")
            continue
        if text.strip():
            line_after = (line + text).rsplit("\n", 1)[-1] if "\n" in text else line + text
            fence_line = (line + text.split("\n", 1)[0]).lstrip().startswith("`")
            out.append("fence" if fence_line else "code")
            line = line_after
            continue
        if "\r" in text:
            out.append("carriage_return")
        else:
            tail = text.rsplit("\n", 1)[-1]  # the spaces/tabs after the token's last line break (all if none)
            at_line_start = "\n" in text or not line.strip()
            out.append("indentation" if tail and at_line_start else "other_whitespace")
        line = text.rsplit("\n", 1)[-1] if "\n" in text else line + text
    return out


def first_difference(a, b) -> int | None:
    """The first index where sequences `a` and `b` differ; the shorter one's length when it is a prefix of the
    other; None when they are equal."""
    n = min(len(a), len(b))
    for i in range(n):
        if a[i] != b[i]:
            return i
    return None if len(a) == len(b) else n


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


def text_shift(decoded: str, text: str) -> int | None:
    """Where `text` (an answer as stored) starts in `decoded` (its tokens decoded), relative to its own start:
    0 when the tokens spell it, minus its leading whitespace when the chat template stripped that; else None."""
    if decoded.startswith(text):
        return 0
    stripped = text.lstrip()
    if stripped and decoded.startswith(stripped):
        return -(len(text) - len(stripped))
    return None


def require_answer_span(task) -> None:
    """A clear error for a task that cannot say where its checker reads."""
    if not has_answer_span(task):
        raise ValueError(f"task {task.name or type(task).__name__!r} does not say where its checker reads the answer "
                         "(it defines no Task.answer_span), so no token can be told to lie in the answer span")


def answer_span_flags(scores, task, tokenizer, *, strict: bool = True, where: str = "") -> list[np.ndarray | None]:
    """Per example: True on the tokens of its last answer turn that overlap the span `task.answer_span` gives for
    that answer's text; None for an example without a span (its checker would find no answer there).

    strict: an example whose tokens do not spell its stored answer text (so the span cannot be placed) is an
    error naming it; otherwise it gets None, as the report's diagnostic wants."""
    require_answer_span(task)
    out: list[np.ndarray | None] = []
    for i in range(len(scores)):
        answer = scores.answer_mask[i].astype(bool)
        start, end = last_segment(answer)
        at = f"{where}: example {scores.ids[i]!r}"
        if not scores.messages[i]:
            if strict:
                raise ValueError(f"{at}: the score file holds no messages, so the answer's text (and its span) "
                                 "is unknown")
            out.append(None)
            continue
        text = scores.messages[i][-1]["content"]
        span = task.answer_span(text)
        if span is None or end == start:
            out.append(None)
            continue
        ids = [int(t) for t in scores.input_ids[i][start:end]]
        shift = text_shift(tokenizer.decode(ids, skip_special_tokens=False), text)
        if shift is None:
            if strict:
                raise ValueError(f"{at}: its answer tokens do not decode to its stored answer text, so the answer "
                                 "span cannot be placed on them (a tokenizer other than the scoring model's?)")
            out.append(None)
            continue
        flags = np.zeros_like(answer)
        flags[start:end] = in_span_flags(token_char_ends(tokenizer, ids), (span[0] + shift, span[1] + shift))
        out.append(flags)
    return out


def keeps_of(scores, result) -> dict[int, np.ndarray]:
    """Example index -> keep array of a `MaskResult`, for every example (one the policy dropped keeps nothing)."""
    keeps = {i: np.zeros(len(ids), bool) for i, ids in enumerate(scores.input_ids)}
    keeps.update({i: labels != -100 for i, labels in zip(result.keep_examples, result.labels)})
    return keeps


def mask_location(scores, keeps: dict[int, np.ndarray], task, tokenizer,
                  spans: list[np.ndarray | None] | None = None) -> dict | None:
    """Where a policy's masks fall over a score file, or None when the task cannot say where it reads.

    `keeps` maps example index -> boolean keep array (True = trained), for every example of `scores`
    (an example the policy dropped entirely keeps nothing). `spans`: `answer_span_flags`, if already computed.
    """
    if spans is None:
        if not has_answer_span(task):
            return None
        spans = answer_span_flags(scores, task, tokenizer, strict=False)
    totals = {"answer_tokens": 0, "prose_tokens": 0, "masked_answer_tokens": 0, "masked_prose_tokens": 0}
    located = 0
    for i, flags in enumerate(spans):
        if flags is None:
            continue
        answer = scores.answer_mask[i].astype(bool)
        start, end = last_segment(answer)
        turn = np.zeros_like(answer)
        turn[start:end] = True
        for key, value in mask_location_counts(answer & turn, keeps[i], flags).items():
            totals[key] += value
        located += 1
    if located == 0:
        return None
    return {**totals, "examples": located, **shares(totals)}
