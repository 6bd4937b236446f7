"""Evaluating a model on tasks: greedy generation, answer extraction, exact checks, per-sample logs.

Accuracies from here feed TI and BWT (metrics.py). Each task writes `<log_dir>/<task>.jsonl` with one
line per example: id, prompt, completion, extracted answer, correct.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path

from robust_sft.core.artifacts import write_json, write_jsonl
from robust_sft.core.rundir import task_file_name  # the sample logs' names are part of the run directory's layout
from robust_sft.tasks import Task, get_task


@dataclass
class TaskScore:
    task: str
    accuracy: float
    n: int
    n_correct: int


def evaluate_task(
    model,
    tokenizer,
    task: Task,
    examples: list[dict],
    *,
    batch_size: int = 32,
    max_new_tokens: int | None = None,
    log_path: str | Path | None = None,
    progress: bool = True,
    sampler=None,
    stop: bool = True,
) -> TaskScore:
    """Greedy completions for `examples`, checked by the task; accuracy in [0, 1].

    `sampler` (see synthesis.vllm_sampler) replaces HF generate on `model`, e.g. with vLLM. With `stop`,
    generation ends at the task's stop strings (the same verdicts, fewer tokens: see `greedy_completions`).
    """
    from robust_sft.data.synthesis import hf_sampler

    if not examples:
        raise ValueError(f"task {task.name}: no example to evaluate")
    sampler = sampler or hf_sampler(model, tokenizer, batch_size, progress)
    conversations = [[{"role": "user", "content": task.prompt(e)}] for e in examples]
    completions = greedy_completions(sampler, task, conversations, max_new_tokens or task.max_new_tokens, stop)
    correct = task.check_many(examples, completions)
    if log_path is not None:
        write_jsonl(log_path, [
            {"id": e["id"], "prompt": conv[0]["content"], "completion": c, "extracted": task.extract(c), "correct": ok}
            for e, conv, c, ok in zip(examples, conversations, completions, correct)
        ])
    n_correct = sum(correct)
    return TaskScore(task.name, n_correct / len(examples), len(examples), n_correct)


def greedy_completions(sampler, task: Task, conversations: list, max_new_tokens: int, stop: bool = True) -> list[str]:
    """One greedy completion per conversation, stopped at the task's stop strings when `stop`.

    A completion cut at a stop string that the task does not call `complete` (e.g. MBPP's untagged code block,
    whose opening fence is a stop string) is generated again without them, so verdicts are those of full
    completions.
    """
    from robust_sft.models.generation import SamplingConfig, ends_at_stop

    config = SamplingConfig(n=1, temperature=0.0, max_new_tokens=max_new_tokens,
                            stop=tuple(task.stop_strings) if stop else ())
    completions = [c[0] for c in sampler(conversations, config)]
    again = [i for i, c in enumerate(completions) if ends_at_stop(c, config.stop) and not task.complete(c)]
    if again:
        redone = sampler([conversations[i] for i in again], replace(config, stop=()))
        for i, c in zip(again, redone):
            completions[i] = c[0]
    return completions


def evaluate_tasks(
    model,
    tokenizer,
    task_names: list[str],
    *,
    split: str = "test",
    limit: int | dict[str, int | None] | None = None,
    batch_size: int = 32,
    log_dir: str | Path | None = None,
    progress: bool = True,
    task_paths: dict[str, str] | None = None,
    sampler=None,
    task_kwargs: dict[str, dict] | None = None,
    stop: bool = True,
) -> dict[str, float]:
    """Accuracy per task; with `log_dir`, per-sample logs and `accuracies.json` are written there.

    `limit` caps the examples of every task, or of each task by name (a dict; a task not in it is not capped).
    """
    scores = {}
    for name in task_names:
        task = get_task(name, **(task_kwargs or {}).get(name, {}))
        task_limit = limit.get(name) if isinstance(limit, dict) else limit
        examples = task.load(split, limit=task_limit, path=(task_paths or {}).get(name))
        log_path = Path(log_dir) / f"{task_file_name(name)}.jsonl" if log_dir else None
        scores[name] = evaluate_task(model, tokenizer, task, examples, batch_size=batch_size, log_path=log_path,
                                     progress=progress, sampler=sampler, stop=stop)
    accuracies = {name: s.accuracy for name, s in scores.items()}
    if log_dir:
        write_json(Path(log_dir) / "accuracies.json",
                   {name: {"accuracy": s.accuracy, "n": s.n, "n_correct": s.n_correct} for name, s in scores.items()})
    return accuracies
