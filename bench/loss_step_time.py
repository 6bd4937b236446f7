"""Seconds per training step of each token loss and of SDFT, against plain NLL on the same batches, in one run.

The organism's world-0 base model (shipped) fine-tuned as the demo does (LoRA r16 / alpha 32 on all linear layers,
batch 16) on the target's GT examples (organism/sort, human-style answers), scored once here. Every method's
trainer is built first; then each round times one `training_step` (forward, loss, backward; the optimizer step is
the same for all and left out) of every method on the same 16 examples, the methods in turn, so a load that
comes and goes on the machine falls on all of them alike. SDFT's step includes sampling the student's answers (up
to the task's 160 new tokens), the student's and the teacher's forward passes and the reverse KL. Per method: the
best (least loaded) and the median step over the rounds, and their ratio to nll's in this same run.

  nll      mean NLL of the GT answer tokens (GT; STM is the same step on fewer tokens)
  stm_soft the soft STM: NLL weighted by sigmoid((log 2.5 - nll_base) / 1), a weights column in every batch
  dft      NLL x detached p;  eaft  NLL x normalised top-20 entropy;  infosft  NLL x InfoSFT's weight
  sdft     TRL's SDFTTrainer: one sampled answer per prompt, distilled toward the reference-conditioned teacher

    python bench/loss_step_time.py [--rounds 10] [--threads 1] [--batch 16]
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
from pathlib import Path

METHODS = {
    "nll": {},
    "stm_soft": {"soft_temperature": 1.0, "tau": 2.5},
    "dft": {"loss": "dft"},
    "eaft": {"loss": "eaft"},
    "infosft": {"loss": "infosft"},
    "sdft": {"loss": "sdft"},
}


def make_scores(work: Path, n: int) -> tuple[str, str, str, int]:
    """(base model, GT score file, sdft teacher prompts, the task's max new tokens) for `n` training examples."""
    from robust_sft.core.artifacts import write_jsonl
    from robust_sft.data.synthesis import rephrase_prompt
    from robust_sft.models.sources import model_source
    from robust_sft.scoring.token_nll import ScoreConfig, score
    from robust_sft.tasks import get_task

    source = model_source("organism")
    base = source.path(0, False)
    task = get_task("organism/sort", **source.task_options("organism/sort", 0))
    examples = task.load("train", limit=n)
    write_jsonl(work / "gt.jsonl", [{"id": e["id"], "prompt": task.prompt(e), "answer": task.reference(e)}
                                    for e in examples])
    write_jsonl(work / "teacher.jsonl", [{"id": e["id"], "teacher_prompt": rephrase_prompt(task, e)}
                                         for e in examples])
    score(ScoreConfig(model=base, data=str(work / "gt.jsonl"), out=str(work / "gt.parquet"), progress=False))
    return base, str(work / "gt.parquet"), str(work / "teacher.jsonl"), task.max_new_tokens


def build_trainer(method: str, base: str, scores: str, teacher: str, max_new_tokens: int, batch: int, out: Path):
    """(trainer, one batch of the first `batch` examples as its training step takes it) for `method`."""
    from robust_sft.models.loading import load_tokenizer
    from robust_sft.training.config import TrainConfig
    from robust_sft.training.data import TokenDataset, collate
    from robust_sft.training.sdft import sdft_trainer
    from robust_sft.training.trainer import peft_config_of, token_trainer, training_argument_values

    options = {"mask": "none", **METHODS[method]}
    if method == "sdft":
        options.update(sdft_teacher_prompts=teacher, sdft_max_new_tokens=max_new_tokens)
    config = TrainConfig(model=base, data=scores, output_dir=str(out), learning_rate=3e-4, lora_r=16, lora_alpha=32,
                         per_device_train_batch_size=batch, progress=False, **options)
    tokenizer = load_tokenizer(base)
    if method == "sdft":
        trainer, _ = sdft_trainer(config, tokenizer, training_argument_values(config, False, None, False),
                                  peft_config_of(config))
        trainer.current_gradient_accumulation_steps = 1  # what train() sets before its steps
        return trainer, [trainer.train_dataset[i] for i in range(batch)]  # TRL's collator passes rows as they are
    trainer, data = token_trainer(config, tokenizer, None, None, False)
    trainer.current_gradient_accumulation_steps = 1
    return trainer, collate([TokenDataset(data)[i] for i in range(batch)], tokenizer.pad_token_id)


def one_step(trainer, batch) -> float:
    """Seconds of one training step (forward, loss, backward) of `trainer` on `batch`."""
    import copy

    inputs = copy.copy(batch)  # the step pops entries of its inputs
    items = None if isinstance(inputs, list) else trainer._get_num_items_in_batch([inputs], trainer.args.device)
    start = time.perf_counter()
    trainer.training_step(trainer.model, inputs, items)
    seconds = time.perf_counter() - start
    trainer.model.zero_grad(set_to_none=True)
    return seconds


def main() -> None:
    import torch

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=10)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--batch", type=int, default=16)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        base, scores, teacher, max_new = make_scores(work, args.batch)
        built = {m: build_trainer(m, base, scores, teacher, max_new, args.batch, work / m) for m in METHODS}
        for trainer, batch in built.values():
            one_step(trainer, batch)  # warm-up
        times: dict[str, list[float]] = {m: [] for m in METHODS}
        for round_ in range(args.rounds):
            for method in (list(METHODS) if round_ % 2 == 0 else list(reversed(METHODS))):
                times[method].append(one_step(*built[method]))
    best, median = min(times["nll"]), statistics.median(times["nll"])
    print(f"organism world 0, LoRA r16, batch {args.batch}, {args.threads} thread(s), {args.rounds} rounds")
    print(f"{'method':<10} {'best s':>8} {'x nll':>7} {'median s':>9} {'x nll':>7} {'best s/example':>15}")
    summary = {}
    for method, values in times.items():
        b, m = min(values), statistics.median(values)
        summary[method] = {"best_seconds": b, "best_ratio_to_nll": b / best, "median_seconds": m,
                           "median_ratio_to_nll": m / median}
        print(f"{method:<10} {b:>8.3f} {b / best:>7.2f} {m:>9.3f} {m / median:>7.2f} {b / args.batch:>15.4f}")
    print(json.dumps(summary))


if __name__ == "__main__":
    main()
