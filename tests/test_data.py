import json

import pytest

from robust_sft.data.examples import (
    PLAIN_CHAT_TEMPLATE,
    DataError,
    DataFormat,
    ErrorLog,
    Example,
    read_examples,
    tokenize_example,
    tokenize_examples,
    tokenizer_fingerprint,
)


def write_jsonl(path, rows):
    path.write_text("".join((r if isinstance(r, str) else json.dumps(r)) + "\n" for r in rows))
    return path


def answer_text(tokenizer, tokenized):
    return tokenizer.decode([t for t, m in zip(tokenized.input_ids, tokenized.answer_mask) if m])


# ------------------------------------------------------------------ reading


def test_reads_prompt_answer_and_alternative_answer_columns(tmp_path):
    path = write_jsonl(tmp_path / "d.jsonl", [
        {"id": "a", "prompt": "p1", "answer": "x"},
        {"id": "b", "prompt": "p2", "completion": "y"},
        {"id": "c", "prompt": "p3", "response": "z", "system": "be brief"},
    ])
    examples = read_examples(path)
    assert [e.id for e in examples] == ["a", "b", "c"]
    assert [e.messages[-1]["content"] for e in examples] == ["x", "y", "z"]
    assert examples[2].messages[0] == {"role": "system", "content": "be brief"}


def test_configurable_column_names_and_row_number_ids(tmp_path):
    path = write_jsonl(tmp_path / "d.jsonl", [{"q": "question", "a": "reply"}])
    (example,) = read_examples(path, DataFormat(prompt_field="q", answer_field="a"))
    assert example.id == "0"
    assert example.messages == [{"role": "user", "content": "question"}, {"role": "assistant", "content": "reply"}]


def test_reads_messages_sharegpt_and_trl_conversational(tmp_path):
    path = write_jsonl(tmp_path / "d.jsonl", [
        {"id": "m", "messages": [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "yo"}]},
        {"id": "s", "conversations": [{"from": "human", "value": "hi"}, {"from": "gpt", "value": "yo"}]},
        {"id": "t", "prompt": [{"role": "user", "content": "hi"}],
         "completion": [{"role": "assistant", "content": "yo"}]},
    ])
    examples = read_examples(path)
    assert all(e.messages == examples[0].messages for e in examples)


@pytest.mark.parametrize("suffix", [".json", ".parquet", "dir"])
def test_reads_json_parquet_and_saved_datasets(tmp_path, suffix):
    import datasets

    rows = [{"id": str(i), "prompt": f"p{i}", "answer": f"a{i}"} for i in range(3)]
    if suffix == ".json":
        path = tmp_path / "d.json"
        path.write_text(json.dumps({"data": rows}))
    elif suffix == ".parquet":
        path = tmp_path / "d.parquet"
        datasets.Dataset.from_list(rows).to_parquet(str(path))
    else:
        path = tmp_path / "saved"
        datasets.DatasetDict({"train": datasets.Dataset.from_list(rows)}).save_to_disk(str(path))
    assert [e.messages[1]["content"] for e in read_examples(path)] == ["a0", "a1", "a2"]


def test_malformed_json_names_file_and_line(tmp_path):
    path = write_jsonl(tmp_path / "d.jsonl", [{"prompt": "p", "answer": "a"}, '{"prompt": "p", "answer":'])
    with pytest.raises(DataError, match=r"d\.jsonl:2: malformed JSON"):
        read_examples(path)


@pytest.mark.parametrize("row, reason", [
    ({"id": "x", "prompt": "p"}, "missing field"),
    ({"id": "x", "prompt": "p", "answer": "   "}, "empty answer"),
    ({"id": "x", "messages": [{"role": "user", "content": "p"}]}, "no assistant turn"),
    ({"id": "x", "messages": [{"role": "robot", "content": "p"}]}, "unknown role"),
    ({"id": "x", "prompt": 3, "answer": "a"}, "must be strings"),
])
def test_bad_rows_raise_with_location_and_reason(tmp_path, row, reason):
    path = write_jsonl(tmp_path / "d.jsonl", [{"prompt": "ok", "answer": "ok"}, row])
    with pytest.raises(DataError, match=rf"d\.jsonl:2 \(id=x\): .*{reason}"):
        read_examples(path)


def test_skip_mode_counts_bad_rows_and_keeps_good_ones(tmp_path):
    path = write_jsonl(tmp_path / "d.jsonl", [
        {"id": "a", "prompt": "p", "answer": "x"}, "not json", {"id": "b", "prompt": "p"},
        {"id": "a", "prompt": "p", "answer": "dup"}, {"id": "c", "prompt": "p", "answer": "y"},
    ])
    errors = ErrorLog()
    examples = read_examples(path, on_error="skip", errors=errors)
    assert [e.id for e in examples] == ["a", "c"]
    assert len(errors.skipped) == 3
    assert "duplicate id 'a'" in errors.summary()


def test_unknown_file_type_and_nothing_usable(tmp_path):
    (tmp_path / "d.csv").write_text("a,b\n")
    with pytest.raises(DataError, match="unsupported file type"):
        read_examples(tmp_path / "d.csv")
    path = write_jsonl(tmp_path / "d.jsonl", ["nope"])
    with pytest.raises(DataError, match="no usable example"):
        read_examples(path, on_error="skip")


# ------------------------------------------------------------------ tokenization


def test_answer_mask_covers_answer_and_end_of_turn_only(tiny_tokenizer):
    example = Example("e", [{"role": "user", "content": "sort 3 1 2"}, {"role": "assistant", "content": "1 2 3"}])
    tokenized = tokenize_example(tiny_tokenizer, example, 128)
    assert answer_text(tiny_tokenizer, tokenized) == "1 2 3<|eot|>"
    prompt = tiny_tokenizer.decode([t for t, m in zip(tokenized.input_ids, tokenized.answer_mask) if not m])
    assert prompt == "<|bos|><|user|>\nsort 3 1 2<|eot|>\n<|assistant|>\n\n"
    # Tokenizing once means the ids are those of the whole rendered conversation.
    text = tiny_tokenizer.apply_chat_template(example.messages, tokenize=False)
    assert tokenized.input_ids == tiny_tokenizer(text, add_special_tokens=False)["input_ids"]


def test_every_assistant_turn_is_trained_in_multi_turn_chats(tiny_tokenizer):
    example = Example("e", [
        {"role": "system", "content": "sys"}, {"role": "user", "content": "u1"},
        {"role": "assistant", "content": "first"}, {"role": "user", "content": "u2"},
        {"role": "assistant", "content": "second"},
    ])
    tokenized = tokenize_example(tiny_tokenizer, example, 128)
    assert answer_text(tiny_tokenizer, tokenized) == "first<|eot|>second<|eot|>"


def test_plain_fallback_template_when_tokenizer_has_none():
    from robust_sft.models.tiny import build_tokenizer

    tokenizer = build_tokenizer(chat_template=None)
    example = Example("e", [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "yo"}])
    tokenized = tokenize_example(tokenizer, example, 64)
    assert answer_text(tokenizer, tokenized) == "yo<|eot|>"
    plain = "<|bos|>### User:\nhi\n\n### Assistant:\nyo<|eot|>\n\n"
    assert tokenizer.decode(tokenized.input_ids) == plain
    assert tokenizer.apply_chat_template(example.messages, chat_template=PLAIN_CHAT_TEMPLATE, tokenize=False) == plain
    assert tokenizer_fingerprint(tokenizer) != tokenizer_fingerprint(build_tokenizer())


def test_long_prompt_is_an_error_and_long_answer_is_truncated(tiny_tokenizer, caplog):
    long_prompt = Example("p", [{"role": "user", "content": "word " * 50}, {"role": "assistant", "content": "x"}])
    with pytest.raises(DataError, match="example p: the prompt is .* max_length=20"):
        tokenize_example(tiny_tokenizer, long_prompt, 20)
    long_answer = Example("a", [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "word " * 50}])
    (tokenized,) = tokenize_examples(tiny_tokenizer, [long_answer], 20, progress=False)
    assert tokenized.truncated and len(tokenized.input_ids) == 20 == len(tokenized.answer_mask)
    messages = [record.getMessage() for record in caplog.records]
    assert "1 example(s) truncated to max_length=20 (answer cut, end-of-turn lost): a" in messages


def test_tokenize_skip_mode_reports_the_example(tiny_tokenizer):
    ok = Example("ok", [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "yo"}])
    bad = Example("bad", [{"role": "user", "content": "word " * 50}, {"role": "assistant", "content": "x"}])
    errors = ErrorLog()
    out = tokenize_examples(tiny_tokenizer, [ok, bad], 20, on_error="skip", errors=errors, progress=False)
    assert [t.id for t in out] == ["ok"] and "example bad" in errors.skipped[0]


def test_sft_data_and_task_data_are_read_by_one_reader(tmp_path):
    import datasets
    import pyarrow as pa
    import pyarrow.parquet as pq

    from robust_sft.data.rows import iter_rows
    from robust_sft.tasks.base import TaskError
    from robust_sft.tasks.loading import read_local

    rows = [{"id": "a", "prompt": "p", "answer": "x"}, {"id": "b", "prompt": "q", "answer": "y"}]
    (tmp_path / "d.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    (tmp_path / "d.json").write_text(json.dumps({"data": rows}))
    pq.write_table(pa.Table.from_pylist(rows), tmp_path / "d.parquet")
    (tmp_path / "splits").mkdir()
    (tmp_path / "splits" / "train.jsonl").write_text((tmp_path / "d.jsonl").read_text())
    datasets.DatasetDict({"train": datasets.Dataset.from_list(rows)}).save_to_disk(str(tmp_path / "saved"))
    for source in ("d.jsonl", "d.json", "d.parquet", "splits", "saved"):
        located = list(iter_rows(tmp_path / source, "train"))
        assert [row for _, row in located] == rows, source
        assert read_local(tmp_path / source, "train") == located, source  # same rows, same locations
        assert [e.id for e in read_examples(tmp_path / source)] == ["a", "b"], source
    assert [where for where, _ in iter_rows(tmp_path / "d.json")] == [f"{tmp_path / 'd.json'}[0]",
                                                                      f"{tmp_path / 'd.json'}[1]"]
    (tmp_path / "bad.jsonl").write_text(json.dumps(rows[0]) + "\nnot json\n")
    with pytest.raises(TaskError, match=r"bad\.jsonl:2: malformed JSON"):  # a task's loader stops at a bad row
        read_local(tmp_path / "bad.jsonl", "train")
    with pytest.raises(DataError, match=r"bad\.jsonl:2: malformed JSON"):  # as SFT data reading does
        read_examples(tmp_path / "bad.jsonl")
