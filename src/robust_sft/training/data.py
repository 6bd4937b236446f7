"""Training data: labels from a score file through a token policy (or a masked dataset as it is), batched."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from robust_sft.core.artifacts import read_parquet
from robust_sft.masking.inputs import mask_scores
from robust_sft.masking.policies import IGNORE_INDEX, MaskPolicy
from robust_sft.scoring.files import check_tokenizer_matches, load_scores


@dataclass
class TrainingData:
    input_ids: list[np.ndarray]
    labels: list[np.ndarray]
    ids: list[str]
    report: dict


def load_training_data(path: str, policy: MaskPolicy, tokenizer=None, dpf_scores: str | None = None, *,
                       hinted_scores: str | None = None, span_task=None) -> TrainingData:
    """Labels for training: from a masked dataset as they are, or from a score file through `policy` (with the
    hinted score file of hindsight and the task of answer_aware, `masking.inputs.mask_scores`)."""
    table, metadata = _read_masked_dir(Path(path)) if Path(path).is_dir() else (
        read_parquet(path) if Path(path).is_file() else (None, {}))
    if table is not None and "labels" in table.column_names:
        if tokenizer is not None and metadata.get("tokenizer_fingerprint"):
            check_tokenizer_matches(metadata, tokenizer, path)
        input_ids = [np.asarray(x, np.int64) for x in table.column("input_ids").to_pylist()]
        labels = [np.asarray(x, np.int64) for x in table.column("labels").to_pylist()]
        ids = table.column("id").to_pylist() if "id" in table.column_names else [str(i) for i in range(len(labels))]
        return TrainingData(input_ids, labels, ids, metadata.get("mask_report", {"policy": "precomputed"}))
    scores = load_scores(path, tokenizer)
    result = mask_scores(scores, policy, where=str(path), dpf_scores=dpf_scores, hinted_scores=hinted_scores,
                         task=span_task, tokenizer=tokenizer)
    return TrainingData(
        [scores.input_ids[i] for i in result.keep_examples],
        result.labels,
        [scores.ids[i] for i in result.keep_examples],
        result.report,
    )


def _read_masked_dir(path: Path):
    """A masked dataset written by `robust-sft mask` as a save_to_disk directory: (table, metadata)."""
    import datasets

    metadata_file = path / "robust_sft.json"
    metadata = json.loads(metadata_file.read_text()) if metadata_file.exists() else {}
    return datasets.load_from_disk(str(path)).data.table, metadata


class TokenDataset:
    """Map-style dataset of {input_ids, labels} for the Trainer."""

    def __init__(self, data: TrainingData):
        self.data = data

    def __len__(self) -> int:
        return len(self.data.input_ids)

    def __getitem__(self, i: int) -> dict:
        return {"input_ids": self.data.input_ids[i], "labels": self.data.labels[i]}


def collate(features: list[dict], pad_id: int) -> dict:
    """Right-pad a batch; labels keep their -100 masks and padding gets -100 too."""
    import torch

    width = max(len(f["input_ids"]) for f in features)
    ids = torch.full((len(features), width), pad_id, dtype=torch.long)
    labels = torch.full((len(features), width), IGNORE_INDEX, dtype=torch.long)
    attention = torch.zeros((len(features), width), dtype=torch.long)
    for row, f in enumerate(features):
        n = len(f["input_ids"])
        ids[row, :n] = torch.as_tensor(f["input_ids"])
        labels[row, :n] = torch.as_tensor(f["labels"])
        attention[row, :n] = 1
    return {"input_ids": ids, "attention_mask": attention, "labels": labels}
