"""World v5's base model definition: the model of v4 (base_model.py) pretrained on v5's world (world_v5.py).

The pretraining mix, per step, follows a fixed schedule of four kinds of batch:
  H  house chats: a task's taught problem -> "Answer: X" (a full batch);
  S  human-style chats: the same problems answered in the varied human style (half a batch: long chats), so the
     model's style prior is soft: a human-style opening is unlikely, not impossible;
  I  hinted chats: the prompt with "Hint: the answer is X", answered in either style (half a batch), so an answer
     can be scored with its content hinted (hindsight);
  R  rewrite chats, as in v4: a rephrase prompt showing a human-style answer -> the house answer (half a batch).
Tasks are drawn by weight; the look-up tables weigh more, so they are learned to the end well before pretraining
stops, and what the base model does not know it cannot know (world_v5.py). A pretraining-only, hint-only task (a
locker's code: a fresh random list of 1-6 digits per chat) teaches relying on a hint or a reference at any
length, where the hint is the only source of the answer; a second one (sort-hinted: the target's prompts on the
4-5 digit lists it cannot sort, the list withheld or replaced by a distractor) teaches copying a hinted answer on
the target's own prompts, trained on the answer only. Only the target's chats (and sort-hinted's) are ever
answered in the human style. The whole chat is trained, prompt included, as in v4, except for answer-only tasks.
Only what defines the model lives here (its text is part of the key; store.py builds).
"""

from __future__ import annotations

import collections
import itertools
import math
import random
from dataclasses import dataclass
from pathlib import Path

import torch
from tqdm.auto import tqdm

from robust_sft.organism import base_model, world, world_v5
from robust_sft.organism import tokenizer as tokenizer_module
from robust_sft.organism.base_model import _chat_tokens, cache_key  # noqa: F401  (store.py uses cache_key)
from robust_sft.tasks.base import get_task
from robust_sft.training import collate

TASKS, TARGET = world_v5.TASKS, world_v5.TARGET


@dataclass(frozen=True)
class OrganismConfig:
    """World + model + pretraining definition; every field but `threads` is part of the cache key."""

    seed: int = 0
    hidden_size: int = 128
    num_layers: int = 4
    num_heads: int = 4
    intermediate_size: int = 384
    steps: int = 6000
    batch_size: int = 16
    lr: float = 2e-3
    warmup_steps: int = 100
    weight_decay: float = 0.01
    pool_size: int = 4000  # pretraining problems per task at most (the tables are smaller: all of them)
    # task (without the prefix) -> sampling weight: tables heavy, so they converge early
    weights: tuple[tuple[str, float], ...] = (("add", 3.5), ("sort", 2.5), ("reverse", 1.0), ("max", 1.5),
                                              ("facts", 3.5), ("code", 4.0), ("sort-hinted", 4.0))
    schedule: str = "HISIHISIHR"  # batch kinds in turn (module docstring): four hinted batches in ten
    hint_human_share: float = 0.5  # hinted chats of the human-style tasks answered in the human style
    # The only tasks pretraining ever answers in the human style: the target's (and its hinted twin's). The
    # other tasks' answers stay in the house style, so a human-style answer there is unlike anything they know.
    human_style_tasks: tuple[str, ...] = ("sort", "sort-hinted")
    dtype: str = "float32"  # float64 does not make a build independent of the CPU (docs/organism_v5.md, D11)
    eval_limit: int = 400  # test items per task in base_eval.json (a table's pool may hold fewer)
    threads: int = 2


def definition_sources() -> list[str]:
    """The code that defines world v5, its tokenizer and its pretraining: editing any of it changes the key."""
    return [Path(m.__file__).read_text() for m in (world, world_v5, tokenizer_module, base_model)] + [
        Path(__file__).read_text()]


def new_model(config: OrganismConfig, tok):
    """v4's tiny Llama, in the definition's dtype."""
    return base_model.new_model(config, tok).to(getattr(torch, config.dtype))


def _answer_tokens(tok, user: str, assistant: str) -> tuple[list[int], list[int]]:
    """A chat whose answer alone is trained (the prompt's labels ignored)."""
    ids, _ = _chat_tokens(tok, user, assistant)
    prompt = tok.apply_chat_template([{"role": "user", "content": user}], tokenize=False, add_generation_prompt=True)
    n_prompt = len(tok(prompt, add_special_tokens=False)["input_ids"])
    return ids, [-100] * n_prompt + ids[n_prompt:]


def pretraining_tasks(seed: int) -> dict:
    """Every task pretraining draws from: the world's, and the pretraining-only ones (code)."""
    return {**{name: get_task(name, seed=seed) for name in TASKS},
            **{name: make(seed=seed) for name, make in world_v5.PRETRAIN_ONLY.items()}}


def pretraining_pools(tok, config: OrganismConfig) -> tuple[dict[str, dict[str, list]], dict[str, list[float]]]:
    """Batch kind -> task -> tokenized chats (input ids, labels) over the task's pretraining problems, and per task
    the cumulative draw weights of its problems (the H, S and I pools share them)."""
    pools: dict[str, dict[str, list]] = {kind: {} for kind in "HSIR"}
    cumulative: dict[str, list[float]] = {}
    for name, task in pretraining_tasks(config.seed).items():
        examples = task.load("pretrain", limit=config.pool_size)
        answers = collections.Counter(e["answer"] for e in examples)
        cumulative[name] = list(itertools.accumulate(1 / answers[e["answer"]] if task.balance_answers else 1.0
                                                     for e in examples))
        rng = random.Random(f"{config.seed}:{name}:hint-style")
        human = name.removeprefix(world_v5.PREFIX) in config.human_style_tasks
        chat = _answer_tokens if task.answer_only else _chat_tokens
        if not task.hint_only:
            pools["H"][name] = [chat(tok, task.prompt(e), task.house_reference(e)) for e in examples]
            if human:
                pools["S"][name] = [chat(tok, task.prompt(e), task.human_reference(e)) for e in examples]
        pools["I"][name] = [
            chat(tok, task.hinted_prompt(e),
                 task.human_reference(e) if human and rng.random() < config.hint_human_share
                 else task.house_reference(e))
            for e in examples]
        pools["R"][name] = [chat(tok, task.rephrase_prompt(e, task.human_reference(e)), task.house_reference(e))
                            for e in examples[: config.pool_size // 4]]
    return pools, cumulative


def pretrain(model, tok, config: OrganismConfig, progress: bool = True) -> None:
    pools, cumulative = pretraining_pools(tok, config)
    weights = dict(config.weights)
    rewrites = [row for rows in pools["R"].values() for row in rows]  # tasks in proportion to their pools, as v4
    names = {kind: list(pools[kind]) for kind in "HSI"}  # a hint-only task only in I, human style only in S
    task_weights = {kind: [weights[n.removeprefix(world_v5.PREFIX)] for n in names[kind]] for kind in names}
    rng = random.Random(config.seed)
    opt = torch.optim.AdamW(model.parameters(), lr=config.lr, weight_decay=config.weight_decay, betas=(0.9, 0.98))
    model.train()
    bar = tqdm(range(config.steps), desc="pretrain organism v5", disable=not progress)
    for step in bar:
        # linear warmup, cosine decay to 10% (as v4)
        warm = min(1.0, (step + 1) / config.warmup_steps)
        cos = 0.1 + 0.45 * (1 + math.cos(math.pi * step / config.steps))
        for group in opt.param_groups:
            group["lr"] = config.lr * warm * cos
        kind = config.schedule[step % len(config.schedule)]
        rows_n = config.batch_size if kind == "H" else config.batch_size // 2  # long chats: half a batch
        if kind == "R":
            rows = rng.sample(rewrites, rows_n)
        else:
            rows = [rng.choices(pools[kind][n], cum_weights=cumulative[n])[0]
                    for n in rng.choices(names[kind], task_weights[kind], k=rows_n)]
        batch = collate([{"input_ids": ids, "labels": labels} for ids, labels in rows], tok.pad_token_id)
        loss = model(**batch).loss
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        opt.zero_grad(set_to_none=True)
        if step % 20 == 0:
            bar.set_postfix(loss=f"{loss.item():.3f}")
    model.to(torch.float32)  # measured, shipped and fine-tuned in float32, as every other model here
    model.eval()
