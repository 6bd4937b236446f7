"""Seconds per training step of each token loss and of SDFT, against plain NLL on the same batches, in one run.

The organism's world-0 base model (shipped) fine-tuned as the demo does (LoRA r16 / alpha 32 on all linear layers,
batch 16) on the target's GT examples (organism/sort, human-style answers), scored once here. Per method: a few
steps after a warm-up step, timed from the Trainer's step begin to its step end (so SDFT's sampling of the
student's answers, up to the task's 160 new tokens, is inside its steps); the rounds alternate the methods, and
each method's figure is its median step over all rounds. Ratios are against nll's median in this same run.

  nll      mean NLL of the GT answer tokens (GT; STM is the same step on fewer tokens)
  stm_soft the soft STM: NLL weighted by sigmoid((log 2.5 - nll_base) / 1), a weights column in every batch
  dft      NLL x detached p;  eaft  NLL x normalised top-20 entropy;  infosft  NLL x InfoSFT's weight
  sdft     TRL's SDFTTrainer: sample one answer per prompt, then the student's and the teacher's forward
           passes and the reverse KL over the vocabulary

    python bench/loss_step_time.py [--steps 4] [--rounds 2] [--threads 1] [--batch 16]
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


def step_times(method: str, base: str, scores: str, teacher: str, max_new_tokens: int, steps: int, batch: int,
               out: Path) -> list[float]:
    """Seconds of each step after the first (warm-up) of `method`."""
    from transformers import TrainerCallback

    from robust_sft.models.loading import load_tokenizer
    from robust_sft.training.config import TrainConfig
    from robust_sft.training.sdft import sdft_trainer
    from robust_sft.training.trainer import peft_config_of, token_trainer, training_argument_values

    options = {"mask": "none", **METHODS[method]}
    if method == "sdft":
        options.update(sdft_teacher_prompts=teacher, sdft_max_new_tokens=max_new_tokens)
    config = TrainConfig(model=base, data=scores, output_dir=str(out), learning_rate=3e-4, lora_r=16, lora_alpha=32,
                         per_device_train_batch_size=batch, max_steps=steps + 1, logging_steps=1000, progress=False,
                         **options)
    tokenizer = load_tokenizer(base)
    if method == "sdft":
        trainer, _ = sdft_trainer(config, tokenizer, training_argument_values(config, False, None, False),
                                  peft_config_of(config))
    else:
        trainer, _ = token_trainer(config, tokenizer, None, None, False)
    times: list[float] = []

    class Clock(TrainerCallback):
        def on_step_begin(self, args, state, control, **kwargs):
            self.start = time.perf_counter()

        def on_step_end(self, args, state, control, **kwargs):
            times.append(time.perf_counter() - self.start)

    trainer.add_callback(Clock())
    trainer.args.save_strategy = "no"
    trainer.train()
    return times[1:]


def main() -> None:
    import torch

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--steps", type=int, default=4)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--batch", type=int, default=16)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        base, scores, teacher, max_new = make_scores(work, args.batch * (args.steps + 1))
        times: dict[str, list[float]] = {m: [] for m in METHODS}
        for round_ in range(args.rounds):
            order = list(METHODS) if round_ % 2 == 0 else list(reversed(METHODS))
            for method in order:
                times[method] += step_times(method, base, scores, teacher, max_new, args.steps, args.batch,
                                            work / f"{method}{round_}")
    nll = statistics.median(times["nll"])
    print(f"organism world 0, LoRA r16, batch {args.batch}, {args.threads} thread(s), {args.rounds} rounds x "
          f"{args.steps} timed steps per method")
    print(f"{'method':<10} {'s/step':>8} {'x nll':>7} {'s/example':>10}")
    summary = {}
    for method, values in times.items():
        median = statistics.median(values)
        summary[method] = {"seconds_per_step": median, "ratio_to_nll": median / nll}
        print(f"{method:<10} {median:>8.3f} {median / nll:>7.2f} {median / args.batch:>10.4f}")
    print(json.dumps(summary))


if __name__ == "__main__":
    main()
