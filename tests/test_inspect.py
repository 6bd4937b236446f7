"""`robust-sft inspect`: the page's numbers, its compact token data, and the verb (the browser test is separate)."""

import base64
import hashlib
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
    render_page,
    token_strings,
    write_inspect,
)
from robust_sft.scoring.files import Scores, load_scores
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
    assert "tau must be greater than 1" in capsys.readouterr().err
    assert not out.exists()


def test_inspect_refuses_a_tokenizer_that_did_not_make_the_ids(scores_path, tmp_path):
    from robust_sft.models.tiny import build_tokenizer
    from robust_sft.scoring.files import TokenizerMismatchError

    with pytest.raises(TokenizerMismatchError, match="GT"):
        write_inspect({"GT": scores_path}, tmp_path / "p.html", tokenizer=build_tokenizer(vocab_size=300))


def test_page_size_holds_a_bounded_number_of_tokens():
    from robust_sft.report.inspect import PAGE_TOKENS, page_size_for

    assert page_size_for(1000) * 1000 <= PAGE_TOKENS and page_size_for(10) == 50 and page_size_for(1e6) == 5


# --------------------------------------------------------------------------------------------- the page, pinned


class _LetterTokenizer:
    """A hand-made tokenizer: id k is the letter chr(97 + k % 26) (ids 0 and 1 special; 5 a word-start piece)."""

    all_special_ids = (0, 1)

    def __len__(self):
        return 40

    def convert_ids_to_tokens(self, ids):
        return [None if i == 39 else ("\u2581" if i == 5 else "") + chr(97 + i % 26) for i in ids]

    def convert_tokens_to_string(self, pieces):
        return "".join(pieces).replace("\u2581", " ").lstrip()


def pinned_scores() -> dict[str, Scores]:
    """Two small score files of overlapping prompts, with a NaN token, an empty answer and a special token."""
    rng = np.random.default_rng(16)

    def example(n, answer_from):
        ids = rng.integers(0, 40, n)
        mask = np.arange(n) >= answer_from
        nll = rng.exponential(1.2, n).astype(np.float32)
        return ids, mask, nll

    rows = [example(12, 4), example(9, 3), example(6, 6), example(15, 2), example(7, 1)]
    rows[1][2][5] = np.nan
    messages = [[{"role": "user", "content": f"question {k} </script>"}, {"role": "assistant", "content": "a"}]
                for k in range(5)]
    messages[4] = [{"role": "system", "content": "be brief"}, {"role": "user", "content": "q4"},
                   {"role": "assistant", "content": "a"}]
    first = Scores(ids=[f"p{k}" for k in range(5)], input_ids=[r[0] for r in rows],
                   answer_mask=[r[1] for r in rows], token_nll=[r[2] for r in rows], messages=messages,
                   metadata={"model": "letters"})
    second = scaled_copy(first, 1.7, slice(1, 5))
    second.ids = ["p1", "p2", "p5", "p3"]
    return {"gt": first, "self_output": second}


PINNED_PAGES = {  # sha256 of the page: any change to what it shows or how it encodes it changes these
    "default": "d8e960e52411ad0f445b8cf84f0384e57c63749310474a957a2ebd5b2ed85de1",
    "capped": "b983decc60b43d042cc4c160b13f97c2649e2a0a8558b465833ab2f7adfe03fe",
    "one_file": "9aca7e6c98fb6454b0ad946d9666a89e7ce665bc888c2ddc52ed90d9dbd867b3",
}


def pinned_page(kind: str) -> str:
    named = pinned_scores()
    evidence = evidence_from_results({"name": "run", "model": "m", "methods": {
        "gt": {"trained_token_ppl": 3.0, "mean": {"bwt": -10.0}},
        "stm": {"trained_token_ppl": 1.5, "mean": {"bwt": -2.0}},
        "so": {"trained_token_ppl": 1.2, "mean": {"bwt": -1.0}}}})
    if kind == "default":
        data = build_page_data(named, tokenizer=_LetterTokenizer(), evidence=evidence)
    elif kind == "capped":
        data = build_page_data(named, tau=1.5, tokenizer=_LetterTokenizer(), max_examples=3, max_tokens=20,
                               title="capped <page>", page_size=7)
    else:
        data = build_page_data({"gt": named["gt"]}, tau=10.0, tokenizer=_LetterTokenizer(), max_tokens=None)
    return render_page(data)


@pytest.mark.parametrize("kind", sorted(PINNED_PAGES))
def test_the_page_is_byte_identical_for_a_fixed_input(kind):
    page = pinned_page(kind)
    assert page.count("__DATA__") == 0 and "</script>" in page
    assert hashlib.sha256(page.encode("utf-8")).hexdigest() == PINNED_PAGES[kind]


# --------------------------------------------------------------------------------------------- the policies


def test_policy_rows_say_what_each_policy_would_mask(scores_path, tiny_tokenizer):
    import tests.fake_tasks  # noqa: F401  (registers the test tasks)
    from robust_sft.masking.policies import MaskPolicy, apply_policy, auto_tau

    gt = load_scores(scores_path)
    hinted = scaled_copy(gt, 0.5, slice(0, len(gt)))
    data = build_page_data({"GT": gt}, tau=2.5, tokenizer=tiny_tokenizer, span_task="test/even_length",
                           hinted={"GT": hinted})
    rows = {r["policy"]: r for r in data["policies"]["GT"]}
    assert list(rows) == ["STM", "STM, tau auto", "answer-aware", "hindsight"]
    assert rows["STM"]["masked"] == pytest.approx(data["summary"]["GT"]["pct_tokens_above_tau"] / 100)
    assert rows["STM, tau auto"]["tau"] == pytest.approx(auto_tau([gt.answer_nll(i) for i in range(len(gt))]))
    assert rows["STM, tau auto"]["rule"].startswith("auto: 10 x")
    assert rows["answer-aware"]["span_masked"] == 0 and rows["STM"]["span_masked"] > 0
    assert rows["answer-aware"]["prose_masked"] == rows["STM"]["prose_masked"]
    # hindsight keeps what either pass finds at most tau: here the hinted NLLs are half the plain ones
    expected = apply_policy(gt, MaskPolicy(tau=math.exp(2 * math.log(2.5)))).report["masked_fraction"]
    assert rows["hindsight"]["masked"] == pytest.approx(expected)
    alone = build_page_data({"GT": gt}, tau=2.5, tokenizer=tiny_tokenizer)["policies"]["GT"]
    assert [r["policy"] for r in alone] == ["STM", "STM, tau auto"] and alone[0]["span_masked"] is None
    with pytest.raises(ValueError, match="hinted scores given for 'SO', which is none of the files shown"):
        build_page_data({"GT": gt}, tokenizer=tiny_tokenizer, hinted={"SO": hinted})


def test_inspect_verb_takes_tau_auto_a_span_task_and_hinted_scores(scores_path, tmp_path, capsys):
    import tests.fake_tasks  # noqa: F401  (registers the test tasks)

    out = tmp_path / "page.html"
    assert main(["inspect", f"GT={scores_path}", "--tau", "auto", "--span_task", "test/even_length", "--hinted",
                 f"GT={scores_path}", "--out", str(out)]) == 0
    data = page_json(out)
    assert data["tau"] > 10 and data["tau_rule"].startswith("auto:") and data["span_task"] == "test/even_length"
    assert [r["policy"] for r in data["policies"]["GT"]][-1] == "hindsight"
    assert main(["inspect", f"GT={scores_path}", "--span_task", "test/mystery", "--out", str(tmp_path / "x.html")]) == 1
    assert "task 'test/mystery' does not say where its checker reads" in capsys.readouterr().err
