"""lm-evaluation-harness as an optional evaluation back end (`pip install 'robust-sft[lm-eval]'`).

Our own evaluation (evaluation.py) runs the paper's prompts and exact checkers. The harness is the
common yardstick for everything else: its standard tasks (gsm8k, arc_challenge, ifeval, ...) or your
own task YAMLs (`include_path`), on a base model or a base model + the PEFT adapter we trained.

One accuracy per task is returned. The metric is picked from the harness's "<metric>,<filter>" keys:
  1. `metrics[task]` when given (e.g. {"arc_challenge": "acc_norm,none"});
  2. otherwise the first present of PREFERRED_METRICS: "acc,none" (multiple-choice tasks: unnormalised
     accuracy), then "exact_match" with the filters "strict-match", "flexible-extract", "none"
     (generative tasks: gsm8k's strict-match is the "#### n" answer format our own checker uses too;
     a chat model prompted zero-shot by the harness's plain gsm8k prompt rarely writes "####", so
     metrics={"gsm8k": "exact_match,flexible-extract"} (the last number) may be the fairer reading).
Defaults follow the paper: zero-shot (`num_fewshot=0`) with the model's chat template.
"""

from __future__ import annotations

import json
from pathlib import Path

from robust_sft.core.artifacts import write_json, write_jsonl
from robust_sft.models.gguf import resolve_model
from robust_sft.models.loading import resolve_device, resolve_dtype

PREFERRED_METRICS = (
    "acc,none",
    "exact_match,strict-match",
    "exact_match,flexible-extract",
    "exact_match,none",
)
INSTALL_HINT = "pip install 'robust-sft[lm-eval]'"


def _import_lm_eval():
    """The lm_eval package, or a RuntimeError that says how to install it."""
    try:
        import lm_eval
        from lm_eval.tasks import TaskManager
    except ImportError as err:
        raise RuntimeError(
            f"the lm-eval back end needs lm-evaluation-harness: {INSTALL_HINT} (tested with lm-eval==0.4.13)"
        ) from err
    return lm_eval, TaskManager


def model_args(model: str, adapter: str | None, dtype: str, device) -> dict:
    """The harness's HFLM arguments: our dtype policy ('auto' = bf16 on GPU, fp32 on CPU) and the adapter."""
    # The harness loads the model itself: a .gguf file goes in as its converted directory.
    args = {"pretrained": resolve_model(model), "dtype": str(resolve_dtype(dtype, device)).removeprefix("torch.")}
    if adapter:
        args["peft"] = adapter
    return args


def pick_accuracy(task: str, task_results: dict, metric: str | None = None) -> tuple[str, float]:
    """(metric key, value) of one task's harness results; ValueError naming the keys when none fits."""
    candidates = (metric,) if metric else PREFERRED_METRICS
    for key in candidates:
        value = task_results.get(key)
        if isinstance(value, (int, float)):
            return key, float(value)
    available = sorted(k for k in task_results if "," in k and "_stderr" not in k)
    wanted = metric or " / ".join(PREFERRED_METRICS)
    raise ValueError(f"lm-eval task {task!r}: no metric {wanted} in its results (has {available}); "
                     "choose one with metrics={task: key}")


def evaluate_with_lm_eval(
    model: str,
    tasks: list[str],
    *,
    adapter: str | None = None,
    limit: int | float | None = None,
    batch_size: int | str = 16,
    device: str = "auto",
    dtype: str = "auto",
    include_path: str | Path | None = None,
    include_defaults: bool = True,
    output_dir: str | Path | None = None,
    num_fewshot: int | None = 0,
    apply_chat_template: bool = True,
    metrics: dict[str, str] | None = None,
    allow_code_execution: bool = False,
) -> dict[str, float]:
    """Accuracy per task from `lm_eval.simple_evaluate` on `model` (+ PEFT `adapter`).

    include_path: a directory of task YAMLs (local tasks); include_defaults=False skips indexing the
    harness's built-in tasks (about 10 s) when only local ones are used. batch_size: an int, or "auto"
    (GPU). num_fewshot=None keeps each task's own default. allow_code_execution: tasks that run model
    code (the harness's mbpp, humaneval) refuse to run without it; the harness does not sandbox that code.
    With `output_dir`: results.json (the harness's full output), accuracies.json and <task>.jsonl samples.
    """
    if not tasks:
        raise ValueError("lm-eval: no task given")
    lm_eval, TaskManager = _import_lm_eval()

    target = resolve_device(device)
    task_manager = TaskManager(include_path=str(include_path) if include_path else None,
                               include_defaults=include_defaults)
    results = lm_eval.simple_evaluate(
        model="hf",
        model_args=model_args(model, adapter, dtype, target),
        tasks=list(tasks),
        num_fewshot=num_fewshot,
        batch_size=batch_size,
        device=str(target),
        limit=limit,
        task_manager=task_manager,
        apply_chat_template=apply_chat_template,
        log_samples=output_dir is not None,
        confirm_run_unsafe_code=allow_code_execution,
    )
    if results is None:  # a non-zero rank under a distributed launch: rank 0 reports
        return {}
    picked = {task: pick_accuracy(task, results["results"].get(task, {}), (metrics or {}).get(task))
              for task in tasks}
    if output_dir is not None:
        _write_outputs(Path(output_dir), results, picked)
    return {task: value for task, (_, value) in picked.items()}


def _write_outputs(out: Path, results: dict, picked: dict[str, tuple[str, float]]) -> None:
    """The harness's results, our accuracies.json (same shape as evaluation.py's, plus the metric) and samples."""
    write_json(out / "results.json", _jsonable({k: v for k, v in results.items() if k != "samples"}))
    n_samples = results.get("n-samples", {})
    write_json(out / "accuracies.json", {
        task: {"accuracy": value, "n": n_samples.get(task, {}).get("effective"), "metric": key}
        for task, (key, value) in picked.items()
    })
    for task, rows in results.get("samples", {}).items():
        write_jsonl(out / f"{task.replace('/', '__')}.jsonl", _jsonable(rows))


def _jsonable(obj):
    """The harness's output holds values JSON has no type for (numpy scalars, torch dtypes, ...)."""
    return json.loads(json.dumps(obj, default=lambda v: v.item() if hasattr(v, "item") else str(v)))
