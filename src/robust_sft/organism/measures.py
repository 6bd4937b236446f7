"""World v5's design measures of a base model (docs/organism_v5.md), recorded in its build's base_eval.json.

Per task: base accuracy on up to `limit` test items, and per item kind (taught / unknown; the target per list
length). For the target: the probability of the departure token (the first answer token where the human-style GT
leaves the house style "Answer: X"), accuracy with the answer hinted in the prompt, and whether the model rewrites
a GT answer correctly when asked (Rephrase). Not part of the definition key.
"""

from __future__ import annotations

import json
import statistics
from collections import defaultdict
from pathlib import Path

import torch

from robust_sft.core.rundir import task_file_name
from robust_sft.evaluation.engine import evaluate_task
from robust_sft.tasks import get_task

REWRITE_ITEMS = 100  # target training examples whose GT the model is asked to rewrite


class _Prompted:
    """A task asked through another prompt (hinted, or a rewrite request); it checks answers as the task does."""

    def __init__(self, task, prompt) -> None:
        self.task, self.prompt = task, prompt
        self.name, self.max_new_tokens, self.stop_strings = task.name, task.max_new_tokens, task.stop_strings

    def check_many(self, examples, completions):
        return self.task.check_many(examples, completions)

    def extract(self, completion):
        return self.task.extract(completion)


def departure_index(reference: str, house: str) -> int:
    """The first character where `reference` leaves `house` (its length when `house` is a prefix of it)."""
    return next((i for i, (a, b) in enumerate(zip(reference, house)) if a != b), min(len(reference), len(house)))


@torch.no_grad()
def departure_probabilities(model, tok, task, examples: list[dict], batch_size: int = 64) -> list[float]:
    """Per example, the model's probability of the GT's departure token given the prompt and the GT before it."""
    rows = []
    for e in examples:
        prompt = tok.apply_chat_template([{"role": "user", "content": task.prompt(e)}], tokenize=False,
                                         add_generation_prompt=True)
        reference = task.reference(e)
        cut = departure_index(reference, task.house_reference(e))
        rows.append(tok(prompt + reference[: cut + 1], add_special_tokens=False)["input_ids"])
    probs = []
    for start in range(0, len(rows), batch_size):
        chunk = rows[start:start + batch_size]
        width = max(map(len, chunk))
        ids = torch.tensor([r + [tok.pad_token_id] * (width - len(r)) for r in chunk])
        mask = torch.tensor([[1] * len(r) + [0] * (width - len(r)) for r in chunk])
        logits = model(input_ids=ids, attention_mask=mask).logits.float()
        for i, r in enumerate(chunk):
            probs.append(torch.softmax(logits[i, len(r) - 2], -1)[r[-1]].item())
    return probs


def summary(values: list[float]) -> dict:
    """Quantiles of a distribution of probabilities, and the share below 1e-3."""
    qs = statistics.quantiles(values, n=20, method="inclusive")
    return {"n": len(values), "median": statistics.median(values), "q10": qs[1], "q25": qs[4], "q75": qs[14],
            "q90": qs[17], "share_below_1e-3": sum(v < 1e-3 for v in values) / len(values)}


def _by_kind(examples: list[dict], correct: list[bool]) -> dict[str, float]:
    groups: dict[str, list[bool]] = defaultdict(list)
    for e, ok in zip(examples, correct):
        groups[e["kind"]].append(ok)
    return {kind: sum(oks) / len(oks) for kind, oks in sorted(groups.items())}


def _evaluate(model, tok, task, examples, log_path: Path, progress: bool) -> list[bool]:
    evaluate_task(model, tok, task, examples, batch_size=64, log_path=log_path, progress=progress)
    return [json.loads(line)["correct"] for line in log_path.read_text().splitlines()]


def design_measures(model, tok, world, seed: int, limit: int, log_dir: Path, progress: bool) -> dict:
    """Every figure the v5 criteria read (organism/criteria.py); per-sample logs go to `log_dir`."""
    log_dir.mkdir(parents=True, exist_ok=True)
    accuracy, n, by_kind = {}, {}, {}
    for name in world.TASKS:
        task = get_task(name, seed=seed)
        examples = task.load("test", limit=limit)
        correct = _evaluate(model, tok, task, examples, log_dir / f"{task_file_name(name)}.jsonl", progress)
        accuracy[name], n[name], by_kind[name] = sum(correct) / len(correct), len(correct), _by_kind(examples, correct)
    target = get_task(world.TARGET, seed=seed)
    test, train = target.load("test", limit=limit), target.load("train", limit=400)
    hinted = _evaluate(model, tok, _Prompted(target, target.hinted_prompt), test, log_dir / "hinted.jsonl", progress)
    rewrite = _Prompted(target, lambda e: target.rephrase_prompt(e, target.reference(e)))
    rewrites = _evaluate(model, tok, rewrite, train[:REWRITE_ITEMS], log_dir / "rewrite.jsonl", progress)
    return {"accuracy": accuracy, "n": n, "by_kind": by_kind,
            "departure_p": summary(departure_probabilities(model, tok, target, train)),
            "hinted_target_accuracy": sum(hinted) / len(hinted), "hinted_by_kind": _by_kind(test, hinted),
            "rewrite_accuracy": sum(rewrites) / len(rewrites)}
