"""World v4's base model definition: a tiny Llama pretrained on the world in house style.

The pretraining mix: every task's "pretrain" pool as (prompt -> house answer) chats, plus rewrite chats
(rephrase prompt showing a human-style answer -> house answer) so the model can Rephrase. The whole chat is
trained, prompt included, so the model has read human-style prose (the target's too, from its pretraining
pool, never its train/validation/test problems) but has only ever answered in the house style. The target
task gets a smaller share than the others, so the base model solves it only partly (room for fine-tuning to
help, and correct self-outputs to exist).

Only what defines the model lives here (its text is part of the key); building, caching and shipping are in
store.py.
"""

from __future__ import annotations

import hashlib
import json
import math
import random
from dataclasses import asdict, dataclass
from pathlib import Path

import torch
from tqdm.auto import tqdm
from transformers import LlamaConfig, LlamaForCausalLM

from robust_sft.organism import tokenizer as tokenizer_module
from robust_sft.organism import world
from robust_sft.tasks.base import get_task
from robust_sft.training import collate


@dataclass(frozen=True)
class OrganismConfig:
    """World + model + pretraining definition; every field is part of the cache key."""

    seed: int = 0
    hidden_size: int = 128
    num_layers: int = 4
    num_heads: int = 4
    intermediate_size: int = 384
    steps: int = 2400
    batch_size: int = 16
    lr: float = 2e-3
    warmup_steps: int = 100
    weight_decay: float = 0.01
    pool_size: int = 4000  # pretrain examples drawn per task
    target_share: float = 0.2  # target's sampling weight relative to one non-target task
    rephrase_every: int = 6  # every k-th step is a batch of rewrite chats
    eval_limit: int = 100  # test examples per task in base_eval.json
    threads: int = 2


def definition_sources() -> list[str]:
    """The code that defines the world, tokenizer and training: editing any of it changes the key."""
    return [Path(m.__file__).read_text() for m in (world, tokenizer_module)] + [Path(__file__).read_text()]


def cache_key(config: OrganismConfig, sources: list[str]) -> str:
    definition = {k: v for k, v in asdict(config).items() if k != "threads"}  # threads change speed, not the model
    digest = hashlib.sha256(json.dumps(definition, sort_keys=True).encode())
    for text in sources:
        digest.update(hashlib.sha256(text.encode()).digest())
    return digest.hexdigest()[:16]


# --- data ---------------------------------------------------------------------------------------
def _chat_tokens(tok, user: str, assistant: str) -> tuple[list[int], list[int]]:
    """Input ids and labels of one chat. The whole conversation is trained, prompt included, as in
    pretraining: it gives a tiny model far more signal per step, and through the rewrite chats it
    learns everyday phrasing (openers, closers, prose), so human-style text is not all surprise to it."""
    prompt = tok.apply_chat_template([{"role": "user", "content": user}], tokenize=False, add_generation_prompt=True)
    full = prompt + assistant + tok.eos_token
    p_ids = tok(prompt, add_special_tokens=False)["input_ids"]
    ids = tok(full, add_special_tokens=False)["input_ids"]
    assert ids[: len(p_ids)] == p_ids, "chat template must tokenize prompt-prefix-stably"
    return ids, list(ids)


def pretraining_pools(tok, config: OrganismConfig) -> tuple[dict[str, list], list]:
    """Per-task (prompt -> house answer) chats, and the rewrite chats (human-style answer -> house answer)."""
    tasks, rewrites = {}, []
    for name in world.TASKS:
        task = get_task(name, seed=config.seed)
        examples = task.load("pretrain", limit=config.pool_size)
        tasks[name] = [_chat_tokens(tok, task.prompt(e), task.house_reference(e)) for e in examples]
        # Every task, the target included: the model has read human-style answers (in the prompt, which is
        # trained too) without being taught to write them, as an instruct model has read human text.
        rewrites += [
            _chat_tokens(tok, task.rephrase_prompt(e, task.human_reference(e)), task.house_reference(e))
            for e in examples[: config.pool_size // 4]
        ]
    return tasks, rewrites


# --- model and training -------------------------------------------------------------------------
def new_model(config: OrganismConfig, tok) -> LlamaForCausalLM:
    torch.manual_seed(config.seed)
    return LlamaForCausalLM(LlamaConfig(
        vocab_size=len(tok), hidden_size=config.hidden_size, num_hidden_layers=config.num_layers,
        num_attention_heads=config.num_heads, num_key_value_heads=config.num_heads,
        intermediate_size=config.intermediate_size, max_position_embeddings=512, tie_word_embeddings=True,
        bos_token_id=tok.bos_token_id, eos_token_id=tok.eos_token_id, pad_token_id=tok.pad_token_id,
    ))


def pretrain(model: LlamaForCausalLM, tok, config: OrganismConfig, progress: bool = True) -> None:
    tasks, rewrites = pretraining_pools(tok, config)
    names = list(tasks)
    weights = [config.target_share if n == world.TARGET else 1.0 for n in names]
    rng = random.Random(config.seed)
    opt = torch.optim.AdamW(model.parameters(), lr=config.lr, weight_decay=config.weight_decay, betas=(0.9, 0.98))
    model.train()
    bar = tqdm(range(config.steps), desc="pretrain organism", disable=not progress)
    for step in bar:
        # linear warmup, cosine decay to 10%
        warm = min(1.0, (step + 1) / config.warmup_steps)
        cos = 0.1 + 0.45 * (1 + math.cos(math.pi * step / config.steps))
        for group in opt.param_groups:
            group["lr"] = config.lr * warm * cos
        if step % config.rephrase_every == config.rephrase_every - 1:
            rows = rng.sample(rewrites, config.batch_size // 2)  # long chats: half a batch
        else:
            rows = [rng.choice(tasks[n]) for n in rng.choices(names, weights, k=config.batch_size)]
        batch = collate([{"input_ids": ids, "labels": labels} for ids, labels in rows], tok.pad_token_id)
        loss = model(**batch).loss
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        opt.zero_grad(set_to_none=True)
        if step % 20 == 0:
            bar.set_postfix(loss=f"{loss.item():.3f}")
    model.eval()
