"""`import-scores`: a per-token perplexity column in the original code's layout -> a score file."""

import json

import numpy as np
import pytest

from robust_sft.cli import main
from robust_sft.data.examples import DataError
from robust_sft.scoring.external import ImportScoresConfig, import_scores
from robust_sft.scoring.files import load_scores
from tests.conftest import make_rows


def original_format_rows(scores_path, kind="perplexity"):
    """The rows our scores came from, each with the original code's column: a value for every token of the
    chat-templated conversation (prompt tokens too), the first a placeholder."""
    scores = load_scores(scores_path)
    rng = np.random.default_rng(0)
    rows = []
    for row, nll, mask in zip(make_rows(), scores.token_nll, scores.answer_mask):
        values = np.where(mask & ~np.isnan(nll), nll, rng.uniform(0, 5, len(nll)))  # prompt: anything
        values = np.exp(values) if kind == "perplexity" else values
        rows.append({**row, "token_ppl": [None] + values[1:].tolist()})
    return scores, rows


def write_jsonl(path, rows):
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return str(path)


@pytest.mark.parametrize("kind", ["perplexity", "nll"])
def test_imported_scores_equal_the_scores_they_came_from(tmp_path, tiny_model_dir, scores_path, kind):
    scores, rows = original_format_rows(scores_path, kind)
    data = write_jsonl(tmp_path / "scored.jsonl", rows)
    out = import_scores(ImportScoresConfig(data=data, tokenizer=tiny_model_dir, out=str(tmp_path / "i.parquet"),
                                           kind=kind))
    from robust_sft.models.loading import load_tokenizer

    imported = load_scores(out, load_tokenizer(tiny_model_dir))
    assert imported.ids == scores.ids
    for i in range(len(scores)):
        assert np.array_equal(imported.input_ids[i], scores.input_ids[i])
        assert np.array_equal(imported.answer_mask[i], scores.answer_mask[i])
        np.testing.assert_allclose(imported.token_nll[i], scores.token_nll[i], rtol=1e-5, atol=1e-6, equal_nan=True)


def test_import_scores_cli_then_stats_and_train_accept_the_file(tmp_path, tiny_model_dir, scores_path, capsys):
    _, rows = original_format_rows(scores_path)
    data = write_jsonl(tmp_path / "scored.jsonl", rows)
    out = tmp_path / "imported.parquet"
    assert main(["import-scores", "--data", data, "--tokenizer", tiny_model_dir, "--out", str(out)]) == 0
    assert "wrote" in capsys.readouterr().out
    assert main(["stats", f"GT={out}", "--json"]) == 0
    stats = json.loads(capsys.readouterr().out)["GT"]
    assert stats["examples"] == 24
    assert stats["answer_tokens"] == sum(int(m.sum()) for m in load_scores(scores_path).answer_mask)
    assert main(["train", "--model", tiny_model_dir, "--data", str(out), "--output_dir", str(tmp_path / "run"),
                 "--mask", "none", "--max_steps", "1", "--per_device_train_batch_size", "2", "--progress", "false"]) == 0
    assert (tmp_path / "run" / "final").is_dir()


def test_a_column_of_the_wrong_length_names_the_example(tmp_path, tiny_model_dir, scores_path, capsys):
    _, rows = original_format_rows(scores_path)
    rows[3]["token_ppl"] = rows[3]["token_ppl"][:-1]
    data = write_jsonl(tmp_path / "scored.jsonl", rows)
    config = ImportScoresConfig(data=data, tokenizer=tiny_model_dir, out=str(tmp_path / "i.parquet"))
    with pytest.raises(DataError, match=r"scored.jsonl:4 \(id=ex3\): \d+ scores for \d+ tokens"):
        import_scores(config)
    assert not (tmp_path / "i.parquet").exists()
    assert main(["import-scores", "--data", data, "--tokenizer", tiny_model_dir, "--out", config.out]) == 1
    assert "id=ex3" in capsys.readouterr().err


def test_an_unusable_answer_score_names_the_token(tmp_path, tiny_model_dir, scores_path):
    scores, rows = original_format_rows(scores_path)
    last_answer_token = int(np.flatnonzero(scores.answer_mask[0])[-1])
    rows[0]["token_ppl"][last_answer_token] = 0.5  # a perplexity below 1
    data = write_jsonl(tmp_path / "scored.jsonl", rows)
    with pytest.raises(DataError, match=f"id=ex0\\): answer token {last_answer_token} has score 0.5"):
        import_scores(ImportScoresConfig(data=data, tokenizer=tiny_model_dir, out=str(tmp_path / "i.parquet")))
