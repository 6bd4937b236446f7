"""Low-perplexity training data made by the model itself, checked by the task's verifier.

- Self-Output: sample N answers per training prompt, keep the ones the verifier accepts, and train on the
  correct one with the lowest perplexity under the model; prompts with no correct sample are dropped.
- Rephrase: show the model the instruction and the reference (GT) answer and ask for its own response
  (the self-distillation template of SDFT); keep the rephrase when it is correct, and train on
  (original prompt, rephrase).

Both return rows {id, prompt, answer} in the shape `robust-sft score` reads, plus a report with counts.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Callable, Literal

import numpy as np

from robust_sft.core.artifacts import check_output_file, write_json, write_jsonl
from robust_sft.core.config_types import check_choice, is_finite_number, require, require_suffix
from robust_sft.core.journal import BatchJournal
from robust_sft.data.examples import Example, tokenize_examples
from robust_sft.models import generation
from robust_sft.models.generation import SamplingConfig
from robust_sft.models.gguf import GgufFileOption, gguf_record, is_gguf
from robust_sft.models.loading import load_model, load_tokenizer
from robust_sft.models.options import BackendOption, BatchSizeOption, DtypeOption
from robust_sft.scoring.files import sequence_perplexity
from robust_sft.scoring.token_nll import score_tokenized
from robust_sft.tasks import get_task
from robust_sft.tasks.loading import LimitOption, TaskOption

Method = Literal["self_output", "rephrase"]

# Used for tasks that do not define their own `rephrase_prompt(example, reference)`.
REPHRASE_TEMPLATE = (
    "Below is an instruction and a reference answer.\n\n"
    "Instruction:\n{instruction}\n\n"
    "Reference answer:\n{reference}\n\n"
    "Using the reference answer as a guide, write your own response to the instruction."
)


@dataclass(kw_only=True)
class GenerationSettings(BatchSizeOption):
    """Sampling for data generation (the paper: N=32, temperature 0.7, top_p 0.95): the flags of `generate` and
    the `generation:` section of an experiment."""

    n: int = field(default=32, metadata={"help": "Self-Output: samples per prompt."})
    temperature: float = field(default=0.7, metadata={"help": "Sampling temperature."})
    top_p: float = field(default=0.95, metadata={"help": "Nucleus sampling top_p."})
    max_new_tokens: int = field(default=512, metadata={"help": "Longest answer generated."})
    seed: int = field(default=0, metadata={"help": "Sampling seed."})
    max_length: int = field(default=4096, metadata={
        "help": "Self-Output: longest (prompt, sample) scored to pick the sample of lowest perplexity."})

    def check(self) -> None:
        for name in ("n", "max_new_tokens", "max_length"):
            require(getattr(self, name) >= 1, f"generation {name} must be at least 1, not {getattr(self, name)}")
        require(is_finite_number(self.temperature) and self.temperature >= 0,
                f"generation temperature must be >= 0, not {self.temperature}")
        require(0 < self.top_p <= 1, f"generation top_p must be in (0, 1], not {self.top_p}")
        require(0 <= self.seed < 2**32, f"generation seed must be in [0, 2**32), not {self.seed}")

    def settings(self) -> GenerationSettings:
        """Only the sampling settings (what an experiment's data key hashes), also from a subclass's config."""
        return GenerationSettings(**{f.name: getattr(self, f.name) for f in fields(GenerationSettings)})


Sampler = Callable[[list, SamplingConfig], list[list[str]]]


def hf_sampler(model, tokenizer, batch_size: int = 32, progress: bool = True,
               journal: BatchJournal | None = None) -> Sampler:
    """Sample with Hugging Face `generate` on a loaded model; with a `journal`, a killed call resumes."""
    return lambda conversations, config: generation.generate(model, tokenizer, conversations, config,
                                                             batch_size=batch_size, progress=progress, journal=journal)


def vllm_sampler(model_path: str, adapter_path: str | None = None, progress: bool = True) -> Sampler:
    """Sample with vLLM (GPU machines) from a model path (+ LoRA adapter)."""
    return lambda conversations, config: generation.generate(model_path, None, conversations, config,
                                                             backend="vllm", adapter_path=adapter_path,
                                                             progress=progress)


def sequence_ppls(model, tokenizer, prompts: list[str], answers: list[str], max_length: int) -> list[float]:
    """Sequence perplexity exp(mean answer-token NLL) of each (prompt, answer) under `model`."""
    examples = [Example(str(i), [{"role": "user", "content": p}, {"role": "assistant", "content": a}])
                for i, (p, a) in enumerate(zip(prompts, answers))]
    tokenized = tokenize_examples(tokenizer, examples, max_length, progress=False)
    nlls = score_tokenized(model, tokenized, pad_id=tokenizer.pad_token_id, progress=False)
    return [sequence_perplexity(nll[np.asarray(t.answer_mask, bool) & ~np.isnan(nll)])
            for nll, t in zip(nlls, tokenized)]


def self_output(
    model, tokenizer, task, examples: list[dict], settings: GenerationSettings, sampler: Sampler | None = None
) -> tuple[list[dict], dict]:
    """Self-Output rows and a report (prompts kept/dropped, correct samples, seconds).

    `model` scores the correct samples (their perplexity picks the one kept); `sampler` draws them
    (default: Hugging Face generate on `model`).
    """
    start = time.perf_counter()
    sampler = sampler or hf_sampler(model, tokenizer, settings.batch_size)
    prompts = [task.prompt(e) for e in examples]
    config = SamplingConfig(n=settings.n, temperature=settings.temperature, top_p=settings.top_p,
                            max_new_tokens=settings.max_new_tokens, seed=settings.seed)
    samples = sampler([[{"role": "user", "content": p}] for p in prompts], config)
    # Verify distinct samples only: identical samples are common and checks (e.g. sandboxed code) cost time.
    candidates = [sorted(set(s)) for s in samples]
    flat = [(i, c) for i, cs in enumerate(candidates) for c in cs if c.strip()]
    verdicts = task.check_many([examples[i] for i, _ in flat], [c for _, c in flat])
    correct: dict[int, list[str]] = {}
    for (i, c), ok in zip(flat, verdicts):
        if ok:
            correct.setdefault(i, []).append(c)
    pairs = [(i, c) for i, cs in correct.items() for c in cs]
    ppls = sequence_ppls(model, tokenizer, [prompts[i] for i, _ in pairs], [c for _, c in pairs], settings.max_length)
    best: dict[int, tuple[float, str]] = {}
    for (i, c), ppl in zip(pairs, ppls):
        if i not in best or ppl < best[i][0]:
            best[i] = (ppl, c)
    rows = [{"id": examples[i]["id"], "prompt": prompts[i], "answer": best[i][1]} for i in sorted(best)]
    report = {
        "method": "self_output",
        "prompts": len(examples),
        "kept": len(rows),
        "dropped_no_correct_sample": len(examples) - len(rows),
        "samples": len(examples) * settings.n,
        "correct_samples": sum(sum(1 for s in samples[i] if s in set(cs)) for i, cs in correct.items()),
        "seconds": time.perf_counter() - start,
    }
    return rows, report


def rephrase_prompt(task, example: dict) -> str:
    reference = task.reference(example)
    if hasattr(task, "rephrase_prompt"):
        return task.rephrase_prompt(example, reference)
    return REPHRASE_TEMPLATE.format(instruction=task.prompt(example), reference=reference)


def rephrase(
    model, tokenizer, task, examples: list[dict], settings: GenerationSettings, sampler: Sampler | None = None
) -> tuple[list[dict], dict]:
    """Rephrase rows (original prompt, verified rephrase of the GT) and a report."""
    start = time.perf_counter()
    sampler = sampler or hf_sampler(model, tokenizer, settings.batch_size)
    config = SamplingConfig(n=1, temperature=settings.temperature, top_p=settings.top_p,
                            max_new_tokens=settings.max_new_tokens, seed=settings.seed)
    conversations = [[{"role": "user", "content": rephrase_prompt(task, e)}] for e in examples]
    rewrites = [s[0] for s in sampler(conversations, config)]
    verdicts = task.check_many(examples, rewrites)
    rows = [{"id": e["id"], "prompt": task.prompt(e), "answer": r}
            for e, r, ok in zip(examples, rewrites, verdicts) if ok and r.strip()]
    report = {
        "method": "rephrase",
        "prompts": len(examples),
        "kept": len(rows),
        "dropped_incorrect": len(examples) - len(rows),
        "seconds": time.perf_counter() - start,
    }
    return rows, report


MAKERS = {"self_output": self_output, "rephrase": rephrase}


def journal_path(out: str | Path) -> Path:
    """Where generation journals its finished batches: data/self_output.jsonl -> data/self_output.journal.jsonl."""
    return Path(out).with_suffix(".journal.jsonl")


def report_path(out: str | Path) -> Path:
    """Where the report of a generated data file goes: data/self_output.jsonl -> data/self_output.report.json."""
    return Path(out).with_suffix(".report.json")


def write_generated_data(method: Method, model, tokenizer, task, examples: list[dict], settings: GenerationSettings,
                         out: str | Path, sampler: Sampler | None = None, record: dict | None = None,
                         journal_key: str | None = None) -> dict:
    """Make Self-Output or Rephrase rows and write them to `out` (jsonl) and their report beside it; return the
    report (with `record`'s entries, e.g. the model's source). The report is written first, so a set where nothing
    passed the checker still says why. With `journal_key` (naming the model and inputs) and HF sampling, finished
    batches are journalled beside `out`, so a killed call resumes; its report's seconds are the resumed call's."""
    check_choice("method", method, Method)
    journal = BatchJournal(journal_path(out), journal_key) if journal_key and sampler is None else None
    resumed = journal is not None and journal.path.exists()
    if journal is not None:
        sampler = hf_sampler(model, tokenizer, settings.batch_size, journal=journal)
    rows, report = MAKERS[method](model, tokenizer, task, examples, settings, sampler=sampler)
    report = {**report, **(record or {}), **({"resumed": True} if resumed else {})}
    write_json(report_path(out), report)
    if not rows:
        raise ValueError(f"{method}: no generated example passed the checker; nothing written to {out} "
                         f"(report: {report_path(out)}: {json.dumps(report)})")
    write_jsonl(out, rows)
    if journal is not None:
        journal.remove()
    return report


@dataclass(kw_only=True)
class GenerateConfig(GenerationSettings, TaskOption, LimitOption, BackendOption, GgufFileOption, DtypeOption):
    """Options of `robust-sft generate`."""

    model: str = field(metadata={"help": "The model that will be fine-tuned (it generates its own data)."})
    out: str = field(metadata={"help": "Output .jsonl of {id, prompt, answer} rows (feed it to `score`); the "
                                       "report (kept, dropped, seconds) goes beside it as OUT.report.json."})
    method: Method = field(default="self_output", metadata={"help": "self_output or rephrase."})
    split: str = field(default="train", metadata={"help": "Split of the task to generate for."})

    def check(self) -> None:
        require_suffix("out", self.out, (".jsonl",), "a .jsonl file")


def generate(config: GenerateConfig) -> dict:
    """`robust-sft generate`: Self-Output or Rephrase data from a model and a task's split; returns the report."""
    check_output_file(config.out)  # before the model generates anything
    task = get_task(config.task)
    examples = task.load(config.split, limit=config.limit, path=config.task_path)
    model_ref = config.model_ref()
    model, tokenizer = load_model(model_ref, dtype=config.dtype), load_tokenizer(model_ref)
    sampler = vllm_sampler(model_ref) if config.backend == "vllm" else None
    record = {"gguf": gguf_record(model_ref)} if is_gguf(model_ref) else None  # the .gguf file and its SHA-256
    return write_generated_data(config.method, model, tokenizer, task, examples, config.settings(), config.out,
                                sampler=sampler, record=record)
