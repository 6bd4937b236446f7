"""Scores made elsewhere -> a robust-sft score file, so `stats`, `mask` and `train` work on them.

The input is a dataset of conversations (any shape `data.py` reads) with a per-token column aligned to the
chat-templated token ids, as the paper's original code stores it: one value per token of the whole rendered
conversation, the first a placeholder (token 0 has no context). Values are perplexities (`kind="perplexity"`,


NLL = log ppl) or NLLs. Each example is tokenized here exactly as `score` does, and its column must have one
value per token; otherwise the import stops naming the example. Only answer tokens keep a score (NaN elsewhere),
as in a file written by `score`.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Literal

import numpy as np

from robust_sft.core.artifacts import check_output_file, library_versions, write_parquet
from robust_sft.core.config_types import check_choice
from robust_sft.data.examples import (
    DataFormatOptions,
    ErrorLog,
    row_to_example,
    tokenize_example,
    tokenizer_fingerprint,
)
from robust_sft.data.rows import DataError, iter_rows
from robust_sft.models.loading import load_tokenizer
from robust_sft.scoring.files import SCORES_FORMAT, scores_table

ScoreKind = Literal["perplexity", "nll"]


NO_TRUNCATION = 2**31 - 1


@dataclass(kw_only=True)
class ImportScoresConfig(DataFormatOptions):
    """Options of `robust-sft import-scores`."""

    data: str = field(metadata={"help": "Conversations with a per-token score column (.jsonl, .json, .parquet, "
                                        "a save_to_disk directory or a Hub dataset)."})
    tokenizer: str = field(metadata={"help": "The tokenizer (model name or path) whose chat-templated ids the "
                                             "column is aligned to: the model that scored the data."})
    out: str = field(metadata={"help": "Output score file (Parquet), as written by `robust-sft score`."})
    column: str = field(default="token_ppl", metadata={"help": "The per-token score column."})
    kind: ScoreKind = field(default="perplexity", metadata={"help": "perplexity (NLL = log ppl) or nll."})


def token_nll_from_column(values, n_tokens: int, answer_mask: list[bool], kind: str, where: str) -> np.ndarray:
    """Our float32 token_nll (NaN off the answer) from one example's column; DataError naming `where` if unusable."""
    check_choice("kind", kind, ScoreKind)
    if not isinstance(values, (list, tuple, np.ndarray)):
        raise DataError(f"{where}: the score column must be a list of numbers, got {type(values).__name__}")
    if len(values) != n_tokens:
        raise DataError(f"{where}: {len(values)} scores for {n_tokens} tokens of the chat-templated conversation; "
                        "the column must come from this tokenizer and chat template (one value per token)")
    raw = np.array([math.nan if v is None else v for v in values], dtype=np.float64)
    scored = np.asarray(answer_mask, bool)
    scored[0] = False  # the placeholder
    bad = np.flatnonzero(scored & ~(np.isfinite(raw) & (raw >= (1.0 if kind == "perplexity" else 0.0))))
    if len(bad):
        low = "1" if kind == "perplexity" else "0"
        raise DataError(f"{where}: answer token {bad[0]} has score {float(raw[bad[0]])!r} (a {kind} must be finite, >= {low})")
    nll = np.full(n_tokens, np.nan, dtype=np.float32)
    nll[scored] = np.log(raw[scored]) if kind == "perplexity" else raw[scored]
    return nll


def import_scores(config: ImportScoresConfig) -> Path:
    """Read `config.data`, check each score column against our tokenization, write `config.out`."""
    check_output_file(config.out)  # before any work
    tokenizer = load_tokenizer(config.tokenizer)
    fmt, errors = config.data_format(), ErrorLog()
    tokenized, token_nll, seen = [], [], set()
    for index, (location, row) in enumerate(iter_rows(config.data, fmt.split)):
        try:
            if isinstance(row, DataError):
                raise row
            example = row_to_example(row, location, fmt, index)
            where = f"{location} (id={example.id})"
            if example.id in seen:
                raise DataError(f"{where}: duplicate id")
            if row.get(config.column) is None:
                raise DataError(f"{where}: no score column {config.column!r}; row has {sorted(row)}")
            tokens = tokenize_example(tokenizer, example, NO_TRUNCATION)
            token_nll.append(token_nll_from_column(row[config.column], len(tokens.input_ids), tokens.answer_mask,
                                                   config.kind, where))
        except DataError as err:
            errors.handle(err, config.on_error)
            continue
        seen.add(example.id)
        tokenized.append(tokens)
    if not tokenized:
        raise DataError(f"{config.data}: no example imported ({errors.summary()})")
    metadata = {
        "format": SCORES_FORMAT,
        "model": config.tokenizer,
        "adapter": None,
        "tokenizer_fingerprint": tokenizer_fingerprint(tokenizer),
        "vocab_size": len(tokenizer),
        "data": str(config.data),
        "n_examples": len(tokenized),
        "n_skipped": len(errors.skipped),
        "n_truncated": 0,
        "imported": {"column": config.column, "kind": config.kind},
        "config": asdict(config),
        "versions": library_versions(),
    }
    out = Path(config.out)
    write_parquet(out, scores_table(tokenized, token_nll), metadata)
    return out
