"""The weight update of a fine-tune, read from its files: per matrix, the norm and effective rank of
fine-tuned minus base, from a LoRA/DoRA adapter's factors or tensor by tensor for a full fine-tune.

Memory: a LoRA delta is computed from the adapter's two thin factors alone (no base weights); DoRA reads each
base matrix it needs lazily from the base model's safetensors; a full fine-tune is compared tensor by tensor.
"""

from __future__ import annotations

import contextlib
import json
from pathlib import Path

from robust_sft.analysis.measures import dora_delta, effective_rank, lora_scaling, low_rank_singular_values
from robust_sft.models.loading import adapter_config


def local_model_dir(name_or_path: str | Path) -> Path:
    """The directory of a model's files: the path itself, or the Hub cache's snapshot of a model name (offline)."""
    if Path(name_or_path).is_dir():
        return Path(name_or_path)
    from huggingface_hub import snapshot_download

    try:
        return Path(snapshot_download(str(name_or_path), local_files_only=True))
    except (OSError, ValueError) as err:
        raise FileNotFoundError(f"{name_or_path}: neither a directory nor a model in the Hugging Face cache "
                                f"({type(err).__name__})") from None


@contextlib.contextmanager
def open_weights(model_dir: str | Path):
    """A name -> tensor reader over a model's safetensors (one file or sharded); loads one tensor per call."""
    from safetensors import safe_open

    model_dir = local_model_dir(model_dir)
    index = model_dir / "model.safetensors.index.json"
    if index.exists():
        weight_map = json.loads(index.read_text())["weight_map"]
        files = sorted(set(weight_map.values()))
    elif (model_dir / "model.safetensors").exists():
        files, weight_map = ["model.safetensors"], None
    else:
        raise FileNotFoundError(f"{model_dir}: no model.safetensors(.index.json): cannot read the weights lazily")
    with contextlib.ExitStack() as stack:
        handles = {f: stack.enter_context(safe_open(str(model_dir / f), framework="pt")) for f in files}
        if weight_map is None:
            weight_map = {key: files[0] for key in handles[files[0]].keys()}
        yield _Weights(handles, weight_map, model_dir)


class _Weights:
    def __init__(self, handles, weight_map: dict[str, str], model_dir: Path):
        self.handles, self.weight_map, self.model_dir = handles, weight_map, model_dir

    def keys(self) -> list[str]:
        return list(self.weight_map)

    def __contains__(self, key: str) -> bool:
        return key in self.weight_map

    def get(self, key: str):
        if key not in self.weight_map:
            raise KeyError(f"{self.model_dir}: no tensor {key!r}")
        return self.handles[self.weight_map[key]].get_tensor(key)


def _matrix_entry(norm: float, singular_values, shape) -> dict:
    return {"norm": float(norm), "effective_rank": effective_rank(singular_values), "shape": list(shape)}


def adapter_deltas(adapter_dir: str | Path, base_dir: str | Path) -> tuple[dict[str, dict], list[str]]:
    """{matrix name: {norm, effective_rank, shape}} of a LoRA/DoRA adapter's merged update, and the names of the
    adapter's other tensors, left out (e.g. modules_to_save copies, LoRA on embeddings).

    LoRA: from the adapter's factors only (the r x r core gives both norm and singular values). DoRA: the
    merged update depends on the base matrix, read alone from the base model's files.
    """
    import torch
    from peft.utils.other import get_pattern_key
    from safetensors import safe_open

    adapter_dir = Path(adapter_dir)
    config = adapter_config(adapter_dir)
    with safe_open(str(adapter_dir / "adapter_model.safetensors"), framework="pt") as f:
        tensors = {key: f.get_tensor(key) for key in f.keys()}
    modules = sorted({k[: -len(".lora_A.weight")] for k in tensors if k.endswith(".lora_A.weight")})
    if not modules:
        raise ValueError(f"{adapter_dir}: no lora_A weights in adapter_model.safetensors")
    out = {}
    with open_weights(base_dir) if config.get("use_dora") else contextlib.nullcontext() as base:
        for module in modules:
            name = module.removeprefix("base_model.model.")  # the module's name in the base model
            lora_a, lora_b = tensors[f"{module}.lora_A.weight"].float(), tensors[f"{module}.lora_B.weight"].float()
            r = config.get("rank_pattern", {}).get(get_pattern_key(config.get("rank_pattern", {}), name), config["r"])
            alpha = config.get("alpha_pattern", {}).get(
                get_pattern_key(config.get("alpha_pattern", {}), name), config["lora_alpha"])
            if r != lora_a.shape[0]:
                raise ValueError(f"{adapter_dir}: {module} has rank {lora_a.shape[0]} but the config says {r}")
            scaling = lora_scaling(alpha, r, config.get("use_rslora", False))
            shape = (lora_b.shape[0], lora_a.shape[1])
            if config.get("fan_in_fan_out"):  # Conv1D-style weights are stored [in, out]
                shape = shape[::-1]
            magnitude_key = f"{module}.lora_magnitude_vector"
            if config.get("use_dora"):
                weight = base.get(f"{name}.weight").float()
                if config.get("fan_in_fan_out"):
                    raise ValueError(f"{adapter_dir}: DoRA with fan_in_fan_out is not supported by analyze")
                delta = dora_delta(weight, lora_a, lora_b, tensors[magnitude_key], scaling)
                out[f"{name}.weight"] = _matrix_entry(torch.linalg.norm(delta), torch.linalg.svdvals(delta), shape)
            else:
                singular_values = low_rank_singular_values(lora_a, lora_b, scaling)
                # ||delta||_F = sqrt(sum s^2): the core has all of the product's singular values.
                out[f"{name}.weight"] = _matrix_entry(torch.linalg.norm(singular_values), singular_values, shape)
    used = {f"{m}.{part}" for m in modules for part in ("lora_A.weight", "lora_B.weight", "lora_magnitude_vector")}
    return out, sorted(set(tensors) - used)


def full_deltas(finetuned_dir: str | Path, base_dir: str | Path) -> tuple[dict[str, dict], list[str]]:
    """Per-matrix update of a full fine-tune, one tensor pair in memory at a time.

    Every 2-D tensor both models store is compared (embeddings and lm_head included); returns the entries and
    the names of the tensors left out (1-D norms/biases, or stored by one model only, e.g. a tied lm_head).
    """
    import torch

    out, left_out = {}, []
    with open_weights(finetuned_dir) as tuned, open_weights(base_dir) as base:
        for key in sorted(set(tuned.keys()) | set(base.keys())):
            if key not in tuned or key not in base:
                left_out.append(key)
                continue
            after = tuned.get(key)
            if after.ndim != 2:
                left_out.append(key)
                continue
            before = base.get(key)
            if before.shape != after.shape:
                raise ValueError(f"{finetuned_dir}: {key} has shape {tuple(after.shape)} but the base's is "
                                 f"{tuple(before.shape)} ({base_dir})")
            delta = after.float() - before.float()
            out[key] = _matrix_entry(torch.linalg.norm(delta), torch.linalg.svdvals(delta), delta.shape)
    return out, left_out
