"""KL to the base: how far a fine-tune moved the next-token distribution, on the answer tokens GT training trains on
and on the base model's own greedy answers to the other tasks' test prompts (where a fine-tune must leave the model
as it was: a move there is what forgetting is made of, while a move on GT's answers is what GT training is for).
torch, transformers and the model loaders are imported by the functions (their start-up cost)."""

from __future__ import annotations

import contextlib
import json
from pathlib import Path

from robust_sft.analysis.measures import kl_rows
from robust_sft.data.examples import Example, tokenize_example
from robust_sft.data.rows import DataError
from robust_sft.masking.policies import IGNORE_INDEX, MaskPolicy
from robust_sft.models.loading import is_adapter, load_model, load_tokenizer
from robust_sft.scoring.batching import pad_batch, plan_batches
from robust_sft.scoring.token_nll import TokenScorer, logit_postprocessor
from robust_sft.training.data import load_training_data

KL_BATCH_TOKENS = 8192  # padded tokens per forward pass
KL_CHUNK_BYTES = 256 << 20  # float32 logits materialised at once per model


def _decoder_and_head(model):
    base = model.get_base_model() if hasattr(model, "get_base_model") else model
    return base.get_decoder(), base.get_output_embeddings()


def _predicting_features(model, fast: bool, ids, attention, positions):
    """Per position, what predicts the next token: the last hidden state (fast) or the model's logits."""
    mask = None if bool(attention.all()) else attention  # no padding: attention's fast causal path
    if fast:
        decoder = _decoder_and_head(model)[0]
        return decoder(input_ids=ids, attention_mask=mask, position_ids=positions).last_hidden_state
    return model(input_ids=ids, attention_mask=mask, position_ids=positions).logits


def kl_to_base(final_dir: str | Path, base_dir: str | Path, scores_path: str | Path, limit: int | None = None,
               progress: bool = True, other_answers: dict[str, Path] | None = None) -> dict:
    """Mean KL(p_finetuned || p_base) over the answer tokens GT training trains on (the first `limit` examples),
    and, given `other_answers` ({task: the base model's sample log, eval/base/<task>.jsonl}), over the base model's
    own answers to each other task's first `limit` test prompts (kl_other_prompts: the mean over tasks).

    An adapter runs as one model: the base's logits come from the same weights with the adapter disabled.
    A full fine-tune needs the base loaded beside it: two models' memory.
    """
    final_dir = Path(final_dir)
    tokenizer = load_tokenizer(str(base_dir))
    data = load_training_data(str(scores_path), MaskPolicy(kind="none"), tokenizer)
    input_ids, labels = data.input_ids[:limit], data.labels[:limit]
    states = model_pair(final_dir, base_dir)
    total, tokens = summed_kl(states, tokenizer, [x.tolist() for x in input_ids],
                              [(y != IGNORE_INDEX).tolist() for y in labels], progress)
    out = {"kl_to_base": total / tokens if tokens else None, "kl_tokens": tokens, "kl_examples": len(input_ids)}
    if other_answers:
        by_task, other_tokens = {}, 0
        for task, log in other_answers.items():
            ids, masks = base_answer_tokens(log, tokenizer, limit)
            task_total, task_tokens = summed_kl(states, tokenizer, ids, masks, progress)
            by_task[task] = task_total / task_tokens if task_tokens else None
            other_tokens += task_tokens
        known = [v for v in by_task.values() if v is not None]
        out.update({"kl_other_prompts": sum(known) / len(known) if known else None,
                    "kl_other_prompts_by_task": by_task, "kl_other_tokens": other_tokens})
    return out


def model_pair(final_dir: Path, base_dir: str | Path) -> list:
    """[(fine-tuned model, context), (base model, context)]: one model with its adapter on and off, or two."""
    if is_adapter(final_dir):
        model = load_model(str(base_dir), dtype="float32", device="cpu", adapter=str(final_dir))
        return [(model, contextlib.nullcontext), (model, model.disable_adapter)]
    return [(load_model(str(final_dir), dtype="float32", device="cpu"), contextlib.nullcontext),
            (load_model(str(base_dir), dtype="float32", device="cpu"), contextlib.nullcontext)]


def base_answer_tokens(log: str | Path, tokenizer, limit: int | None) -> tuple[list[list[int]], list[list[bool]]]:
    """Token ids and answer masks of the first `limit` (prompt, completion) rows of a sample log, each as a
    user turn and the assistant's answer; a row whose answer has no token (an empty completion) is left out."""
    ids, masks = [], []
    rows = [json.loads(line) for line in Path(log).read_text().splitlines() if line.strip()][:limit]
    for row in rows:
        example = Example(row["id"], [{"role": "user", "content": row["prompt"]},
                                      {"role": "assistant", "content": row["completion"]}])
        try:
            tokenized = tokenize_example(tokenizer, example, max_length=1 << 20)
        except DataError:
            continue
        ids.append(tokenized.input_ids)
        masks.append(tokenized.answer_mask)
    return ids, masks


def summed_kl(states: list, tokenizer, input_ids: list[list[int]], answer_masks: list[list[bool]],
              progress: bool) -> tuple[float, int]:
    """KL(p_finetuned || p_base) summed over the answer positions of `input_ids`, and how many positions."""
    import torch
    from tqdm.auto import tqdm

    # Decoder + LM head at the answer positions only, when that reproduces the model's logits (checked once).
    fast = TokenScorer(states[0][0]).fast
    post = logit_postprocessor(states[0][0].config)
    rows_per_chunk = max(1, KL_CHUNK_BYTES // (4 * states[0][0].config.get_text_config().vocab_size))
    total, tokens = 0.0, 0
    batches = plan_batches([len(x) for x in input_ids], KL_BATCH_TOKENS, 64)
    with torch.no_grad():
        for batch in tqdm(batches, desc="KL to base", disable=not progress, leave=False):
            ids, attention, positions, trained = pad_batch(
                [input_ids[i] for i in batch], [answer_masks[i] for i in batch], tokenizer.pad_token_id)
            trained[:, 0] = False  # the first token has no context (never trained either)
            rows, cols = trained.nonzero(as_tuple=True)
            features = []
            for model, context in states:
                with context():
                    features.append(_predicting_features(model, fast, ids, attention, positions)[rows, cols - 1])
            for start in range(0, len(rows), rows_per_chunk):
                logits = []
                for (model, context), f in zip(states, features):
                    with context():
                        chunk = f[start : start + rows_per_chunk]
                        logits.append(post(_decoder_and_head(model)[1](chunk)) if fast else chunk)
                total += float(kl_rows(*logits).sum())
            tokens += len(rows)
    return total, tokens
