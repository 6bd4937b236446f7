"""The lm-evaluation-harness back end: import guard, metric choice, and a real run on a tiny local model."""

from __future__ import annotations

import importlib.util
import json
import sys

import pytest

from robust_sft.evaluation.harness import evaluate_with_lm_eval, model_args, pick_accuracy

HAS_LM_EVAL = importlib.util.find_spec("lm_eval") is not None
needs_lm_eval = pytest.mark.skipif(not HAS_LM_EVAL, reason="lm-eval not installed (pip install 'robust-sft[lm-eval]')")
MAX_NEW = 6


def test_import_guard_names_the_extra(monkeypatch):
    monkeypatch.setitem(sys.modules, "lm_eval", None)  # makes `import lm_eval` raise ImportError
    with pytest.raises(RuntimeError, match=r"pip install 'robust-sft\[lm-eval\]'"):
        evaluate_with_lm_eval("some/model", ["gsm8k"])


def test_no_task_is_an_error():
    with pytest.raises(ValueError, match="no task"):
        evaluate_with_lm_eval("some/model", [])


def test_pick_accuracy_preference_and_override():
    mc = {"alias": "arc", "acc,none": 0.4, "acc_stderr,none": 0.01, "acc_norm,none": 0.5}
    assert pick_accuracy("arc", mc) == ("acc,none", 0.4)
    assert pick_accuracy("arc", mc, "acc_norm,none") == ("acc_norm,none", 0.5)
    gen = {"exact_match,flexible-extract": 0.7, "exact_match,strict-match": 0.6}
    assert pick_accuracy("gsm8k", gen) == ("exact_match,strict-match", 0.6)
    with pytest.raises(ValueError, match=r"has \['acc_norm,none'\]"):
        pick_accuracy("x", {"acc_norm,none": 0.5, "acc_norm_stderr,none": 0.1})


def test_model_args_cpu_dtype_and_adapter():
    import torch

    assert model_args("m", None, "auto", torch.device("cpu")) == {"pretrained": "m", "dtype": "float32"}
    assert model_args("m", "ad", "bfloat16", torch.device("cpu")) == {"pretrained": "m", "dtype": "bfloat16",
                                                                       "peft": "ad"}


# --------------------------------------------------------------------------------------------- real runs


def _peaky_tiny(directory) -> str:
    """A tiny Llama with large random weights, so greedy argmax is not decided by float noise."""
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    from robust_sft.models.tiny import build_tokenizer

    tokenizer = build_tokenizer()
    torch.manual_seed(0)
    config = LlamaConfig(vocab_size=len(tokenizer), hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                         num_attention_heads=2, num_key_value_heads=2, max_position_embeddings=256,
                         initializer_range=0.2, bos_token_id=tokenizer.bos_token_id,
                         eos_token_id=tokenizer.eos_token_id, pad_token_id=tokenizer.pad_token_id)
    LlamaForCausalLM(config).save_pretrained(directory)
    tokenizer.save_pretrained(directory)
    return str(directory)


def _random_lora(base: str, directory) -> str:
    """A LoRA adapter with non-zero B, so it changes the model's outputs."""
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    torch.manual_seed(1)
    model = get_peft_model(AutoModelForCausalLM.from_pretrained(base),
                           LoraConfig(r=4, lora_alpha=8, target_modules="all-linear", init_lora_weights=False))
    model.save_pretrained(directory)
    return str(directory)


def _our_greedy(base: str, adapter: str | None, prompts: list[str]) -> list[str]:
    from robust_sft.models.generation import SamplingConfig, generate_hf
    from robust_sft.models.loading import load_model, load_tokenizer

    model, tokenizer = load_model(base, adapter=adapter), load_tokenizer(base)
    chats = [[{"role": "user", "content": p}] for p in prompts]
    return [c[0] for c in generate_hf(model, tokenizer, chats, SamplingConfig(max_new_tokens=MAX_NEW), progress=False)]


def _write_tasks(directory, prompts: list[str], targets: list[str]):
    """A generate_until task over a local jsonl, and a multiple-choice task over the same rows."""
    data = directory / "rows.jsonl"
    rows = [{"question": p, "target": t, "choices": ["yes", "no", "maybe"], "label": i % 3}
            for i, (p, t) in enumerate(zip(prompts, targets))]
    data.write_text("".join(json.dumps(r) + "\n" for r in rows))
    common = f"dataset_path: json\ndataset_kwargs:\n  data_files:\n    test: {data}\ntest_split: test\n"
    (directory / "tiny_gen.yaml").write_text(
        "task: tiny_gen\n" + common + "output_type: generate_until\n"
        'doc_to_text: "{{question}}"\ndoc_to_target: target\n'
        f'generation_kwargs:\n  until: ["<|eot|>"]\n  max_gen_toks: {MAX_NEW}\n  do_sample: false\n'
        "metric_list:\n  - metric: exact_match\n    aggregation: mean\n    higher_is_better: true\n")
    (directory / "tiny_mc.yaml").write_text(
        "task: tiny_mc\n" + common + "output_type: multiple_choice\n"
        'doc_to_text: "{{question}}"\ndoc_to_choice: "{{choices}}"\ndoc_to_target: label\n'
        "metric_list:\n  - metric: acc\n    aggregation: mean\n    higher_is_better: true\n")


PROMPTS = [f"what is the sum of {i} and {2 * i}" for i in range(8)]


@needs_lm_eval
def test_simple_evaluate_matches_our_greedy_generation(tmp_path):
    """Half the targets are our own greedy completions: the harness must reproduce exactly those (same chat
    template, same greedy decoding), so exact_match is 0.5; the multiple-choice task reports acc on 8 docs."""
    base = _peaky_tiny(tmp_path / "model")
    ours = _our_greedy(base, None, PROMPTS)
    assert len(set(ours)) > 1  # the targets are not all the same string
    targets = [c if i % 2 == 0 else "no such answer" for i, c in enumerate(ours)]
    _write_tasks(tmp_path, PROMPTS, targets)
    out = tmp_path / "eval"
    accuracies = evaluate_with_lm_eval(base, ["tiny_gen", "tiny_mc"], include_path=tmp_path, include_defaults=False,
                                       batch_size=4, device="cpu", output_dir=out)
    assert accuracies["tiny_gen"] == pytest.approx(0.5)
    saved = json.loads((out / "accuracies.json").read_text())
    assert saved["tiny_gen"] == {"accuracy": 0.5, "n": 8, "metric": "exact_match,none"}
    assert saved["tiny_mc"]["metric"] == "acc,none" and saved["tiny_mc"]["n"] == 8
    mc_samples = [json.loads(line) for line in (out / "tiny_mc.jsonl").read_text().splitlines()]
    assert accuracies["tiny_mc"] == pytest.approx(sum(s["acc"] for s in mc_samples) / 8)
    gen_samples = [json.loads(line) for line in (out / "tiny_gen.jsonl").read_text().splitlines()]
    assert sorted(s["filtered_resps"][0] for s in gen_samples) == sorted(ours)
    assert "results" in json.loads((out / "results.json").read_text())


@needs_lm_eval
def test_simple_evaluate_loads_the_peft_adapter(tmp_path):
    base = _peaky_tiny(tmp_path / "model")
    adapter = _random_lora(base, tmp_path / "adapter")
    with_adapter = _our_greedy(base, adapter, PROMPTS)
    assert with_adapter != _our_greedy(base, None, PROMPTS)  # the adapter matters
    _write_tasks(tmp_path, PROMPTS, with_adapter)
    accuracies = evaluate_with_lm_eval(base, ["tiny_gen"], adapter=adapter, include_path=tmp_path,
                                       include_defaults=False, batch_size=4, device="cpu")
    assert accuracies == {"tiny_gen": pytest.approx(1.0)}
