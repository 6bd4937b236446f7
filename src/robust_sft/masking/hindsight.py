"""Hindsight masking's second score file: the same answers scored with a content-only hint in the prompt.

`score --hint_field hint` (or the run's scores stage) scores each answer again with its task's hint appended to
the prompt (`Task.hint`: the final answer, the expected outputs; never the reference's wording). Only the prompt
differs, so the answer tokens of the two files must be the same ids: `align_hinted` checks that, example by
example, and returns the hinted NLL of each answer token at its position in the plain file.
"""

from __future__ import annotations

import numpy as np


def align_hinted(scores, hinted, where: str = "the hinted score file") -> list[np.ndarray]:
    """Per example of `scores`: the hinted NLL of each of its answer tokens, at the token's position (NaN elsewhere).

    ValueError naming the file and example when the hinted file was made by another model or tokenizer, lacks an
    example, or holds other answer tokens for it (e.g. the longer prompt made the answer truncate earlier)."""
    for key in ("tokenizer_fingerprint", "model", "adapter"):
        if scores.metadata.get(key) != hinted.metadata.get(key):
            raise ValueError(f"{where}: scored with {key} {hinted.metadata.get(key)!r}, the plain scores with "
                             f"{scores.metadata.get(key)!r}; both passes must use the same model")
    row_of = {example_id: k for k, example_id in enumerate(hinted.ids)}
    aligned = []
    for i, example_id in enumerate(scores.ids):
        if example_id not in row_of:
            raise ValueError(f"{where}: example {example_id!r} of the plain score file is missing")
        k = row_of[example_id]
        plain_at = np.flatnonzero(scores.answer_mask[i])
        hinted_at = np.flatnonzero(hinted.answer_mask[k])
        plain_ids, hinted_ids = scores.input_ids[i][plain_at], hinted.input_ids[k][hinted_at]
        if len(plain_ids) != len(hinted_ids) or (plain_ids != hinted_ids).any():
            first = next((j for j, (a, b) in enumerate(zip(plain_ids, hinted_ids)) if a != b),
                         min(len(plain_ids), len(hinted_ids)))
            raise ValueError(f"{where}: example {example_id!r}: its answer tokens differ from the plain score "
                             f"file's ({len(hinted_ids)} against {len(plain_ids)} tokens, first difference at answer "
                             f"token {first}); the two files must hold the same answers, the hinted one with only a "
                             "hint added to the prompt (was one truncated by max_length?)")
        out = np.full(len(scores.input_ids[i]), np.nan, np.float32)
        out[plain_at] = hinted.token_nll[k][hinted_at]
        aligned.append(out)
    return aligned


def examples_with_hint(scores, hinted) -> int:
    """How many examples the hinted file holds with a prompt other than the plain file's (a row without a hint is
    scored unchanged, and hindsight is then STM on it)."""
    row_of = {example_id: k for k, example_id in enumerate(hinted.ids)}
    return sum(scores.messages[i] != hinted.messages[row_of[e]] for i, e in enumerate(scores.ids) if e in row_of)
