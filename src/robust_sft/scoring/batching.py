"""Batches for scoring: examples grouped by length under a token budget, padded on either side."""

from __future__ import annotations

from typing import Literal

from robust_sft.core.config_types import check_choice

PaddingSide = Literal["right", "left"]


def plan_batches(lengths: list[int], batch_tokens: int, max_batch_size: int) -> list[list[int]]:
    """Group example indices into batches of similar length within a padded-token budget.

    Longest first, so an out-of-memory error shows up in the first batch rather than at the end.
    """
    order = sorted(range(len(lengths)), key=lambda i: -lengths[i])
    batches, current = [], []
    for i in order:
        longest = lengths[current[0]] if current else lengths[i]
        if current and ((len(current) + 1) * longest > batch_tokens or len(current) >= max_batch_size):
            batches.append(current)
            current = []
        current.append(i)
    if current:
        batches.append(current)
    return batches


def pad_batch(sequences: list[list[int]], masks: list[list[bool]], pad_id: int, side: str = "right"):
    """Pad to a rectangle; return input_ids, attention_mask, position_ids and score_mask tensors."""
    import torch

    check_choice("padding_side", side, PaddingSide)
    width = max(len(s) for s in sequences)
    ids = torch.full((len(sequences), width), pad_id, dtype=torch.long)
    attention = torch.zeros((len(sequences), width), dtype=torch.long)
    score = torch.zeros((len(sequences), width), dtype=torch.bool)
    for row, (seq, mask) in enumerate(zip(sequences, masks)):
        cols = slice(0, len(seq)) if side == "right" else slice(width - len(seq), width)
        ids[row, cols] = torch.tensor(seq, dtype=torch.long)
        attention[row, cols] = 1
        score[row, cols] = torch.tensor(mask, dtype=torch.bool)
    # Positions count real tokens only, so a left-padded row sees the same positions as an unpadded one.
    positions = (attention.cumsum(-1) - 1).clamp(min=0)
    return ids, attention, positions, score


def default_batch_tokens(device) -> int:
    """16384 tokens per batch on accelerators; on CPU one example per batch (see ScoreConfig.batch_tokens)."""
    return 16384 if getattr(device, "type", str(device)) != "cpu" else 1


def runs_on_cpu(device: str) -> bool:
    """Whether `device` ("auto", "cpu", "cuda:1", ...) puts the work on the CPU."""
    import torch

    return device == "cpu" or (device == "auto" and not torch.cuda.is_available())
