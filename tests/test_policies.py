"""The token policies that read more than one score file: tau auto, answer-aware (the task's answer span) and
hindsight (a second scoring with a hint in the prompt), from the data layer to `mask`, `train` and the CLI."""

import json
import math

import numpy as np
import pytest

import tests.fake_tasks  # noqa: F401  (registers the test tasks)
from robust_sft.cli import main
from robust_sft.data.examples import DataFormat, Example, read_examples, tokenize_examples, with_hint
from robust_sft.data.rows import DataError
from robust_sft.masking.diagnostics import answer_span_flags, last_segment
from robust_sft.masking.hindsight import align_hinted
from robust_sft.masking.policies import IGNORE_INDEX, MaskPolicy, apply_policy, hindsight_keep
from robust_sft.scoring.files import Scores, load_scores

# --------------------------------------------------------------------------------------------- the hint in the data


def test_with_hint_appends_to_the_user_turn_before_the_last_answer():
    messages = [{"role": "system", "content": "s"}, {"role": "user", "content": "q1"},
                {"role": "assistant", "content": "a1"}, {"role": "user", "content": "q2"},
                {"role": "assistant", "content": "a2"}]
    hinted = with_hint(messages, "Hint: 7")
    assert hinted[3]["content"] == "q2\n\nHint: 7" and hinted[1]["content"] == "q1"
    assert [m["content"] for m in hinted[4:]] == ["a2"] and messages[3]["content"] == "q2"  # a copy
    assert with_hint(messages, "  ") == messages
    with pytest.raises(DataError, match="no user turn"):
        with_hint([{"role": "system", "content": "s"}, {"role": "assistant", "content": "a"}], "Hint: 7", "x:1")


@pytest.mark.parametrize("tokenizer_of", ["tiny", "organism"])
def test_a_hint_changes_the_prompt_tokens_only(tokenizer_of, tiny_tokenizer):
    from robust_sft.organism.tokenizer import build_tokenizer

    tok = tiny_tokenizer if tokenizer_of == "tiny" else build_tokenizer()
    plain = Example("x", [{"role": "user", "content": "Sort 3 1 2"}, {"role": "assistant", "content": "1 2 3"}])
    hinted = Example("x", with_hint(plain.messages, "Hint: the answer is 1 2 3"))
    a, b = tokenize_examples(tok, [plain, hinted], 256, progress=False)
    assert len(b.input_ids) > len(a.input_ids)
    assert [t for t, m in zip(a.input_ids, a.answer_mask) if m] == [t for t, m in zip(b.input_ids, b.answer_mask) if m]


def test_hint_field_puts_each_rows_hint_into_its_prompt(tmp_path):
    path = tmp_path / "d.jsonl"
    rows = [{"id": "a", "prompt": "p", "answer": "x", "hint": "Hint: x"}, {"id": "b", "prompt": "p", "answer": "y",
            "hint": None}, {"id": "c", "prompt": "p", "answer": "z"}]
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    examples = read_examples(path, DataFormat(hint_field="hint"))
    assert [e.messages[0]["content"] for e in examples] == ["p\n\nHint: x", "p", "p"]
    assert read_examples(path)[0].messages[0]["content"] == "p"  # without hint_field the column is ignored
    path.write_text(json.dumps({"id": "a", "prompt": "p", "answer": "x", "hint": 3}) + "\n")
    with pytest.raises(DataError, match=r"d\.jsonl:1 \(id=a\): the hint 'hint' must be a string"):
        read_examples(path, DataFormat(hint_field="hint"))


# --------------------------------------------------------------------------------------------- answer spans


def organism_scores(answers: list[str]) -> Scores:
    from robust_sft.organism.tokenizer import build_tokenizer

    tok = build_tokenizer()
    examples = [Example(f"e{k}", [{"role": "user", "content": "Sort 2 1."}, {"role": "assistant", "content": a}])
                for k, a in enumerate(answers)]
    tokenized = tokenize_examples(tok, examples, 256, progress=False)
    return Scores([t.id for t in tokenized], [np.asarray(t.input_ids) for t in tokenized],
                  [np.asarray(t.answer_mask, bool) for t in tokenized],
                  [np.zeros(len(t.input_ids), np.float32) for t in tokenized], [e.messages for e in examples], {})


def test_answer_span_flags_mark_the_tokens_the_checker_reads():
    from robust_sft.organism.tokenizer import build_tokenizer
    from robust_sft.organism.world import Sort

    answers = ["Sorted: 1 < 2.\nAnswer: 1 2", "Answer: 3\nAnswer: 1, 2.", "no answer line"]
    scores = organism_scores(answers)
    flags = answer_span_flags(scores, Sort(), build_tokenizer())
    for k, (answer, read) in enumerate(zip(answers[:2], ["1 2", "1, 2."])):
        start, end = last_segment(scores.answer_mask[k])
        at = start + answer.rindex(read)  # one character per token: the span's tokens are its characters
        assert np.flatnonzero(flags[k]).tolist() == list(range(at, at + len(read)))
        assert end - start == len(answer) + 1  # the end-of-turn token, never in the span
    assert flags[2] is None  # nothing for the checker to read


def test_answer_spans_need_a_task_that_says_where_it_reads(tiny_tokenizer):
    from robust_sft.organism.tokenizer import build_tokenizer
    from robust_sft.organism.world import Sort
    from robust_sft.tasks import get_task

    scores = organism_scores(["Answer: 1 2"])
    with pytest.raises(ValueError, match="task 'test/mystery' does not say where its checker reads"):
        answer_span_flags(scores, get_task("test/mystery"), build_tokenizer())
    scores.messages[0] = [{"role": "user", "content": "q"}, {"role": "assistant", "content": "Answer: 9 9"}]
    with pytest.raises(ValueError, match="example 'e0': its answer tokens do not decode to its stored answer text"):
        answer_span_flags(scores, Sort(), build_tokenizer(), where="s.parquet")
    assert answer_span_flags(scores, Sort(), build_tokenizer(), strict=False) == [None]


# --------------------------------------------------------------------------------------------- hinted scores


def hinted_pair() -> tuple[Scores, Scores]:
    """A plain file and its hinted twin: two more prompt tokens, the same answer tokens."""
    plain = Scores(["a", "b"], [np.array([5, 6, 7, 8]), np.array([5, 9, 9])],
                   [np.array([0, 0, 1, 1], bool), np.array([0, 1, 1], bool)],
                   [np.array([np.nan, np.nan, 2.0, 0.1], np.float32), np.array([np.nan, 3.0, 0.5], np.float32)],
                   [[], []], {"model": "m", "tokenizer_fingerprint": "f"})
    hinted = Scores(["b", "a"], [np.array([5, 1, 1, 9, 9]), np.array([5, 6, 1, 1, 7, 8])],
                    [np.array([0, 0, 0, 1, 1], bool), np.array([0, 0, 0, 0, 1, 1], bool)],
                    [np.array([np.nan] * 3 + [0.2, 0.4], np.float32), np.array([np.nan] * 4 + [0.3, 0.2], np.float32)],
                    [[], []], {"model": "m", "tokenizer_fingerprint": "f"})
    return plain, hinted


def test_align_hinted_puts_each_hinted_nll_at_its_tokens_position():
    plain, hinted = hinted_pair()
    aligned = align_hinted(plain, hinted)
    assert np.allclose(aligned[0], [np.nan, np.nan, 0.3, 0.2], equal_nan=True)
    assert np.allclose(aligned[1], [np.nan, 0.2, 0.4], equal_nan=True)


def test_align_hinted_refuses_other_answers_missing_examples_and_another_model():
    plain, hinted = hinted_pair()
    hinted.input_ids[1][5] = 4
    with pytest.raises(ValueError, match=r"h\.parquet: example 'a': its answer tokens differ .* first difference at "
                                         "answer token 1"):
        align_hinted(plain, hinted, "h.parquet")
    plain, hinted = hinted_pair()
    hinted.answer_mask[1][3] = True  # one more answer token: the answers are not the same
    with pytest.raises(ValueError, match="3 against 2 tokens"):
        align_hinted(plain, hinted)
    plain, hinted = hinted_pair()
    hinted.ids[0] = "c"
    with pytest.raises(ValueError, match="example 'b' of the plain score file is missing"):
        align_hinted(plain, hinted)
    plain, hinted = hinted_pair()
    hinted.metadata["model"] = "other"
    with pytest.raises(ValueError, match="scored with model 'other', the plain scores with 'm'"):
        align_hinted(plain, hinted)


# --------------------------------------------------------------------------------------------- the organism, end to end


@pytest.fixture(scope="module")
def organism_gt(tmp_path_factory):
    """Eight organism/sort GT examples scored by the shipped world-0 base model, without and with the hint."""
    from robust_sft.organism.store import base_model_path
    from robust_sft.tasks import get_task

    directory = tmp_path_factory.mktemp("organism_gt")
    task = get_task("organism/sort")
    rows = [{"id": e["id"], "prompt": task.prompt(e), "answer": task.reference(e), "hint": task.hint(e)}
            for e in task.load("train", limit=8)]
    (directory / "gt.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    model = str(base_model_path(0, progress=False))
    for out, extra in (("gt.parquet", []), ("gt.hinted.parquet", ["--hint_field", "hint"])):
        assert main(["score", "--model", model, "--data", str(directory / "gt.jsonl"), "--out", str(directory / out),
                     "--progress", "false", *extra]) == 0
    return directory


def test_the_organisms_hint_is_the_answer():
    from robust_sft.tasks import get_task

    task = get_task("organism/sort")
    example = task.load("train", limit=1)[0]
    assert task.hint(example) == f"Hint: the answer is {example['answer']}"
    assert task.hint(example) not in task.reference(example)


def test_hindsight_from_the_command_line_keeps_the_tokens_the_hint_explains(organism_gt, tmp_path, capsys):
    from robust_sft.masking.export import MaskConfig, mask

    plain, hinted = load_scores(organism_gt / "gt.parquet"), load_scores(organism_gt / "gt.hinted.parquet")
    assert all("Hint: the answer is" in m[0]["content"] for m in hinted.messages)
    aligned = align_hinted(plain, hinted)
    out = tmp_path / "h.parquet"
    assert main(["mask", str(organism_gt / "gt.parquet"), "--mask", "hindsight", "--tau", "2.5", "--hinted_scores",
                 str(organism_gt / "gt.hinted.parquet"), "--out", str(out)]) == 0
    report = json.loads(capsys.readouterr().out.rsplit("wrote", 1)[0])
    labels = pq_labels(out)
    rescued = masked = 0
    for i, nll in enumerate(plain.token_nll):
        answer = plain.answer_mask[i]
        keep = hindsight_keep(nll, aligned[i], answer, 2.5)
        assert (labels[i] != IGNORE_INDEX).tolist() == keep.tolist()
        high = answer & (nll > math.log(2.5))
        rescued += int((high & keep).sum())
        masked += int((answer & ~keep).sum())
    assert rescued > 0 and masked > 0  # the hint explains some surprising tokens, not all
    assert report["kept_above_tau"] == rescued and report["masked_tokens"] == masked
    assert report["examples_with_hint"] == 8
    python = mask(MaskConfig(scores=str(organism_gt / "gt.parquet"), mask="hindsight", tau=2.5,
                             hinted_scores=str(organism_gt / "gt.hinted.parquet"), out=str(tmp_path / "p.parquet")))
    assert python == report


def pq_labels(path) -> list[np.ndarray]:
    from robust_sft.core.artifacts import read_parquet

    table, _ = read_parquet(path)
    return [np.asarray(x) for x in table.column("labels").to_pylist()]


def test_answer_aware_from_the_command_line_never_masks_the_answer(organism_gt, tmp_path, capsys):
    out = tmp_path / "a.parquet"
    assert main(["mask", str(organism_gt / "gt.parquet"), "--mask", "answer_aware", "--tau", "2.5", "--span_task",
                 "organism/sort", "--out", str(out)]) == 0
    report = json.loads(capsys.readouterr().out.rsplit("wrote", 1)[0])
    scores, labels = load_scores(organism_gt / "gt.parquet"), pq_labels(out)
    kept_high = 0
    for i, nll in enumerate(scores.token_nll):
        answer = scores.answer_mask[i]
        start, end = last_segment(answer)
        text = scores.messages[i][-1]["content"]
        at = start + text.rindex("Answer: ") + len("Answer: ")
        in_span = np.zeros_like(answer)
        in_span[at:start + len(text)] = True  # the "Answer:" line is the reference's last: to its end
        keep = labels[i] != IGNORE_INDEX
        high = answer & (nll > math.log(2.5))
        assert not (answer & in_span & ~keep).any()  # no token of the answer span masked
        assert not (high & ~in_span & keep).any()  # every high token outside it masked
        assert (keep == (answer & (in_span | ~high))).all()
        kept_high += int((high & in_span).sum())
    assert kept_high > 0 and report["kept_above_tau"] == kept_high
    assert report["span_task"] == "organism/sort" and report["examples_with_answer_span"] == 8
    assert main(["mask", str(organism_gt / "gt.parquet"), "--mask", "answer_aware", "--out", str(tmp_path / "b.parquet")]) == 1
    assert "answer_aware needs span_task" in capsys.readouterr().err


def test_tau_auto_from_the_command_line_and_in_the_train_summary(organism_gt, tmp_path, capsys):
    from robust_sft.masking.policies import auto_tau
    from robust_sft.training.config import TrainConfig

    scores = load_scores(organism_gt / "gt.parquet")
    tau = auto_tau([scores.answer_nll(i) for i in range(len(scores))])
    assert main(["mask", str(organism_gt / "gt.parquet"), "--tau", "auto", "--out", str(tmp_path / "m.parquet")]) == 0
    report = json.loads(capsys.readouterr().out.rsplit("wrote", 1)[0])
    assert report["tau"] == pytest.approx(tau) and report["tau_rule"].startswith("auto: 10 x the median")
    assert report["masked_tokens"] == apply_policy(scores, MaskPolicy(tau=tau)).report["masked_tokens"]
    assert TrainConfig(model="m", data="d", output_dir="o", tau="auto").policy().tau == "auto"
    assert TrainConfig(model="m", data="d", output_dir="o", tau="3").tau == 3.0  # YAML's strings convert
    with pytest.raises(ValueError, match="tau must be greater than 1"):
        TrainConfig(model="m", data="d", output_dir="o", tau="often")


def test_train_with_a_policy_records_its_tau_and_what_it_kept(organism_gt, tmp_path):
    from robust_sft.organism.store import base_model_path
    from robust_sft.training.config import TrainConfig
    from robust_sft.training.trainer import train

    common = dict(model=str(base_model_path(0, progress=False)), data=str(organism_gt / "gt.parquet"), max_steps=1,
                  per_device_train_batch_size=8, progress=False)
    train(TrainConfig(**common, output_dir=str(tmp_path / "h"), mask="hindsight", tau="auto",
                      hinted_scores=str(organism_gt / "gt.hinted.parquet")))
    summary = json.loads((tmp_path / "h" / "train_summary.json").read_text())
    report = summary["mask_report"]
    assert report["policy"] == "hindsight" and report["tau_rule"].startswith("auto:") and report["tau"] >= 10
    assert summary["trained_tokens"] == report["answer_tokens"] - report["masked_tokens"]
    train(TrainConfig(**common, output_dir=str(tmp_path / "a"), mask="answer_aware", span_task="organism/sort"))
    report = json.loads((tmp_path / "a" / "train_summary.json").read_text())["mask_report"]
    assert report["span_task"] == "organism/sort" and report["kept_above_tau"] > 0 and report["tau_rule"] == "fixed"
