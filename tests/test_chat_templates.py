"""Answer spans on real chat templates (Llama-3's original template, Qwen3's) and the tiny test template.

What is trained is checked on the decoded text: each reply plus its end-of-turn token, never a header, a
generation prompt or Qwen3's empty think block.
"""

import pytest

from robust_sft.data.examples import Example, tokenize_example
from tests.shared_files import real_tokenizer

SINGLE = [{"role": "user", "content": "Add 2 and 3."}, {"role": "assistant", "content": "```python\nprint(2 + 3)\n```"}]
MULTI = [
    {"role": "system", "content": "You are terse."},
    {"role": "user", "content": "First?"}, {"role": "assistant", "content": "One.\r\n\tIndented"},
    {"role": "user", "content": "Second?"}, {"role": "assistant", "content": "Two."},
]


def trained_and_untrained(tokenizer, messages):
    tokenized = tokenize_example(tokenizer, Example("e", messages), 512)
    pairs = list(zip(tokenized.input_ids, tokenized.answer_mask))
    trained = [tokenizer.decode([t]) for t, m in pairs if m]
    untrained = tokenizer.decode([t for t, m in pairs if not m])
    return "".join(trained), untrained, tokenized


@pytest.mark.parametrize("name, eot", [("llama3", "<|eot_id|>"), ("qwen3", "<|im_end|>")])
def test_single_turn_trains_the_reply_and_end_of_turn_only(name, eot):
    tokenizer = real_tokenizer(name)
    trained, untrained, tokenized = trained_and_untrained(tokenizer, SINGLE)
    assert trained == SINGLE[1]["content"] + eot
    text = tokenizer.apply_chat_template(SINGLE, tokenize=False)
    assert tokenized.input_ids == tokenizer(text, add_special_tokens=False)["input_ids"]  # one tokenization
    if name == "llama3":  # the original template's trailing assistant header stays untrained
        assert untrained.endswith("<|start_header_id|>assistant<|end_header_id|>\n\n" * 2)
    else:  # Qwen3's empty think block is the template's, not the answer's
        assert "<think>\n\n</think>\n\n" in untrained


@pytest.mark.parametrize("name, eot", [("llama3", "<|eot_id|>"), ("qwen3", "<|im_end|>")])
def test_multi_turn_with_system_prompt_trains_every_reply(name, eot):
    tokenizer = real_tokenizer(name)
    trained, untrained, _ = trained_and_untrained(tokenizer, MULTI)
    assert trained == f"One.\r\n\tIndented{eot}Two.{eot}"
    assert "You are terse." in untrained and "First?" in untrained and "Second?" in untrained
    assert "One." not in untrained and "Two." not in untrained


def test_tiny_template_multi_turn(tiny_tokenizer):
    trained, untrained, _ = trained_and_untrained(tiny_tokenizer, MULTI)
    assert trained == "One.\r\n\tIndented<|eot|>Two.<|eot|>"
    assert untrained.startswith("<|bos|><|system|>\nYou are terse.<|eot|>\n<|user|>\nFirst?<|eot|>\n<|assistant|>\n")


def test_reply_text_repeated_in_the_prompt_is_located_in_its_own_turn(tiny_tokenizer):
    messages = [{"role": "user", "content": "Say Two."}, {"role": "assistant", "content": "Two."}]
    trained, untrained, _ = trained_and_untrained(tiny_tokenizer, messages)
    assert trained == "Two.<|eot|>" and "Say Two." in untrained


# ------------------------------------------------------------------ the tokenizer fingerprint


def test_fingerprint_ignores_the_pad_token_our_loader_sets():
    from transformers import AutoTokenizer

    from robust_sft.data.examples import tokenizer_fingerprint
    from robust_sft.models.loading import load_tokenizer
    from tests.shared_files import shared_path

    path = str(shared_path("tokenizers/llama3"))
    plain = AutoTokenizer.from_pretrained(path)
    ours = load_tokenizer(path)
    assert plain.pad_token is None and ours.pad_token is not None  # Llama-3 has no pad token of its own
    assert tokenizer_fingerprint(plain) == tokenizer_fingerprint(ours)


def test_load_scores_accepts_the_same_tokenizer_loaded_plainly(tmp_path):
    from transformers import AutoTokenizer

    from robust_sft.core.artifacts import write_parquet
    from robust_sft.data.examples import tokenizer_fingerprint
    from robust_sft.models.loading import load_tokenizer
    from robust_sft.scoring.files import load_scores, scores_table
    from tests.shared_files import shared_path

    path = str(shared_path("tokenizers/llama3"))
    tokenized = tokenize_example(load_tokenizer(path), Example("e", SINGLE), 64)
    out = tmp_path / "s.parquet"
    write_parquet(out, scores_table([tokenized], [[0.0] * len(tokenized.input_ids)]),
                  {"tokenizer_fingerprint": tokenizer_fingerprint(load_tokenizer(path))})
    assert load_scores(out, AutoTokenizer.from_pretrained(path)).ids == ["e"]


@pytest.mark.parametrize("name", ["llama3", "qwen3"])
def test_fingerprint_unchanged_by_calls_with_padding_or_truncation(name):
    from robust_sft.data.examples import tokenizer_fingerprint

    tokenizer = real_tokenizer(name)
    before = tokenizer_fingerprint(tokenizer)
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    tokenizer(["a b c d e", "f"], padding="max_length", truncation=True, max_length=3)
    assert tokenizer_fingerprint(tokenizer) == before


def test_fingerprint_sees_vocabulary_special_tokens_and_template(tiny_tokenizer):
    from robust_sft.data.examples import tokenizer_fingerprint
    from robust_sft.models.tiny import build_tokenizer

    base = tokenizer_fingerprint(tiny_tokenizer)
    assert tokenizer_fingerprint(build_tokenizer(vocab_size=600)) != base
    assert tokenizer_fingerprint(build_tokenizer(chat_template="{{ messages }}")) != base
    other_eos = build_tokenizer()
    other_eos.eos_token = "<|bos|>"
    assert tokenizer_fingerprint(other_eos) != base
