"""How a model is loaded and run: the options every verb that loads a model shares, declared once.

Light on purpose (no torch): verb configs inherit these groups and the command line reads their choices.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

from robust_sft.core.config_types import Options, require

Dtype = Literal["auto", "float32", "bfloat16", "float16"]
Backend = Literal["hf", "vllm"]


@dataclass(kw_only=True)
class DtypeOption(Options):
    dtype: Dtype = field(default="auto", metadata={"help": "Weights' dtype: auto (bf16 on a GPU that supports it, "
                                                           "fp32 on CPU), float32, bfloat16, float16."})


@dataclass(kw_only=True)
class BackendOption(Options):
    backend: Backend = field(default="hf", metadata={
        "help": "Generation: hf (transformers generate on the loaded model) or vllm (GPU, if installed; DoRA "
                "adapters are merged first)."})


@dataclass(kw_only=True)
class AdapterOption(Options):
    adapter: str | None = field(default=None, metadata={
        "help": "A PEFT adapter (LoRA/DoRA) directory to load on top of the model."})


@dataclass(kw_only=True)
class BatchSizeOption(Options):
    batch_size: int = field(default=32, metadata={"help": "Sequences per generate call (hf backend)."})

    def check(self) -> None:
        require(self.batch_size >= 1, f"batch_size must be at least 1, not {self.batch_size}")
