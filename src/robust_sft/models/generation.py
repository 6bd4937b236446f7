"""Batched generation from chat prompts: Hugging Face `generate` here, vLLM where it is installed.

Input is a list of conversations (lists of chat messages); the chat template with a generation prompt is
applied here, so every caller formats prompts the same way. Output is, per conversation, `n` completion
strings (the assistant text up to, not including, the end-of-turn token, and up to and including the first of
the config's stop strings: both backends cut there, so they return the same text).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import torch
from tqdm.auto import tqdm

from robust_sft.core.config_types import check_choice
from robust_sft.core.hashing import stable_hash
from robust_sft.core.journal import BatchJournal
from robust_sft.models.gguf import resolve_model
from robust_sft.models.options import Backend

Messages = list[dict[str, str]]


@dataclass(frozen=True)
class SamplingConfig:
    """How to decode. temperature 0 means greedy (then the n completions of a prompt are identical)."""

    n: int = 1
    temperature: float = 0.0
    top_p: float = 1.0
    max_new_tokens: int = 256
    seed: int = 0
    # Generation of a sequence ends after the first of these strings, which is kept in the text (a task's
    # stop strings: where its checker has all it reads).
    stop: tuple[str, ...] = ()

    @property
    def greedy(self) -> bool:
        return self.temperature <= 0.0


def chat_prompt_ids(tokenizer, conversations: list[Messages]) -> list[list[int]]:
    """Token ids of each conversation, templated with the assistant generation prompt."""
    texts = [tokenizer.apply_chat_template(m, tokenize=False, add_generation_prompt=True) for m in conversations]
    # The template already holds any bos; the tokenizer must not add another.
    return [tokenizer(t, add_special_tokens=False)["input_ids"] for t in texts]


def stop_token_ids(model, tokenizer) -> set[int]:
    """Every id that ends an assistant turn: the tokenizer's eos and the model's own generation stops.

    Chat models often end a turn with a token other than the tokenizer's eos (Gemma-2: <end_of_turn>,
    Llama-3: <|eot_id|>); their generation_config lists it, and passing only the eos would run past it.
    """
    configured = getattr(getattr(model, "generation_config", None), "eos_token_id", None)
    configured = configured if isinstance(configured, (list, tuple)) else [configured]
    return {i for i in [tokenizer.eos_token_id, *configured] if i is not None}


def _length_sorted_batches(lengths: list[int], batch_size: int) -> list[list[int]]:
    # Prompts of similar length share a batch, so little compute is spent on left padding.
    order = sorted(range(len(lengths)), key=lambda i: (lengths[i], i))
    return [order[i : i + batch_size] for i in range(0, len(order), batch_size)]


def _left_pad(rows: list[list[int]], pad_id: int) -> tuple[torch.Tensor, torch.Tensor]:
    width = max(len(r) for r in rows)
    ids = torch.full((len(rows), width), pad_id, dtype=torch.long)
    mask = torch.zeros((len(rows), width), dtype=torch.long)
    for i, row in enumerate(rows):
        ids[i, width - len(row) :] = torch.tensor(row, dtype=torch.long)
        mask[i, width - len(row) :] = 1
    return ids, mask


def cut_at_stop(text: str, stop: tuple[str, ...]) -> str:
    """`text` up to and including the earliest stop string in it (as vLLM cuts with include_stop_str_in_output)."""
    ends = [i + len(s) for s in stop if (i := text.find(s)) >= 0]
    return text[: min(ends)] if ends else text


def ends_at_stop(text: str, stop: tuple[str, ...]) -> bool:
    """Whether generation of `text` may have ended at one of the stop strings."""
    return any(text.endswith(s) for s in stop)


def _decode_new_tokens(tokenizer, new_tokens: torch.Tensor, stop_ids: set[int], stop: tuple[str, ...] = ()) -> str:
    ids = new_tokens.tolist()
    for i, tok in enumerate(ids):
        if tok in stop_ids:
            ids = ids[:i]
            break
    # transformers stops on the token that completes a stop string, which may run past it ("```\n\n").
    return cut_at_stop(tokenizer.decode(ids, skip_special_tokens=True), stop)


@torch.inference_mode()
def generate_hf(
    model, tokenizer, conversations: list[Messages], config: SamplingConfig = SamplingConfig(),
    *, batch_size: int = 32, progress: bool = True, journal: BatchJournal | None = None,
) -> list[list[str]]:
    """`config.n` completions per conversation with `model.generate`, batched and left-padded.

    Sampling is seeded per batch from `config.seed`, so the same inputs and batch size give the same outputs,
    and the caller's global RNG state is left untouched. With a `journal` (its key naming the model), each
    finished batch is recorded, and a call after a kill runs only the batches not recorded: the same outputs.
    """
    prompts = chat_prompt_ids(tokenizer, conversations)
    copies = 1 if config.greedy else config.n  # greedy: one decode, repeated n times
    per_batch = max(1, batch_size // copies)
    stop_ids = stop_token_ids(model, tokenizer)
    pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
    sampling = {} if config.greedy else {"temperature": config.temperature, "top_p": config.top_p, "top_k": 0}
    if config.stop:
        sampling.update(stop_strings=list(config.stop), tokenizer=tokenizer)
    results: list[list[str]] = [[] for _ in prompts]
    batches = _length_sorted_batches([len(p) for p in prompts], per_batch)
    done = {}
    if journal is not None:  # keyed by the caller's key and by everything that decides the outputs here
        journal = BatchJournal(journal.path, stable_hash([journal.key, prompts, asdict(config), per_batch]))
        journal.start()
        done = journal.finished()
    for b, batch in enumerate(tqdm(batches, desc="generate", disable=not progress)):
        if b in done:
            for i, texts in zip(batch, done[b]):
                results[i] = texts
            continue
        ids, mask = _left_pad([prompts[i] for i in batch], pad_id)
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(config.seed * 1_000_003 + b)
            out = model.generate(
                input_ids=ids.to(model.device), attention_mask=mask.to(model.device),
                do_sample=not config.greedy, num_return_sequences=copies, max_new_tokens=config.max_new_tokens,
                eos_token_id=sorted(stop_ids), pad_token_id=pad_id, **sampling,
            )
        new_tokens = out[:, ids.shape[1] :].cpu()
        for row, i in enumerate(batch):
            texts = [_decode_new_tokens(tokenizer, new_tokens[row * copies + k], stop_ids, config.stop)
                     for k in range(copies)]
            results[i] = texts * (config.n // copies)
        if journal is not None:
            journal.record(b, [results[i] for i in batch])
    return results


# One vLLM engine at a time, reused across calls: starting one costs minutes and holds most of the GPU.
_VLLM_ENGINE: dict = {}
# vLLM's default (0.9) leaves no room for the transformers model the pipeline also keeps on the GPU
# (scoring Self-Output samples, training); half the memory fits both for models up to ~8B on 80 GB.
VLLM_GPU_MEMORY_UTILIZATION = 0.5


def _vllm_engine(model_path: str, enable_lora: bool, max_lora_rank: int, seed: int):
    from vllm import LLM

    key = (model_path, enable_lora, max_lora_rank)
    if key not in _VLLM_ENGINE:
        _VLLM_ENGINE.clear()
        _VLLM_ENGINE[key] = LLM(model=model_path, seed=seed, enable_lora=enable_lora, max_lora_rank=max_lora_rank,
                                gpu_memory_utilization=VLLM_GPU_MEMORY_UTILIZATION)
    return _VLLM_ENGINE[key]


def _lora_rank(adapter_path: str) -> int:
    import json
    from pathlib import Path

    rank = json.loads((Path(adapter_path) / "adapter_config.json").read_text()).get("r", 16)
    return next(r for r in (8, 16, 32, 64, 128, 256, 512) if r >= rank)  # vLLM's supported maxima


def vllm_sampling_options(config: SamplingConfig) -> dict:
    """vLLM's SamplingParams for `config`: the same decoding, stop strings kept in the text as with HF."""
    options = {"n": config.n, "temperature": max(config.temperature, 0.0), "top_p": config.top_p,
               "max_tokens": config.max_new_tokens, "seed": config.seed}
    if config.stop:
        options.update(stop=list(config.stop), include_stop_str_in_output=True)
    return options


def generate_vllm(
    model_path: str, conversations: list[Messages], config: SamplingConfig = SamplingConfig(),
    *, adapter_path: str | None = None, progress: bool = True,
) -> list[list[str]]:
    """The same contract on vLLM (GPU machines). Prompts go in as token ids from our own chat templating."""
    try:
        from vllm import SamplingParams
        from vllm.lora.request import LoRARequest
    except ImportError as err:
        raise RuntimeError("backend='vllm' needs vLLM: pip install 'robust-sft[vllm]' (GPU machine)") from err
    from transformers import AutoTokenizer

    model_path = resolve_model(model_path)  # vLLM reads the converted directory of a .gguf file too
    prompts = chat_prompt_ids(AutoTokenizer.from_pretrained(model_path), conversations)
    rank = _lora_rank(adapter_path) if adapter_path else 16
    llm = _vllm_engine(model_path, adapter_path is not None, rank, config.seed)
    params = SamplingParams(**vllm_sampling_options(config))
    # A new id per adapter path: vLLM caches adapters by id.
    lora = LoRARequest(adapter_path, abs(hash(adapter_path)) % 2**31 + 1, adapter_path) if adapter_path else None
    outputs = llm.generate([{"prompt_token_ids": p} for p in prompts], params, use_tqdm=progress, lora_request=lora)
    return [[c.text for c in out.outputs] for out in outputs]


def generate(
    model, tokenizer, conversations: list[Messages], config: SamplingConfig = SamplingConfig(),
    *, backend: Backend = "hf", batch_size: int = 32, adapter_path: str | None = None, progress: bool = True,
    journal: BatchJournal | None = None,
) -> list[list[str]]:
    """Dispatch on `backend`: "hf" takes a loaded model + tokenizer; "vllm" takes a model path as `model`.
    `journal`: hf's per-batch record that a killed call resumes from (vLLM samples everything in one call)."""
    check_choice("backend", backend, Backend)
    if backend == "hf":
        if adapter_path is not None:
            raise ValueError("backend='hf': load the adapter onto the model (peft) before calling generate")
        return generate_hf(model, tokenizer, conversations, config, batch_size=batch_size, progress=progress,
                           journal=journal)
    return generate_vllm(str(model), conversations, config, adapter_path=adapter_path, progress=progress)
