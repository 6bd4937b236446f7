"""Training data: labels from a score file through a token policy (or a masked dataset as it is), with the soft
STM's weights when asked, batched."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from robust_sft.core.artifacts import read_parquet, read_text
from robust_sft.masking.inputs import mask_scores
from robust_sft.masking.policies import IGNORE_INDEX, MaskPolicy
from robust_sft.masking.weights import soft_weights
from robust_sft.scoring.files import check_tokenizer_matches, load_scores, rows_with_ids


@dataclass
class TrainingData:
    input_ids: list[np.ndarray]
    labels: list[np.ndarray]
    ids: list[str]
    report: dict
    weights: list[np.ndarray] | None = None  # the soft STM's per-token loss weights, aligned with labels


def load_training_data(path: str, policy: MaskPolicy, tokenizer=None, dpf_scores: str | None = None, *,
                       hinted_scores: str | None = None, span_task=None, soft_temperature: float | None = None,
                       example_ids: list[str] | None = None, departure_file: str | None = None) -> TrainingData:
    """Labels for training: from a masked dataset as they are, or from a score file through `policy` (with the
    hinted score file of hindsight, the task of answer_aware and the departure tokens of keep_departure,
    `masking.inputs.mask_scores`); with
    `soft_temperature`, the kept tokens' soft STM weights (`masking.weights.soft_weights` at the policy's tau).
    `example_ids`: only those examples, selected before masking (so a tau chosen from the data is chosen on them)."""
    table, metadata = _read_masked_dir(Path(path)) if Path(path).is_dir() else (
        read_parquet(path) if Path(path).is_file() else (None, {}))
    if table is not None and "labels" in table.column_names:
        if soft_temperature is not None:
            raise ValueError(f"{path}: a masked dataset has no token scores to weigh by; soft weights "
                             "(soft_temperature) need the score file itself")
        if tokenizer is not None and metadata.get("tokenizer_fingerprint"):
            check_tokenizer_matches(metadata, tokenizer, path)
        input_ids = [np.asarray(x, np.int64) for x in table.column("input_ids").to_pylist()]
        labels = [np.asarray(x, np.int64) for x in table.column("labels").to_pylist()]
        ids = table.column("id").to_pylist() if "id" in table.column_names else [str(i) for i in range(len(labels))]
        keep = range(len(ids)) if example_ids is None else rows_with_ids(ids, example_ids, str(path))
        return TrainingData([input_ids[i] for i in keep], [labels[i] for i in keep], [ids[i] for i in keep],
                            metadata.get("mask_report", {"policy": "precomputed"}))
    scores = load_scores(path, tokenizer, ids=example_ids)
    if dpf_scores is not None and example_ids is not None:  # the second file must hold the same examples
        dpf_scores = load_scores(dpf_scores, tokenizer, ids=example_ids)
    result = mask_scores(scores, policy, where=str(path), dpf_scores=dpf_scores, hinted_scores=hinted_scores,
                         task=span_task, tokenizer=tokenizer, departure_file=departure_file)
    if soft_temperature is None:
        return TrainingData([scores.input_ids[i] for i in result.keep_examples], result.labels,
                            [scores.ids[i] for i in result.keep_examples], result.report)
    return soft_training_data(scores, result, policy.tau if result.report["tau"] is None else result.report["tau"],
                              soft_temperature)


def read_example_ids(path: str | None) -> list[str] | None:
    """The JSON list of example ids of `TrainConfig.example_ids` (None: every example)."""
    if path is None:
        return None
    ids = json.loads(read_text(path))
    if not isinstance(ids, list) or not all(isinstance(i, str) for i in ids):
        raise ValueError(f"{path}: example_ids must be a JSON list of example id strings")
    return ids


def soft_training_data(scores, result, tau: float, temperature: float) -> TrainingData:
    """The soft STM: each kept token weighted by `soft_weights`; a token whose weight is exactly 0 is not trained
    (label -100), and an example left with none is dropped, so weights of 0 and 1 give hard STM's batches.

    The report's masked tokens are those weighted under 1/2 (above tau: the ones STM at this tau masks, whatever
    T) plus the policy's own; `mean_weight` is the answer tokens' mean weight."""
    input_ids, labels, ids, weights = [], [], [], []
    masked = result.report["masked_tokens"]
    for i, label in zip(result.keep_examples, result.labels):
        weight = soft_weights(scores.token_nll[i], label != IGNORE_INDEX, tau, temperature)
        masked += int(((weight < 0.5) & (label != IGNORE_INDEX)).sum())
        if not (weight > 0).any():
            continue
        input_ids.append(scores.input_ids[i])
        labels.append(np.where(weight > 0, label, IGNORE_INDEX).astype(np.int64))
        ids.append(scores.ids[i])
        weights.append(weight)
    n_answer = result.report["answer_tokens"]
    report = {**result.report, "soft_temperature": temperature, "tau": tau,
              "n_dropped_no_trainable_token": result.report["n_examples"] - len(ids),
              "masked_tokens": masked, "masked_fraction": masked / n_answer if n_answer else 0.0,
              "mean_weight": float(sum(w.sum() for w in weights)) / n_answer if n_answer else 0.0}
    return TrainingData(input_ids, labels, ids, report, weights)


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
        item = {"input_ids": self.data.input_ids[i], "labels": self.data.labels[i]}
        if self.data.weights is not None:
            item["weights"] = self.data.weights[i]
        return item


def collate(features: list[dict], pad_id: int) -> dict:
    """Right-pad a batch; labels keep their -100 masks and padding gets -100 too; weights, when the features carry
    them, travel beside the labels (padding weighs 0)."""
    import torch

    width = max(len(f["input_ids"]) for f in features)
    ids = torch.full((len(features), width), pad_id, dtype=torch.long)
    labels = torch.full((len(features), width), IGNORE_INDEX, dtype=torch.long)
    attention = torch.zeros((len(features), width), dtype=torch.long)
    weighted = "weights" in features[0]
    weights = torch.zeros((len(features), width), dtype=torch.float32) if weighted else None
    for row, f in enumerate(features):
        n = len(f["input_ids"])
        ids[row, :n] = torch.as_tensor(f["input_ids"])
        labels[row, :n] = torch.as_tensor(f["labels"])
        attention[row, :n] = 1
        if weighted:
            weights[row, :n] = torch.as_tensor(f["weights"])
    batch = {"input_ids": ids, "attention_mask": attention, "labels": labels}
    if weighted:
        batch["weights"] = weights
    return batch
