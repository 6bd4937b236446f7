"""Loading causal LMs and tokenizers: device, dtype and attention choices in one place."""

from __future__ import annotations

import logging

logger = logging.getLogger(__name__)

DTYPES = ("auto", "float32", "bfloat16", "float16")


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

    if dtype not in DTYPES:
        raise ValueError(f"dtype must be one of {DTYPES}, not {dtype!r}")
    if dtype == "auto":
        on_gpu = getattr(device, "type", str(device)) == "cuda"
        return torch.bfloat16 if on_gpu and torch.cuda.is_bf16_supported() else torch.float32
    return getattr(torch, dtype)


def context_length(name_or_path: str) -> int | None:
    """Positions the model was built for (max_position_embeddings and its aliases), from its config alone."""
    from transformers import AutoConfig

    config = AutoConfig.from_pretrained(name_or_path)
    config = getattr(config, "text_config", None) or config  # multimodal wrappers keep it on the text model
    for name in ("max_position_embeddings", "n_positions", "max_sequence_length", "seq_length"):
        value = getattr(config, name, None)
        if isinstance(value, int) and value > 0:
            return value
    return None


def load_tokenizer(name_or_path: str):
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(name_or_path)
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
    from transformers import AutoModelForCausalLM

    target = resolve_device(device)
    model = AutoModelForCausalLM.from_pretrained(name_or_path, dtype=resolve_dtype(dtype, target))
    if adapter:
        from peft import PeftModel

        model = PeftModel.from_pretrained(model, adapter)
        if merge:
            model = model.merge_and_unload()
    model.to(target)
    model.eval()
    return model


def merge_adapter(base: str, adapter: str, out_dir) -> "Path":
    """Merge a PEFT adapter into its base weights and save a standalone model (e.g. DoRA for vLLM)."""
    from pathlib import Path

    out = Path(out_dir)
    if (out / "config.json").exists():
        return out
    model = load_model(base, device="cpu", adapter=adapter).merge_and_unload()
    tmp = out.with_name(out.name + ".tmp")
    model.save_pretrained(tmp)
    load_tokenizer(base).save_pretrained(tmp)
    tmp.rename(out)
    return out
