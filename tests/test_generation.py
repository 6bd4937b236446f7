"""Batched generation on tiny local Llamas with the organism tokenizer."""

from __future__ import annotations

import importlib.util

import pytest
import torch
from transformers import LlamaConfig, LlamaForCausalLM

from robust_sft.models.generation import SamplingConfig, generate, generate_hf
from robust_sft.organism.tokenizer import build_tokenizer

TOK = build_tokenizer()
CHATS = [[{"role": "user", "content": text}] for text in ("Hi", "Sort 3 1 2 please.", "x" * 23, "What is 4 + 5?")]


def _tiny_llama(seed: int = 0, layers: int = 2) -> LlamaForCausalLM:
    torch.manual_seed(seed)
    config = LlamaConfig(vocab_size=len(TOK), hidden_size=64, num_hidden_layers=layers, num_attention_heads=4,
                         num_key_value_heads=4, intermediate_size=128, max_position_embeddings=256,
                         initializer_range=0.2,  # peaky random logits: argmax not decided by float noise
                         bos_token_id=TOK.bos_token_id, eos_token_id=TOK.eos_token_id, pad_token_id=TOK.pad_token_id)
    return LlamaForCausalLM(config).eval()


@pytest.fixture(scope="module")
def model() -> LlamaForCausalLM:
    return _tiny_llama()


def test_greedy_is_deterministic_and_n_copies(model):
    config = SamplingConfig(n=2, max_new_tokens=12)
    first = generate_hf(model, TOK, CHATS, config, progress=False)
    assert first == generate_hf(model, TOK, CHATS, config, progress=False)
    assert all(len(outs) == 2 and outs[0] == outs[1] for outs in first)
    assert any(outs[0] for outs in first)


def test_batched_greedy_equals_one_by_one(model):
    config = SamplingConfig(max_new_tokens=16)
    batched = generate_hf(model, TOK, CHATS, config, batch_size=4, progress=False)
    single = [generate_hf(model, TOK, [chat], config, batch_size=1, progress=False)[0] for chat in CHATS]
    assert batched == single


def test_sampling_n_seeded(model):
    config = SamplingConfig(n=3, temperature=1.0, top_p=0.95, max_new_tokens=10, seed=7)
    outs = generate_hf(model, TOK, CHATS, config, batch_size=6, progress=False)
    assert [len(o) for o in outs] == [3] * len(CHATS)
    assert outs == generate_hf(model, TOK, CHATS, config, batch_size=6, progress=False)
    assert len({s for o in outs for s in o}) > len(CHATS)  # samples differ
    other = generate_hf(model, TOK, CHATS, SamplingConfig(n=3, temperature=1.0, max_new_tokens=10, seed=8),
                        batch_size=6, progress=False)
    assert other != outs


def test_stops_at_end_of_turn():
    # Teach a tiny model "Answer: 7<|im_end|>zzzz..." so it would run on unless generation stops at eos.
    model = _tiny_llama(layers=1).train()
    prompt = TOK.apply_chat_template(CHATS[0], tokenize=False, add_generation_prompt=True)
    ids = torch.tensor([TOK(prompt + "Answer: 7<|im_end|>" + "z" * 20, add_special_tokens=False)["input_ids"]])
    opt = torch.optim.AdamW(model.parameters(), lr=1e-2)
    for _ in range(60):
        model(input_ids=ids, labels=ids).loss.backward()
        opt.step()
        opt.zero_grad()
    model.eval()
    assert generate_hf(model, TOK, CHATS[:1], SamplingConfig(max_new_tokens=30), progress=False) == [["Answer: 7"]]


def test_backend_dispatch_errors(model):
    with pytest.raises(ValueError, match="backend"):
        generate(model, TOK, CHATS, backend="tgi")
    if importlib.util.find_spec("vllm") is None:
        with pytest.raises(RuntimeError, match="vLLM"):
            generate("some/model", None, CHATS, backend="vllm")


def test_stop_tokens_include_the_models_end_of_turn():
    from types import SimpleNamespace

    from robust_sft.models.generation import stop_token_ids

    tokenizer = SimpleNamespace(eos_token_id=1)  # like Gemma-2: eos <eos>, but turns end with <end_of_turn>
    model = SimpleNamespace(generation_config=SimpleNamespace(eos_token_id=[1, 107]))
    assert stop_token_ids(model, tokenizer) == {1, 107}
    model.generation_config.eos_token_id = 7
    assert stop_token_ids(model, tokenizer) == {1, 7}
