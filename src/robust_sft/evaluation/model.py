"""Evaluating a model (+ adapter) on tasks with HF or vLLM: `robust-sft evaluate` and a run's trained models.

`evaluate_model` is the one place that decides what to load (a base with an adapter, merged or not, or full
weights; vLLM takes DoRA adapters merged) and how to generate; `evaluate` is the verb around it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

from robust_sft.core.config_types import require
from robust_sft.evaluation.engine import evaluate_tasks
from robust_sft.evaluation.harness import evaluate_with_lm_eval
from robust_sft.models.gguf import GgufFileOption
from robust_sft.models.loading import load_model, load_tokenizer, vllm_model_parts
from robust_sft.models.options import AdapterOption, Backend, BackendOption, BatchSizeOption, Dtype, DtypeOption
from robust_sft.tasks.loading import LimitOption

Harness = Literal["robust-sft", "lm-eval"]


def evaluate_model(model: str, task_names: list[str], *, adapter: str | None = None, tokenizer: str | None = None,
                   backend: Backend = "hf", dtype: Dtype = "auto", merge: bool = False, progress: bool = True,
                   **evaluate_options) -> dict[str, float]:
    """Accuracy per task of `model` (+ `adapter`), tokenized by `tokenizer` (default: the model's).

    hf loads the model here (`merge` folds the adapter into the weights: same function up to rounding, faster
    generation); vllm generates from the model's files. `evaluate_options` go to `evaluate_tasks`.
    """
    if backend == "vllm":
        from robust_sft.data.synthesis import vllm_sampler

        # The transformers model is not loaded: it would take GPU memory from vLLM.
        model_path, adapter_path = vllm_model_parts(model, adapter) if adapter else (model, None)
        loaded, sampler = None, vllm_sampler(model_path, adapter_path=adapter_path, progress=progress)
    else:
        loaded, sampler = load_model(model, dtype=dtype, adapter=adapter, merge=merge), None
    return evaluate_tasks(loaded, load_tokenizer(tokenizer or model), task_names, sampler=sampler, progress=progress,
                          **evaluate_options)


@dataclass(kw_only=True)
class EvaluateConfig(AdapterOption, LimitOption, BatchSizeOption, BackendOption, GgufFileOption, DtypeOption):
    """Options of `robust-sft evaluate`."""

    model: str = field(metadata={"help": "Base model (Hub name or local path), or a fully fine-tuned model."})
    tasks: list[str] = field(metadata={"help": "Task names, e.g. gsm8k arc_challenge organism/sort."})
    out: str = field(metadata={"help": "Directory for accuracies.json and per-sample <task>.jsonl logs."})
    split: str = field(default="test", metadata={"help": "Split to evaluate."})
    harness: Harness = field(
        default="robust-sft",
        metadata={"help": "robust-sft (our tasks and checkers) or lm-eval (lm-evaluation-harness tasks; optional)."},
    )
    include_path: str | None = field(default=None, metadata={"help": "lm-eval: a directory of task YAMLs."})
    task_paths: list[str] = field(
        default_factory=list, metadata={"help": "Local task data as name=path (offline), e.g. gsm8k=gsm8k.jsonl."}
    )
    stop: bool = field(default=True, metadata={
        "help": "End completions at each task's stop strings (e.g. MBPP's closing code fence): the same verdicts, "
                "fewer tokens; --no_stop generates to the end of the turn."})

    def check(self) -> None:
        require(all("=" in item for item in self.task_paths), f"task_paths must be name=path items: {self.task_paths}")


def evaluate(config: EvaluateConfig) -> dict[str, float]:
    """`robust-sft evaluate`: accuracy per task, with accuracies.json and per-sample logs in `config.out`."""
    if config.harness == "lm-eval":
        return evaluate_with_lm_eval(config.model_ref(), config.tasks, adapter=config.adapter, limit=config.limit,
                                     batch_size=config.batch_size, dtype=config.dtype,
                                     include_path=config.include_path, output_dir=config.out)
    return evaluate_model(config.model_ref(), config.tasks, adapter=config.adapter, backend=config.backend,
                          dtype=config.dtype, split=config.split, limit=config.limit, batch_size=config.batch_size,
                          log_dir=config.out, task_paths=dict(item.split("=", 1) for item in config.task_paths),
                          stop=config.stop)
