"""Shared fixtures: a tiny local tokenizer/model pair and small SFT data files (no network)."""

from __future__ import annotations

import json
import os

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")


@pytest.fixture(scope="session")
def tiny_tokenizer():
    from robust_sft.models.tiny import build_tokenizer

    return build_tokenizer()


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory):
    from robust_sft.models.tiny import save_tiny

    return str(save_tiny(tmp_path_factory.mktemp("tiny"), hidden_size=32, num_layers=2, num_heads=2))


def make_rows(n: int = 24, seed: int = 0) -> list[dict]:
    from robust_sft.models.tiny import training_corpus

    lines = training_corpus(3 * n, seed=seed)
    return [{"id": f"ex{i}", "prompt": lines[i], "answer": lines[n + i] + " " + lines[2 * n + i]} for i in range(n)]


@pytest.fixture()
def sft_jsonl(tmp_path):
    path = tmp_path / "sft.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in make_rows()))
    return str(path)


@pytest.fixture(scope="session")
def scores_path(tmp_path_factory, tiny_model_dir):
    """A score file of 24 examples under the tiny model (computed once per session)."""
    from robust_sft.scoring.token_nll import ScoreConfig, score

    directory = tmp_path_factory.mktemp("scores")
    data = directory / "sft.jsonl"
    data.write_text("".join(json.dumps(r) + "\n" for r in make_rows()))
    return str(score(ScoreConfig(model=tiny_model_dir, data=str(data), out=str(directory / "s.parquet"),
                                 progress=False)))
