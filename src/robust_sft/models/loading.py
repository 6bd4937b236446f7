"""Loading causal LMs and tokenizers: device, dtype and attention choices in one place.

Every loader takes a Hub name, a model directory or a .gguf file (models/gguf.py converts it once into a cached
directory), so a GGUF model is an ordinary input of every verb and stage.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path

from robust_sft.core.config_types import check_choice, choices
from robust_sft.core.hashing import file_hash
from robust_sft.models.gguf import resolve_model
from robust_sft.models.options import Dtype

logger = logging.getLogger(__name__)

DTYPES = choices(Dtype)
ADAPTER_CONFIG = "adapter_config.json"  # PEFT's: its presence is what makes a directory an adapter


def resolve_device(device: str = "auto"):
    import torch

    if device != "auto":
        return torch.device(device)
    if torch.cuda.is_available():
        from accelerate import PartialState

        return PartialState().device  # the right GPU under `accelerate launch`
    return torch.device("cpu")


def resolve_dtype(dtype: str, device) -> "torch.dtype":
    """'auto' = bfloat16 on a GPU that supports it, else float32 (CPU bf16 is slow and imprecise)."""
    import torch

    check_choice("dtype", dtype, Dtype)
    if dtype == "auto":
        on_gpu = getattr(device, "type", str(device)) == "cuda"
        return torch.bfloat16 if on_gpu and torch.cuda.is_bf16_supported() else torch.float32
    return getattr(torch, dtype)


def context_length(name_or_path: str) -> int | None:
    """Positions the model was built for (max_position_embeddings and its aliases), from its config alone."""
    from transformers import AutoConfig

    config = AutoConfig.from_pretrained(resolve_model(name_or_path))
    config = getattr(config, "text_config", None) or config  # multimodal wrappers keep it on the text model
    for name in ("max_position_embeddings", "n_positions", "max_sequence_length", "seq_length"):
        value = getattr(config, name, None)
        if isinstance(value, int) and value > 0:
            return value
    return None


def load_tokenizer(name_or_path: str):
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(resolve_model(name_or_path))
    if tokenizer.pad_token is None:
        # Padding positions are never attended to nor scored, so any id works; eos is the usual choice.
        tokenizer.pad_token = tokenizer.eos_token
    return tokenizer


def load_model(name_or_path: str, *, dtype: str = "auto", device: str = "auto", adapter: str | None = None,
               merge: bool = False):
    """Load a causal LM (optionally with a PEFT adapter) in eval mode on the chosen device.

    `merge` folds the adapter into the weights: the same function (up to float rounding), and generation runs
    at the base model's speed instead of paying for the adapter's extra matmuls at every step.
    """
    target = resolve_device(device)
    model = load_causal_lm(name_or_path, resolve_dtype(dtype, target))
    if adapter:
        from peft import PeftModel

        model = PeftModel.from_pretrained(model, adapter)
        if merge:
            model = model.merge_and_unload()
    model.to(target)
    model.eval()
    return model


def load_causal_lm(name_or_path: str, torch_dtype):
    """The causal LM's weights as saved, in `torch_dtype`, where they load (training moves them itself)."""
    from transformers import AutoModelForCausalLM

    return AutoModelForCausalLM.from_pretrained(resolve_model(name_or_path), dtype=torch_dtype)


def is_adapter(model_dir: str | Path) -> bool:
    """Whether a trained model directory holds a PEFT adapter (LoRA/DoRA) rather than full weights."""
    return (Path(model_dir) / ADAPTER_CONFIG).exists()


def adapter_config(adapter_dir: str | Path) -> dict:
    return json.loads((Path(adapter_dir) / ADAPTER_CONFIG).read_text())


def trained_model_parts(base: str, trained: str | Path) -> tuple[str, str | None]:
    """What to load for a trained model directory: (base, adapter) for an adapter, (the directory, None) for
    full weights."""
    return (base, str(trained)) if is_adapter(trained) else (str(trained), None)


def vllm_model_parts(base: str, trained: str | Path) -> tuple[str, str | None]:
    """What vLLM should load for a trained model directory: (base, LoRA adapter), or a merged model for DoRA
    (vLLM serves LoRA adapters, not DoRA) and the directory itself for full weights."""
    model, adapter = trained_model_parts(base, trained)
    if adapter is None or not adapter_config(adapter).get("use_dora"):
        return model, adapter
    # Named by the adapter's content, so a retrained adapter never reuses an old merge.
    merged = Path(adapter).parent / f"merged-{file_hash(Path(adapter) / 'adapter_model.safetensors')}"
    return str(merge_adapter(base, adapter, merged)), None


def merge_adapter(base: str, adapter: str, out_dir) -> "Path":
    """Merge a PEFT adapter into its base weights and save a standalone model (e.g. DoRA for vLLM)."""
    out = Path(out_dir)
    if (out / "config.json").exists():
        return out
    model = load_model(base, device="cpu", adapter=adapter).merge_and_unload()
    tmp = out.with_name(out.name + ".tmp")
    model.save_pretrained(tmp)
    load_tokenizer(base).save_pretrained(tmp)
    tmp.rename(out)
    return out
