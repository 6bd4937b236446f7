"""The departure token: where a GT answer leaves the model's own greedy answer to the same prompt.

Greedy decoding takes the top-1 token at each step, so up to the departure the greedy answer and the GT share their
prefix; the departure is the first scored answer token that is not the model's top-1 given the GT before it (one
forward pass per example, no generation). An answer the model would write itself has none. The "departure kept"
control (masking/policies.py, kind keep_departure) trains that one token whatever its perplexity: it is where the
GT's style or content first differs from the model, the token a style switch hangs on.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from robust_sft.core.artifacts import read_text, write_json
from robust_sft.scoring.files import Scores


def first_departure(targets: np.ndarray, top1: np.ndarray) -> int | None:
    """Index of the first position where the GT token is not the model's top-1, or None."""
    differs = np.flatnonzero(np.asarray(targets) != np.asarray(top1))
    return int(differs[0]) if len(differs) else None


def departure_positions(model, scores: Scores, progress: bool = True) -> dict[str, int | None]:
    """Per example id, the input position of its departure token (None: the GT is the model's greedy answer)."""
    import torch
    from tqdm.auto import tqdm

    device = next(model.parameters()).device
    out: dict[str, int | None] = {}
    with torch.inference_mode():
        for i in tqdm(range(len(scores)), desc="departure", disable=not progress, leave=False):
            positions = np.flatnonzero(scores.answer_mask[i] & ~np.isnan(scores.token_nll[i]))
            if len(positions) == 0:
                out[scores.ids[i]] = None
                continue
            ids = torch.as_tensor(scores.input_ids[i], dtype=torch.long, device=device)[None]
            logits = model(input_ids=ids).logits[0]
            top1 = logits[torch.as_tensor(positions - 1, device=device)].argmax(-1).cpu().numpy()
            at = first_departure(scores.input_ids[i][positions], top1)
            out[scores.ids[i]] = None if at is None else int(positions[at])
    return out


def write_departures(model, scores: Scores, path: str | Path, progress: bool = True) -> None:
    """departure_positions as JSON ({id: position or null}), written atomically."""
    write_json(path, departure_positions(model, scores, progress))


def read_departures(path: str | Path, scores: Scores) -> list[int | None]:
    """The departure positions of `path` in the order of `scores`; an id the file lacks, or a position outside its
    example's answer, is an error naming the file."""
    import json

    try:
        found = json.loads(read_text(path))
    except ValueError as err:
        raise ValueError(f"{path}: not a departure file (JSON {{id: position}}): {err}") from None
    if not isinstance(found, dict):
        raise ValueError(f"{path}: not a departure file: expected a JSON object of id -> position")
    out = []
    for i, example_id in enumerate(scores.ids):
        if example_id not in found:
            raise ValueError(f"{path}: no departure for example {example_id!r} (made from another score file?)")
        at = found[example_id]
        if at is not None and not (isinstance(at, int) and 0 <= at < len(scores.answer_mask[i])
                                   and scores.answer_mask[i][at]):
            raise ValueError(f"{path}: example {example_id!r}: departure {at!r} is not one of its answer tokens")
        out.append(at)
    return out
