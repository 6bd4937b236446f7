import json

import numpy as np
import pytest
import torch

from robust_sft.data.examples import Example, tokenize_examples
from robust_sft.scoring.batching import pad_batch, plan_batches
from robust_sft.scoring.files import TokenizerMismatchError, load_scores
from robust_sft.scoring.token_nll import (
    ScoreConfig,
    TokenScorer,
    chunked_token_nll,
    logit_postprocessor,
    score,
    score_tokenized,
)
from tests.conftest import make_rows


@pytest.fixture(scope="module")
def model_and_examples(tiny_tokenizer):
    from robust_sft.models.tiny import build_model

    model = build_model(tiny_tokenizer, hidden_size=32, num_layers=2, num_heads=2, seed=1).eval()
    examples = [Example(r["id"], [{"role": "user", "content": r["prompt"]},
                                  {"role": "assistant", "content": r["answer"]}]) for r in make_rows(16)]
    return model, tokenize_examples(tiny_tokenizer, examples, 512, progress=False)


def float64_reference(model, example) -> np.ndarray:
    """One example at a time, float64 everywhere, full log-softmax: the slow obvious definition."""
    import copy

    model64 = copy.deepcopy(model).double()
    ids = torch.tensor([example.input_ids])
    with torch.no_grad():
        log_probs = torch.log_softmax(model64(input_ids=ids).logits[0], dim=-1)
    out = np.full(len(example.input_ids), np.nan)
    for t in range(1, len(example.input_ids)):
        if example.answer_mask[t]:
            out[t] = -log_probs[t - 1, example.input_ids[t]].item()
    return out


@pytest.mark.parametrize("padding_side", ["right", "left"])
@pytest.mark.parametrize("batch_tokens", [1, 100_000])
def test_scores_equal_float64_reference_on_every_answer_token(model_and_examples, padding_side, batch_tokens):
    model, examples = model_and_examples
    ours = score_tokenized(model, examples, pad_id=0, batch_tokens=batch_tokens, padding_side=padding_side,
                           progress=False)
    for example, nll in zip(examples, ours):
        reference = float64_reference(model, example)
        assert len(nll) == len(example.input_ids)
        assert np.array_equal(np.isnan(nll), np.isnan(reference))  # NaN exactly off the answer
        assert np.nanmax(np.abs(nll - reference)) < 1e-4


def test_batches_really_mix_lengths(model_and_examples):
    _, examples = model_and_examples
    lengths = [len(e.input_ids) for e in examples]
    batches = plan_batches(lengths, batch_tokens=100_000, max_batch_size=64)
    assert len(batches) == 1 and len(set(lengths)) > 3


def test_plan_batches_respects_budget_and_covers_everything():
    lengths = [5, 100, 7, 60, 60, 3, 99]
    batches = plan_batches(lengths, batch_tokens=200, max_batch_size=3)
    assert sorted(i for b in batches for i in b) == list(range(len(lengths)))
    for batch in batches:
        assert len(batch) <= 3 and len(batch) * max(lengths[i] for i in batch) <= 200 or len(batch) == 1
    assert batches[0][0] == 1  # longest first: OOM shows early


def test_pad_batch_positions_ignore_left_padding():
    ids, attention, positions, score_mask = pad_batch([[1, 2, 3], [4]], [[0, 1, 1], [1]], pad_id=0, side="left")
    assert ids.tolist() == [[1, 2, 3], [0, 0, 4]]
    assert attention.tolist() == [[1, 1, 1], [0, 0, 1]]
    assert positions.tolist() == [[0, 1, 2], [0, 0, 0]]
    assert score_mask.tolist() == [[False, True, True], [False, False, True]]
    with pytest.raises(ValueError):
        pad_batch([[1]], [[1]], 0, side="middle")


def test_chunked_head_matches_full_log_softmax_and_softcapping():
    torch.manual_seed(0)
    head = torch.nn.Linear(8, 50, bias=False)
    hidden, targets = torch.randn(37, 8), torch.randint(0, 50, (37,))

    class Config:
        final_logit_softcapping = 3.0

    post = logit_postprocessor(Config())
    ours = chunked_token_nll(head, hidden, targets, post, chunk_bytes=4 * 50 * 5)  # 5 rows per chunk
    logits = torch.tanh(head(hidden) / 3.0) * 3.0
    reference = -torch.log_softmax(logits, -1).gather(-1, targets[:, None]).squeeze(-1)
    assert torch.allclose(ours, reference.detach(), atol=1e-5)


def test_fast_path_is_verified_and_can_fall_back(model_and_examples):
    model, examples = model_and_examples
    scorer = TokenScorer(model)
    assert scorer.fast
    fallback = TokenScorer(model)
    fallback.fast = False
    a = score_tokenized(model, examples[:4], pad_id=0, scorer=scorer, progress=False)
    b = score_tokenized(model, examples[:4], pad_id=0, scorer=fallback, progress=False)
    for x, y in zip(a, b):
        assert np.allclose(x, y, atol=1e-5, equal_nan=True)


def test_score_file_columns_metadata_and_alignment(scores_path, tiny_model_dir):
    from robust_sft.models.loading import load_tokenizer

    scores = load_scores(scores_path, load_tokenizer(tiny_model_dir))
    assert len(scores) == 24 and scores.ids[0] == "ex0"
    assert scores.metadata["model"] == tiny_model_dir
    # max_length defaults to the model's context (1024 positions here), at most 4096
    assert scores.metadata["max_length"] == 1024 and "transformers" in scores.metadata["versions"]
    for ids, mask, nll in zip(scores.input_ids, scores.answer_mask, scores.token_nll):
        assert len(ids) == len(mask) == len(nll)
        assert np.isnan(nll[0]) and not np.isnan(nll[mask]).any() and np.isnan(nll[~mask]).all()
    assert scores.messages[0][1]["role"] == "assistant"


def test_score_file_refuses_another_tokenizer(scores_path):
    from robust_sft.models.tiny import build_tokenizer

    other = build_tokenizer(vocab_size=400)
    with pytest.raises(TokenizerMismatchError, match="would not line up"):
        load_scores(scores_path, other)


def test_killed_run_resumes_from_finished_shards(tmp_path, tiny_model_dir, monkeypatch):
    import robust_sft.scoring.token_nll as scoring

    data = tmp_path / "d.jsonl"
    data.write_text("".join(json.dumps(r) + "\n" for r in make_rows(10)))
    config = ScoreConfig(model=tiny_model_dir, data=str(data), out=str(tmp_path / "s.parquet"), shard_size=3,
                         progress=False)
    real = scoring.score_tokenized
    calls = []

    def dies_on_third_shard(model, examples, **kwargs):
        calls.append([e.id for e in examples])
        if len(calls) == 3:
            raise KeyboardInterrupt  # the run is killed mid-way
        return real(model, examples, **kwargs)

    monkeypatch.setattr(scoring, "score_tokenized", dies_on_third_shard)
    with pytest.raises(KeyboardInterrupt):
        score(config)
    assert not (tmp_path / "s.parquet").exists()
    assert len(list((tmp_path / "s.parquet.parts").glob("shard-*.parquet"))) == 2

    calls.clear()
    monkeypatch.setattr(scoring, "score_tokenized", lambda *a, **k: calls.append(1) or real(*a, **k))
    score(config)
    assert len(calls) == 2  # shards 2 and 3 only (4 shards of 3, 3, 3, 1)
    assert not (tmp_path / "s.parquet.parts").exists()
    resumed = load_scores(tmp_path / "s.parquet")
    fresh = load_scores(score(ScoreConfig(**{**config.__dict__, "out": str(tmp_path / "fresh.parquet")})))
    assert resumed.ids == fresh.ids == [f"ex{i}" for i in range(10)]
    for a, b in zip(resumed.token_nll, fresh.token_nll):
        assert np.allclose(a, b, equal_nan=True)


def test_bad_data_is_reported_with_location(tmp_path, tiny_model_dir):
    from robust_sft.data.examples import DataError

    data = tmp_path / "d.jsonl"
    data.write_text('{"id": "a", "prompt": "p", "answer": "x"}\n{"id": "b", "prompt": "p", "answer": ""}\n')
    with pytest.raises(DataError, match=r"d\.jsonl:2 \(id=b\): empty answer"):
        score(ScoreConfig(model=tiny_model_dir, data=str(data), out=str(tmp_path / "s.parquet"), progress=False))
    out = score(ScoreConfig(model=tiny_model_dir, data=str(data), out=str(tmp_path / "s.parquet"),
                            on_error="skip", progress=False))
    scores = load_scores(out)
    assert scores.ids == ["a"] and scores.metadata["n_skipped"] == 1


def test_default_batching_is_device_aware_and_unpadded_batches_need_no_mask():
    from robust_sft.scoring.batching import default_batch_tokens
    from robust_sft.scoring.token_nll import _mask_if_padded

    assert default_batch_tokens(torch.device("cpu")) == 1  # one unpadded example per batch on CPU
    assert default_batch_tokens(torch.device("cuda", 0)) == 16384
    assert _mask_if_padded(torch.ones(2, 5, dtype=torch.long)) is None
    padded = torch.tensor([[1, 1, 1], [0, 1, 1]])
    assert _mask_if_padded(padded) is padded


def test_resume_fingerprint_changes_with_shard_size(model_and_examples):
    from robust_sft.scoring.token_nll import _inputs_fingerprint

    _, examples = model_and_examples
    a = _inputs_fingerprint(ScoreConfig(model="m", data="d", out="o", shard_size=3), "tok", examples)
    b = _inputs_fingerprint(ScoreConfig(model="m", data="d", out="o", shard_size=5), "tok", examples)
    assert a != b  # shards of another size would overlap those already written
