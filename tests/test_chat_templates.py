"""Answer spans on real chat templates (Llama-3's original template, Qwen3's) and the tiny test template.

What is trained is checked on the decoded text: each reply plus its end-of-turn token, never a header, a
generation prompt or Qwen3's empty think block.
"""

import pytest

from robust_sft.data import Example, tokenize_example
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
