import json

import numpy as np
import pytest

from robust_sft.cli import VERBS, main
from robust_sft.scoring.files import Scores, load_scores
from robust_sft.scoring.stats import format_table, fraction_above, summarize


def test_top_level_help_lists_every_verb(capsys):
    assert main(["--help"]) == 0
    out = capsys.readouterr().out
    assert all(verb in out for verb in VERBS)
    assert main(["frobnicate"]) == 2


@pytest.mark.parametrize("verb, option", [("score", "--batch_tokens"), ("train", "--finetuning"),
                                          ("mask", "--tau"), ("stats", "--histogram")])
def test_every_verb_explains_its_options(capsys, verb, option):
    with pytest.raises(SystemExit) as exit_info:
        main([verb, "--help"])
    assert exit_info.value.code == 0
    out = capsys.readouterr().out
    assert option in out and "(default:" in out


def test_pipeline_from_the_command_line(tmp_path, sft_jsonl, tiny_model_dir, capsys):
    scores = tmp_path / "s.parquet"
    assert main(["score", "--model", tiny_model_dir, "--data", sft_jsonl, "--out", str(scores),
                 "--no_progress"]) == 0
    assert "wrote" in capsys.readouterr().out
    assert main(["stats", f"GT={scores}", str(scores), "--json", "--histogram", str(tmp_path / "h.png")]) == 0
    summaries = json.loads(capsys.readouterr().out)
    assert set(summaries) == {"GT", "s"} and summaries["GT"]["examples"] == 24
    assert (tmp_path / "h.png").read_bytes()[:4] == b"\x89PNG"
    assert main(["mask", str(scores), "--ratio", "0.2", "--mask", "ratio", "--out", str(tmp_path / "m.parquet")]) == 0
    import pyarrow.parquet as pq

    masked = pq.read_table(tmp_path / "m.parquet")
    assert masked.column_names == ["input_ids", "attention_mask", "labels"]  # what axolotl/TRL expect
    assert main(["train", "--model", tiny_model_dir, "--data", str(tmp_path / "m.parquet"), "--output_dir",
                 str(tmp_path / "run"), "--max_steps", "2", "--no_progress"]) == 0
    assert (tmp_path / "run" / "final" / "adapter_model.safetensors").exists()


def test_train_reads_a_yaml_config(tmp_path, scores_path, tiny_model_dir):
    config = tmp_path / "train.yaml"
    config.write_text(f"model: {tiny_model_dir}\ndata: {scores_path}\noutput_dir: {tmp_path / 'run'}\n"
                      "max_steps: 1\nmask: none\nprogress: false\n")
    assert main(["train", str(config)]) == 0
    summary = json.loads((tmp_path / "run" / "train_summary.json").read_text())
    assert summary["config"]["max_steps"] == 1 and summary["mask_report"]["policy"] == "none"


def test_bad_input_gives_a_clear_error_and_no_output(tmp_path, tiny_model_dir, capsys):
    data = tmp_path / "bad.jsonl"
    data.write_text('{"prompt": "p", "answer": "a"}\n{"prompt": "p"}\n')
    out = tmp_path / "s.parquet"
    assert main(["score", "--model", tiny_model_dir, "--data", str(data), "--out", str(out)]) == 1
    err = capsys.readouterr().err
    assert "bad.jsonl:2" in err and "missing field" in err
    assert not out.exists()


def test_summarize_hand_made_scores():
    nan = float("nan")
    scores = Scores(
        ids=["a", "b"], input_ids=[np.arange(4), np.arange(3)],
        answer_mask=[np.array([0, 1, 1, 1], bool), np.array([0, 0, 1], bool)],
        token_nll=[np.array([nan, 0.0, np.log(4.0), 0.0], np.float32), np.array([nan, nan, np.log(2.0)], np.float32)],
        messages=[[], []], metadata={},
    )
    summary = summarize(scores, taus=(1.5, 3))
    assert summary["examples"] == 2 and summary["answer_tokens"] == 4
    # per example exp(mean nll): exp(log(4)/3) and 2
    expected = [4 ** (1 / 3), 2.0]
    assert summary["sequence_ppl_mean"] == pytest.approx(np.mean(expected))
    assert summary["sequence_ppl_var"] == pytest.approx(np.var(expected))
    assert summary["pct_tokens_ppl_above"] == {"1.5": pytest.approx(50.0), "3": pytest.approx(25.0)}
    assert fraction_above(np.log(np.array([1.0, 3.0])), 2.0) == 0.5
    table = format_table({"GT": summary, "SO": summary})
    assert "| sequence ppl mean |" in table and table.count("\n") > 5


def test_stats_of_a_real_score_file_agree_with_its_tokens(scores_path):
    scores = load_scores(scores_path)
    summary = summarize(scores)
    tokens = np.concatenate([scores.answer_nll(i) for i in range(len(scores))])
    assert summary["answer_tokens"] == len(tokens) == sum(int(m.sum()) for m in scores.answer_mask)
