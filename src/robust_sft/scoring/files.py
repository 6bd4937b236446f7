"""Score files: the token NLLs of a dataset in Parquet, aligned 1:1 with its token ids; reading them back and
checking them (ids in the vocabulary, finite scores on the answer, the tokenizer that made the ids)."""

from __future__ import annotations

import json
import math
from collections.abc import Collection
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from robust_sft.core.artifacts import read_parquet
from robust_sft.data.examples import TokenizedExample, tokenizer_fingerprint

SCORES_FORMAT = "robust-sft/scores/v1"


# A scored NLL is log-sum-exp minus a logit, >= 0 up to float32 rounding; anything below this is not an NLL.
NLL_FLOOR = -1e-4


class TokenizerMismatchError(ValueError):
    """A score file is used with a tokenizer other than the one that produced its ids."""


@dataclass
class Scores:
    """A score file in memory: one entry per example, arrays aligned with input_ids."""

    ids: list[str]
    input_ids: list[np.ndarray]
    answer_mask: list[np.ndarray]
    token_nll: list[np.ndarray]
    messages: list[list[dict]]
    metadata: dict

    def __len__(self) -> int:
        return len(self.ids)

    def select(self, ids: Collection[str], where: str = "the score file") -> Scores:
        """The examples whose id is in `ids`, in file order. A training set may lack some of them (Self-Output keeps
        only problems with a verified answer); one that holds none of them is an error naming `where`."""
        keep = rows_with_ids(self.ids, ids, where)
        return Scores(ids=[self.ids[i] for i in keep], input_ids=[self.input_ids[i] for i in keep],
                      answer_mask=[self.answer_mask[i] for i in keep], token_nll=[self.token_nll[i] for i in keep],
                      messages=[self.messages[i] for i in keep], metadata=self.metadata)

    def answer_nll(self, i: int) -> np.ndarray:
        """NLLs of the scored answer tokens of example i."""
        mask = self.answer_mask[i] & ~np.isnan(self.token_nll[i])
        return self.token_nll[i][mask]


def scores_table(examples: list[TokenizedExample], token_nll: list[np.ndarray]):
    import pyarrow as pa

    return pa.table(
        {
            "id": pa.array([e.id for e in examples], pa.string()),
            "input_ids": pa.array([e.input_ids for e in examples], pa.list_(pa.int32())),
            "answer_mask": pa.array([e.answer_mask for e in examples], pa.list_(pa.bool_())),
            "token_nll": pa.array([np.asarray(t, np.float32) for t in token_nll], pa.list_(pa.float32())),
            "truncated": pa.array([e.truncated for e in examples], pa.bool_()),
            "messages": pa.array([json.dumps(e.messages, ensure_ascii=False) for e in examples], pa.string()),
        }
    )


def rows_with_ids(ids: list[str], wanted: Collection[str], where: str) -> list[int]:
    """The positions of `ids` that are in `wanted`, in order; an error naming `where` when there are none."""
    wanted = set(wanted)
    keep = [i for i, example_id in enumerate(ids) if example_id in wanted]
    if not keep:
        raise ValueError(f"{where}: none of the {len(wanted)} example ids asked for is in it (e.g. {min(wanted)!r})"
                         if wanted else f"{where}: an empty list of example ids")
    return keep


def _list_column(table, name: str, dtype) -> list[np.ndarray]:
    column = table.column(name).combine_chunks()
    values = column.values.to_numpy(zero_copy_only=False).astype(dtype, copy=False)
    offsets = column.offsets.to_numpy()
    return [values[offsets[i] : offsets[i + 1]] for i in range(len(column))]


def load_scores(path: str | Path, tokenizer=None, ids: Collection[str] | None = None) -> Scores:
    """Read and validate a score file (`validate_scores`); with `tokenizer`, refuse it unless it is the tokenizer
    that made the ids; with `ids`, only those examples (`Scores.select`)."""
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"{path}: no such score file")
    table, metadata = read_parquet(path)
    missing = {"id", "input_ids", "answer_mask", "token_nll"} - set(table.column_names)
    if missing:
        raise ValueError(f"{path}: not a score file (missing columns {sorted(missing)})")
    if tokenizer is not None:
        check_tokenizer_matches(metadata, tokenizer, str(path))
    messages = table.column("messages").to_pylist() if "messages" in table.column_names else [None] * len(table)
    scores = Scores(
        ids=table.column("id").to_pylist(),
        input_ids=_list_column(table, "input_ids", np.int64),
        answer_mask=_list_column(table, "answer_mask", bool),
        token_nll=_list_column(table, "token_nll", np.float32),
        messages=_messages(messages, path),
        metadata=metadata,
    )
    validate_scores(scores, str(path), len(tokenizer) if tokenizer is not None else metadata.get("vocab_size"))
    return scores if ids is None else scores.select(ids, str(path))


def _messages(column: list, path: Path) -> list[list[dict]]:
    try:
        return [json.loads(m) if m else [] for m in column]
    except ValueError as err:
        raise ValueError(f"{path}: the messages column holds malformed JSON ({err})") from None


def validate_scores(scores: Scores, where: str, vocab_size: int | None = None) -> None:
    """Refuse a score file no writer of ours would make; ValueError naming the file and the example.

    Every reader trusts what this checks: one non-empty list per example of equal lengths (within the recorded
    max_length), unique ids, token ids in [0, vocab_size) when the vocabulary is known, and a finite NLL >= 0 on
    every answer token after the first position (which has no context and so no score).
    """
    if len(scores) == 0:
        raise ValueError(f"{where}: the score file holds no example")
    max_length = scores.metadata.get("max_length")
    seen = {}
    for i, example_id in enumerate(scores.ids):
        at = f"{where}: example {example_id!r} (row {i})"
        if example_id is None or example_id in seen:
            raise ValueError(f"{at}: " + ("no id" if example_id is None else f"duplicate id (first at row {seen[example_id]})"))
        seen[example_id] = i
        n = len(scores.input_ids[i])
        if n == 0 or len(scores.answer_mask[i]) != n or len(scores.token_nll[i]) != n:
            raise ValueError(f"{at}: input_ids, answer_mask and token_nll must have one entry per token; they have "
                             f"{n}, {len(scores.answer_mask[i])} and {len(scores.token_nll[i])}")
        if max_length and n > max_length:
            raise ValueError(f"{at}: {n} tokens, more than the file's max_length {max_length}")
        check_token_ids(scores.input_ids[i], vocab_size, at)
        answer = scores.answer_mask[i].copy()
        answer[0] = False
        bad = np.flatnonzero(answer & ~(np.isfinite(scores.token_nll[i]) & (scores.token_nll[i] >= NLL_FLOOR)))
        if len(bad):
            raise ValueError(f"{at}: answer token {bad[0]} has NLL {float(scores.token_nll[i][bad[0]])!r} "
                             "(an NLL must be finite and >= 0)")


def check_token_ids(ids: np.ndarray, vocab_size: int | None, where: str) -> None:
    """Token ids must lie in [0, vocab_size) (only >= 0 when the vocabulary is unknown)."""
    low, high = (int(ids.min()), int(ids.max())) if len(ids) else (0, 0)
    if low < 0 or (vocab_size is not None and high >= vocab_size):
        raise ValueError(f"{where}: token id {low if low < 0 else high} is outside the vocabulary "
                         f"(0 to {vocab_size - 1 if vocab_size else 'its size'})")


def check_tokenizer_matches(metadata: dict, tokenizer, where: str) -> None:
    expected = metadata.get("tokenizer_fingerprint")
    actual = tokenizer_fingerprint(tokenizer)
    if expected != actual:
        raise TokenizerMismatchError(
            f"{where}: made with tokenizer {expected} (model {metadata.get('model')!r}), "
            f"but the tokenizer given is {actual}; its token ids would not line up. Re-score with this model."
        )


def sequence_perplexity(answer_nll: np.ndarray) -> float:
    """The paper's per-example sequence perplexity: exp(mean NLL over answer tokens, end-of-turn included)."""
    return math.exp(float(np.mean(answer_nll))) if len(answer_nll) else float("nan")
