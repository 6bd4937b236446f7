"""`robust-sft inspect`: the page's numbers, its compact token data, and the verb (the browser test is separate)."""

import base64
import json
import math
import re

import numpy as np
import pytest

from robust_sft.cli import main
from robust_sft.report.inspect import (
    CODE_TAU,
    build_page_data,
    dequantise_nll,
    evidence_from_results,
    file_summary,
    masked_curve,
    quantise_nll,
    token_strings,
    write_inspect,
)
from robust_sft.scoring.token_nll import Scores, load_scores
from robust_sft.scoring.stats import fraction_above, summarize


def page_json(path) -> dict:
    text = open(path, encoding="utf-8").read()
    match = re.search(r'<script type="application/json" id="data">(.*?)</script>', text, re.S)
    return json.loads(match.group(1))


def file_tokens(data: dict, name: str):
    f = data["file_tokens"][name]
    width = "<u2" if data["index_bytes"] == 2 else "<u4"
    tokens = np.frombuffer(base64.b64decode(f["tokens"]), width)
    codes = np.frombuffer(base64.b64decode(f["nll"]), np.uint8)
    starts = np.concatenate([[0], np.cumsum(f["n_tokens"])])
    return tokens, codes, starts


def scaled_copy(scores: Scores, factor: float, keep: slice) -> Scores:
    """Another 'training set' of the same prompts: the same answers with scaled NLLs, some examples missing."""
    return Scores(ids=scores.ids[keep], input_ids=scores.input_ids[keep], answer_mask=scores.answer_mask[keep],
                  token_nll=[n * factor for n in scores.token_nll[keep]], messages=scores.messages[keep],
                  metadata=scores.metadata)


@pytest.mark.parametrize("tau", [1.5, 2.5, 10.0])
def test_quantised_nll_marks_exactly_the_tokens_stm_masks(tau):
    rng = np.random.default_rng(0)
    edge = math.log(tau)
    nll = np.concatenate([rng.exponential(1.5, 5000), [edge, np.nextafter(edge, 9), np.nextafter(edge, -9), 0, 40]])
    codes = quantise_nll(nll, tau)
    assert np.array_equal(codes > CODE_TAU, nll > edge)
    inside = (codes > 0) & (codes < 255)
    assert np.all(np.abs(dequantise_nll(codes[inside], tau) - nll[inside]) <= 1 / 32 + 1e-9)


def test_summary_and_curve_agree_with_stats(scores_path):
    scores = load_scores(scores_path)
    summary, reference = file_summary(scores, 2.5), summarize(scores, taus=(2.5,))
    for key in ("examples", "answer_tokens", "sequence_ppl_mean", "sequence_ppl_var", "mean_token_nll"):
        assert summary[key] == pytest.approx(reference[key])
    assert summary["pct_tokens_above_tau"] == pytest.approx(reference["pct_tokens_ppl_above"]["2.5"])
    tokens = np.concatenate([scores.answer_nll(i) for i in range(len(scores))])
    assert summary["masked_tokens"] == int((tokens > math.log(2.5)).sum())
    assert masked_curve(tokens, (1.5, 2.5, 1e9)) == pytest.approx([100 * fraction_above(tokens, t)
                                                                    for t in (1.5, 2.5, 1e9)])


def test_page_holds_every_answer_token_and_is_self_contained(scores_path, tiny_model_dir, tmp_path):
    from robust_sft.models.loading import load_tokenizer

    out = write_inspect({"GT": scores_path}, tmp_path / "inspect.html", tau=2.5)
    html = out.read_text(encoding="utf-8")
    # Opens from disk with nothing fetched: no external script, style, font, image or link.
    assert not re.search(r"(src|href)\s*=|@import|url\(|https?://", html.replace(tiny_model_dir, ""))
    data = page_json(out)
    scores, tokenizer = load_scores(scores_path), load_tokenizer(tiny_model_dir)
    tokens, codes, starts = file_tokens(data, "GT")
    for k, i in enumerate(range(len(scores))):
        answer = scores.answer_mask[i] & ~np.isnan(scores.token_nll[i])
        text = "".join(data["strings"][t] for t in tokens[starts[k]:starts[k + 1]])
        assert text == tokenizer.decode(scores.input_ids[i][answer])  # each token decoded once, in order
        nll = scores.token_nll[i][answer]
        assert np.array_equal(codes[starts[k]:starts[k + 1]] > CODE_TAU, nll > math.log(2.5))
        assert data["prompts"][data["file_tokens"]["GT"]["row"][k]] == scores.messages[i][0]["content"]
    assert data["summary"]["GT"]["examples"] == len(scores) and "heuristic" in data["risk"]["GT"]


def test_several_files_line_up_by_prompt_id(scores_path, tiny_tokenizer):
    gt = load_scores(scores_path)
    low = scaled_copy(gt, 0.2, slice(4, None))  # a lower-perplexity set lacking the first 4 prompts
    data = build_page_data({"GT": gt, "Self-Output": low}, tau=2.5, tokenizer=tiny_tokenizer)
    assert data["row_ids"] == gt.ids and data["total_rows"] == len(gt)
    rows = data["file_tokens"]["Self-Output"]["row"]
    assert [data["row_ids"][r] for r in rows] == low.ids
    kept_gt_tokens = np.concatenate([gt.answer_nll(i) for i in range(4, len(gt))])
    assert data["summary"]["Self-Output"]["mean_token_nll"] == pytest.approx(0.2 * kept_gt_tokens.mean(), rel=1e-5)


def test_max_examples_keeps_the_most_surprising_and_says_so(scores_path, tiny_tokenizer):
    gt = load_scores(scores_path)
    data = build_page_data({"GT": gt}, tau=2.5, tokenizer=tiny_tokenizer, max_examples=5)
    seq = [math.exp(gt.answer_nll(i).mean()) for i in range(len(gt))]
    worst = {gt.ids[i] for i in np.argsort(seq)[::-1][:5]}
    assert set(data["row_ids"]) == worst and data["total_rows"] == len(gt)
    assert data["summary"]["GT"]["examples"] == len(gt)  # the summary still covers every example
    lengths = {gt.ids[i]: len(gt.answer_nll(i)) for i in range(len(gt))}
    ranked = [gt.ids[i] for i in np.argsort(seq, kind="stable")[::-1]]
    budget = sum(lengths[i] for i in ranked[:7]) + 1
    capped = build_page_data({"GT": gt}, tau=2.5, tokenizer=tiny_tokenizer, max_tokens=budget)
    assert set(capped["row_ids"]) == set(ranked[:7])
    assert len(build_page_data({"GT": gt}, tau=2.5, tokenizer=tiny_tokenizer, max_tokens=0)["row_ids"]) == len(gt)


def test_top_tokens_count_occurrences_above_tau(scores_path, tiny_tokenizer):
    gt = load_scores(scores_path)
    data = build_page_data({"GT": gt}, tau=2.5, tokenizer=tiny_tokenizer)
    top = data["top_tokens"]["GT"][0]
    strings = token_strings(tiny_tokenizer, range(len(tiny_tokenizer)))
    count = sum(int(((gt.token_nll[i] > math.log(2.5)) & gt.answer_mask[i]
                     & np.array([strings[t] == top["token"] for t in gt.input_ids[i]])).sum()) for i in range(len(gt)))
    assert top["above"] == count > 0


def test_sentencepiece_word_marker_becomes_a_space():
    class FakeSentencePiece:
        def convert_ids_to_tokens(self, ids):
            return ["\u2581the", "cat", None][: len(ids)]

        def convert_tokens_to_string(self, pieces):
            return "".join(pieces).replace("\u2581", " ").lstrip()  # like Llama's decoder: strips the lead space

    assert token_strings(FakeSentencePiece(), [5, 6, 7]) == {5: " the", 6: "cat", 7: "<7>"}


def test_evidence_relates_trained_token_perplexity_to_bwt():
    results = {"name": "demo", "model": "m", "methods": {
        "gt": {"trained_token_ppl": 3.9, "mean": {"bwt": -71.0}},
        "stm@2.5": {"trained_token_ppl": 1.09, "mean": {"bwt": -5.7}},
        "self_output": {"trained_token_ppl": 1.13, "mean": {"bwt": -10.8}},
        "broken": {"trained_token_ppl": float("nan"), "mean": {"bwt": -1.0}}}}
    evidence = evidence_from_results(results)
    assert [p["method"] for p in evidence["points"]] == ["stm@2.5", "self_output", "gt"]
    assert evidence["spearman"] == pytest.approx(-1.0)


def test_inspect_verb_writes_the_page(scores_path, tmp_path, capsys):
    out = tmp_path / "page.html"
    assert main(["inspect", f"GT={scores_path}", scores_path, "--out", str(out), "--tau", "1.5"]) == 0
    data = page_json(out)
    assert data["files"] == ["GT", "s"] and data["tau"] == 1.5
    assert "wrote" in capsys.readouterr().out


def test_inspect_errors_name_the_file_and_write_nothing(scores_path, tmp_path, capsys):
    out = tmp_path / "page.html"
    assert main(["inspect", str(tmp_path / "missing.parquet"), "--out", str(out)]) == 1
    assert "missing.parquet" in capsys.readouterr().err
    assert main(["inspect", f"GT={scores_path}", "--tokenizer", str(tmp_path / "nowhere"), "--out", str(out)]) == 1
    err = capsys.readouterr().err
    assert "nowhere" in err and "--tokenizer" in err
    assert main(["inspect", f"GT={scores_path}", "--tau", "0.5", "--out", str(out)]) == 1
    assert "tau must be > 1" in capsys.readouterr().err
    assert not out.exists()


def test_inspect_refuses_a_tokenizer_that_did_not_make_the_ids(scores_path, tmp_path):
    from robust_sft.scoring.token_nll import TokenizerMismatchError
    from robust_sft.models.tiny import build_tokenizer

    with pytest.raises(TokenizerMismatchError, match="GT"):
        write_inspect({"GT": scores_path}, tmp_path / "p.html", tokenizer=build_tokenizer(vocab_size=300))


def test_page_size_holds_a_bounded_number_of_tokens():
    from robust_sft.report.inspect import PAGE_TOKENS, page_size_for

    assert page_size_for(1000) * 1000 <= PAGE_TOKENS and page_size_for(10) == 50 and page_size_for(1e6) == 5
