"""The code paths a real-model (GPU) run takes, exercised on CPU with a tiny Llama.

bf16 training, gradient checkpointing, LoRA / DoRA / full fine-tuning saved and reloaded for evaluation
and generation, merging a DoRA adapter, and the vLLM import guard. Nothing here needs a GPU or the Hub.
"""

from __future__ import annotations

import json
import math
import sys
from pathlib import Path

import pytest
import torch

from robust_sft.evaluation.engine import evaluate_task
from robust_sft.models.generation import SamplingConfig, generate
from robust_sft.models.loading import load_model, load_tokenizer, merge_adapter, resolve_dtype
from robust_sft.tasks import get_task
from robust_sft.training.config import TrainConfig
from robust_sft.training.trainer import train

GSM8K_FIXTURE = str(Path(__file__).parent / "fixtures" / "gsm8k" / "test.jsonl")
PROBE = "what is the sum of 3 and 4"


@pytest.fixture(scope="module")
def trained(tmp_path_factory, tiny_model_dir, scores_path):
    """train(name) -> output dir; each configuration is trained once per module."""
    done: dict[str, Path] = {}
    root = tmp_path_factory.mktemp("trained")

    def run(name: str, **options) -> Path:
        if name not in done:
            config = TrainConfig(model=tiny_model_dir, data=scores_path, output_dir=str(root / name), mask="none",
                                 max_steps=3, per_device_train_batch_size=8, learning_rate=1e-2, lora_dropout=0.0,
                                 logging_steps=1, progress=False, **options)
            train(config)
            done[name] = root / name
        return done[name]

    return run


def _summary(out: Path) -> dict:
    return json.loads((out / "train_summary.json").read_text())


def _probe_logits(model, tokenizer) -> torch.Tensor:
    ids = tokenizer(PROBE, return_tensors="pt")["input_ids"]
    with torch.no_grad():
        return model(input_ids=ids).logits.float()


def _reload(base: str, out: Path, dtype: str = "auto"):
    """What evaluation does with a trained output: base + adapter, or the full model."""
    final = out / "final"
    if (final / "adapter_config.json").exists():
        return load_model(base, adapter=str(final), dtype=dtype)
    return load_model(str(final), dtype=dtype)


# --------------------------------------------------------------------------------------------- dtype


def test_auto_dtype_is_float32_on_cpu():
    assert resolve_dtype("auto", torch.device("cpu")) == torch.float32
    assert resolve_dtype("bfloat16", torch.device("cpu")) == torch.bfloat16
    with pytest.raises(ValueError, match="dtype must be one of"):
        resolve_dtype("fp8", torch.device("cpu"))


# TrainConfig(dtype="bfloat16") sets TrainingArguments(bf16=True), which transformers refuses without a bf16 GPU
# unless use_cpu=True is passed too. Remove this marker when training.py passes use_cpu on CPU-only machines.
@pytest.mark.parametrize("finetuning", ["lora", "full"])
def test_bf16_training_on_cpu_saves_a_reloadable_model(trained, tiny_model_dir, finetuning):
    out = trained(f"{finetuning}_bf16", finetuning=finetuning, dtype="bfloat16")
    summary = _summary(out)
    assert summary["config"]["dtype"] == "bfloat16" and math.isfinite(summary["train_loss"])
    tokenizer = load_tokenizer(tiny_model_dir)
    model = _reload(tiny_model_dir, out, dtype="bfloat16")
    assert model.get_input_embeddings().weight.dtype == torch.bfloat16
    if finetuning == "full":  # bf16 autocast over float32 master weights: small updates are not rounded away
        saved = json.loads((out / "final" / "config.json").read_text())
        assert saved.get("dtype", saved.get("torch_dtype")) == "float32"
    logits = _probe_logits(model, tokenizer)
    assert torch.isfinite(logits).all()
    base = _probe_logits(load_model(tiny_model_dir, dtype="bfloat16"), tokenizer)
    assert not torch.allclose(logits, base)  # the reloaded model is the trained one, not the base


# --------------------------------------------------------------------------------------------- checkpointing


def _trained_weights(out: Path) -> dict[str, torch.Tensor]:
    from safetensors.torch import load_file

    final = out / "final"
    name = "adapter_model.safetensors" if (final / "adapter_config.json").exists() else "model.safetensors"
    return load_file(str(final / name))


@pytest.mark.parametrize("finetuning", ["lora", "full"])
def test_gradient_checkpointing_trains_to_the_same_weights(trained, finetuning):
    """Checkpointing recomputes activations; it must not change the loss or the update."""
    plain, checkpointed = trained(finetuning, finetuning=finetuning), trained(
        f"{finetuning}_gc", finetuning=finetuning, gradient_checkpointing=True)
    assert math.isfinite(_summary(checkpointed)["train_loss"])
    assert _summary(checkpointed)["train_loss"] == pytest.approx(_summary(plain)["train_loss"], rel=1e-4)
    a, b = _trained_weights(plain), _trained_weights(checkpointed)
    assert a.keys() == b.keys() and all(a[k].shape == b[k].shape for k in a)
    worst = max((a[k].float() - b[k].float()).abs().max().item() for k in a)
    assert worst < 1e-4


def _layer_forwards_in_training(model_dir: str, data: str, out: Path, monkeypatch, **options) -> int:
    """How often the first decoder layer's MLP starts while training 2 steps (recomputations included; a pre-hook,
    since torch stops a recomputation as soon as the saved tensors are back, before a module's forward hooks)."""
    import robust_sft.training.trainer as training

    calls = []
    prepare_model = training.prepare_model

    def prepare_and_count(config):
        model, bf16 = prepare_model(config)
        (mlp,) = [module for name, module in model.named_modules() if name.endswith("layers.0.mlp")]
        mlp.register_forward_pre_hook(lambda *_: calls.append(model.training))
        return model, bf16

    monkeypatch.setattr(training, "prepare_model", prepare_and_count)
    train(TrainConfig(model=model_dir, data=data, output_dir=str(out), mask="none", max_steps=2,
                      per_device_train_batch_size=8, learning_rate=1e-2, progress=False, **options))
    assert all(calls)  # training forwards only
    return len(calls)


@pytest.mark.parametrize("finetuning", ["lora", "full"])
def test_gradient_checkpointing_recomputes_each_layer_in_the_backward_pass(tiny_model_dir, scores_path, tmp_path,
                                                                           monkeypatch, finetuning):
    """With checkpointing on, a layer's activations are recomputed in the backward pass: it runs twice a step."""
    plain = _layer_forwards_in_training(tiny_model_dir, scores_path, tmp_path / "plain", monkeypatch,
                                        finetuning=finetuning)
    checkpointed = _layer_forwards_in_training(tiny_model_dir, scores_path, tmp_path / "gc", monkeypatch,
                                               finetuning=finetuning, gradient_checkpointing=True)
    assert (plain, checkpointed) == (2, 4)


# --------------------------------------------------------------------------------------------- reload


@pytest.mark.parametrize("finetuning", ["lora", "dora", "full"])
def test_saved_model_reloads_for_evaluation_and_generation(trained, tiny_model_dir, tmp_path, finetuning):
    out = trained(finetuning, finetuning=finetuning)
    final = out / "final"
    if finetuning == "full":
        assert (final / "model.safetensors").exists() and not (final / "adapter_config.json").exists()
    else:
        adapter_config = json.loads((final / "adapter_config.json").read_text())
        assert adapter_config["use_dora"] is (finetuning == "dora") and adapter_config["r"] == 16
    tokenizer = load_tokenizer(tiny_model_dir)
    model = _reload(tiny_model_dir, out)
    assert not model.training
    assert not torch.allclose(_probe_logits(model, tokenizer), _probe_logits(load_model(tiny_model_dir), tokenizer))

    task = get_task("gsm8k")
    examples = task.load("test", limit=3, path=GSM8K_FIXTURE)
    log = tmp_path / "gsm8k.jsonl"
    score = evaluate_task(model, tokenizer, task, examples, batch_size=2, max_new_tokens=8, log_path=log,
                          progress=False)
    assert score.n == 3 and 0.0 <= score.accuracy <= 1.0
    logged = [json.loads(line) for line in log.read_text().splitlines()]
    assert [row["id"] for row in logged] == [e["id"] for e in examples]

    # Generation on the reloaded model gives the completions evaluation logged (same greedy decode).
    chats = [[{"role": "user", "content": task.prompt(e)}] for e in examples]
    completions = generate(model, tokenizer, chats, SamplingConfig(max_new_tokens=8), batch_size=3, progress=False)
    assert [c[0] for c in completions] == [row["completion"] for row in logged]


def test_merged_dora_gives_the_adapter_logits(trained, tiny_model_dir, tmp_path):
    out = trained("dora", finetuning="dora")
    tokenizer = load_tokenizer(tiny_model_dir)
    unmerged = _probe_logits(_reload(tiny_model_dir, out), tokenizer)
    merged_dir = merge_adapter(tiny_model_dir, str(out / "final"), tmp_path / "merged")
    assert not (merged_dir / "adapter_config.json").exists()
    merged = _probe_logits(load_model(str(merged_dir)), tokenizer)
    torch.testing.assert_close(merged, unmerged, rtol=1e-4, atol=1e-4)
    base = _probe_logits(load_model(tiny_model_dir), tokenizer)
    assert (merged - base).abs().max() > 1e-3  # the merge carried the trained update


# --------------------------------------------------------------------------------------------- vLLM


def test_vllm_backend_without_vllm_says_how_to_install(monkeypatch, tiny_model_dir):
    from robust_sft.data.synthesis import vllm_sampler

    monkeypatch.setitem(sys.modules, "vllm", None)  # as on a machine without vLLM, even where it is installed
    chats = [[{"role": "user", "content": PROBE}]]
    with pytest.raises(RuntimeError, match=r"pip install 'robust-sft\[vllm\]'"):
        generate(tiny_model_dir, None, chats, backend="vllm")
    with pytest.raises(RuntimeError, match=r"robust-sft\[vllm\]"):
        vllm_sampler(tiny_model_dir, adapter_path="some/adapter")(chats, SamplingConfig())
