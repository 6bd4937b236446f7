"""Token perplexity of SFT data under a model: per-token negative log-likelihood, aligned with input_ids.

Design:
- Examples are tokenized once (data.py); the scores are stored next to those exact ids.
- Batches are built by length (a token budget), so little compute is spent on padding.
- The decoder runs once per batch; the LM head and a float32 log-softmax are applied to the answer
  positions only, a chunk of rows at a time. A float32 [batch, length, vocab] tensor is never built.
- Explicit position ids make left and right padding give the same numbers.
- Work is split into shards written atomically; a killed run resumes at the first missing shard, and
  under `accelerate launch` shards are spread over the processes.
"""

from __future__ import annotations

import hashlib
import json
import logging
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

import numpy as np

from robust_sft.core.artifacts import (
    check_output_file,
    check_replaceable,
    library_versions,
    remove_dir,
    write_json,
    write_parquet,
)
from robust_sft.core.config_types import ProgressOption, require
from robust_sft.data.examples import (
    DataFormatOptions,
    ErrorLog,
    TokenizedExample,
    read_examples,
    tokenize_examples,
    tokenizer_fingerprint,
)
from robust_sft.models.gguf import GgufFileOption, gguf_record
from robust_sft.models.loading import context_length, load_model, load_tokenizer
from robust_sft.models.options import AdapterOption, DtypeOption
from robust_sft.scoring.batching import PaddingSide, default_batch_tokens, pad_batch, plan_batches, runs_on_cpu
from robust_sft.scoring.files import SCORES_FORMAT, scores_table

logger = logging.getLogger(__name__)


# Bytes allowed for one float32 chunk of head logits (rows x vocab); bounds peak memory for huge vocabularies.
HEAD_CHUNK_BYTES = 256 * 2**20
DEFAULT_MAX_LENGTH = 4096
PARTS_MARKER = "manifest.json"  # the shard directory's own file: only a directory holding it is ever removed


@dataclass(kw_only=True)
class ScoreConfig(DataFormatOptions, AdapterOption, GgufFileOption, DtypeOption, ProgressOption):
    """Options of `robust-sft score` (each field is also a command line flag)."""

    model: str = field(metadata={"help": "Model to score with (Hub name or local path): the model you will fine-tune."})
    data: str = field(metadata={"help": "SFT data: .jsonl, .json, .parquet, a save_to_disk directory or a Hub dataset."})
    out: str = field(metadata={"help": "Output Parquet file of token scores."})
    max_length: int | None = field(
        default=None, metadata={"help": "Longest tokenized conversation; longer answers are cut. At most the model's "
                                "context; default: the model's context, at most 4096."}
    )
    batch_tokens: int | None = field(
        default=None,
        metadata={"help": "Token budget of one batch (rows x padded length); lower it on OOM. Default: 16384 on "
                  "GPU; on CPU one example per batch (padding masks cost more there than batching gains)."},
    )
    max_batch_size: int = field(default=64, metadata={"help": "At most this many examples per batch."})
    padding_side: PaddingSide = field(default="right", metadata={"help": "right or left (results are identical)."})
    device: str = field(default="auto", metadata={"help": "auto, cpu, cuda, cuda:1, ..."})
    shard_size: int = field(default=1024, metadata={"help": "Examples per resumable shard."})

    def check(self) -> None:
        require(Path(self.out).suffix in ("", ".parquet"), f"--out {self.out}: a score file is written as .parquet")
        require(self.max_length is None or self.max_length >= 1, f"max_length must be at least 1, not {self.max_length}")
        for name in ("max_batch_size", "shard_size"):
            require(getattr(self, name) >= 1, f"{name} must be at least 1, not {getattr(self, name)}")
        require(self.batch_tokens is None or self.batch_tokens >= 1, f"batch_tokens must be at least 1, not {self.batch_tokens}")


# --------------------------------------------------------------------------------------------- batching (pure)


# --------------------------------------------------------------------------------------------- the model side


def logit_postprocessor(config):
    """Model-specific transforms applied after the LM head (Gemma softcapping, Cohere/Granite scaling)."""
    import torch

    softcap = getattr(config, "final_logit_softcapping", None)
    scale = getattr(config, "logit_scale", None)
    divisor = getattr(config, "logits_scaling", None)

    def post(logits: "torch.Tensor") -> "torch.Tensor":
        if scale is not None:
            logits = logits * scale
        if divisor is not None:
            logits = logits / divisor
        if softcap is not None:
            logits = torch.tanh(logits / softcap) * softcap
        return logits

    return post


def chunked_token_nll(head, hidden, targets, post=None, chunk_bytes: int = HEAD_CHUNK_BYTES):
    """NLL of `targets` given `hidden` rows: head -> (post) -> float32 logsumexp - target logit, in chunks."""
    import torch

    vocab = head.weight.shape[0]
    rows = max(1, chunk_bytes // (4 * vocab))
    out = torch.empty(hidden.shape[0], dtype=torch.float32, device=hidden.device)
    for start in range(0, hidden.shape[0], rows):
        logits = head(hidden[start : start + rows])
        if post is not None:
            logits = post(logits)
        logits = logits.float()
        target_logits = logits.gather(-1, targets[start : start + rows, None]).squeeze(-1)
        out[start : start + rows] = torch.logsumexp(logits, dim=-1) - target_logits
    return out


class TokenScorer:
    """Computes answer-token NLLs for padded batches with one decoder pass per batch."""

    def __init__(self, model):
        self.model = model
        self.post = logit_postprocessor(model.config)
        self.fast = self._fast_path_matches_model()
        if not self.fast:
            logger.warning("LM head shortcut does not reproduce this model's logits; using full logits (slower).")

    def _decoder_and_head(self):
        base = self.model.get_base_model() if hasattr(self.model, "get_base_model") else self.model
        return base.get_decoder(), base.get_output_embeddings()

    def _fast_path_matches_model(self) -> bool:
        """Check once that decoder + head + post-processing equals the model's own logits."""
        import torch

        try:
            decoder, head = self._decoder_and_head()
        except (AttributeError, NotImplementedError):
            return False
        if decoder is None or head is None:
            return False
        device = next(self.model.parameters()).device
        ids = torch.arange(1, 9, device=device)[None] % self.model.config.vocab_size
        with torch.no_grad():
            reference = self.model(input_ids=ids).logits.float()
            ours = self.post(head(decoder(input_ids=ids).last_hidden_state)).float()
        tolerance = 1e-3 if reference.dtype == torch.float32 and ours.dtype == torch.float32 else 5e-2
        return torch.allclose(reference, ours, atol=tolerance * (1 + reference.abs().max().item()), rtol=0)

    def __call__(self, input_ids, attention_mask, position_ids, score_mask):
        """Float32 NLL of every position with score_mask True (position 0 never: it has no context)."""
        import torch

        # The first real token of a row has no context; with left padding it is not at column 0.
        score_mask = score_mask & (position_ids > 0) & attention_mask.bool()
        rows, cols = score_mask.nonzero(as_tuple=True)
        targets = input_ids[rows, cols]
        with torch.no_grad():
            if self.fast:
                decoder, head = self._decoder_and_head()
                hidden = decoder(
                    input_ids=input_ids, attention_mask=_mask_if_padded(attention_mask), position_ids=position_ids
                ).last_hidden_state
                return chunked_token_nll(head, hidden[rows, cols - 1], targets, self.post)
            logits = self.model(
                input_ids=input_ids, attention_mask=_mask_if_padded(attention_mask), position_ids=position_ids
            ).logits
            selected = logits[rows, cols - 1].float()
            return torch.logsumexp(selected, -1) - selected.gather(-1, targets[:, None]).squeeze(-1)


def _mask_if_padded(attention_mask):
    """None for a batch without padding, so attention can take its fast causal path (no 4D mask)."""
    return None if bool(attention_mask.all()) else attention_mask


def score_tokenized(
    model,
    examples: list[TokenizedExample],
    *,
    pad_id: int,
    batch_tokens: int | None = None,
    max_batch_size: int = 64,
    padding_side: str = "right",
    progress: bool = True,
    scorer: TokenScorer | None = None,
) -> list[np.ndarray]:
    """Per-example float32 arrays of token NLL aligned with input_ids; NaN where not scored (prompt, pos 0)."""
    import torch
    from tqdm.auto import tqdm

    scorer = scorer or TokenScorer(model)
    device = next(model.parameters()).device
    results: list[np.ndarray | None] = [None] * len(examples)
    batch_tokens = batch_tokens or default_batch_tokens(device)
    batches = plan_batches([len(e.input_ids) for e in examples], batch_tokens, max_batch_size)
    total = sum(sum(e.answer_mask) for e in examples)
    with tqdm(total=total, desc="score", unit="tok", disable=not progress, leave=False) as bar:
        for batch in batches:
            chosen = [examples[i] for i in batch]
            ids, attention, positions, score = pad_batch(
                [e.input_ids for e in chosen], [e.answer_mask for e in chosen], pad_id, padding_side
            )
            score &= positions > 0
            nll = scorer(ids.to(device), attention.to(device), positions.to(device), score.to(device))
            flat = torch.full(ids.shape, float("nan"), dtype=torch.float32)
            flat[score] = nll.cpu()
            for row, i in enumerate(batch):
                n = len(examples[i].input_ids)
                cols = slice(0, n) if padding_side == "right" else slice(ids.shape[1] - n, ids.shape[1])
                results[i] = flat[row, cols].numpy()
            bar.update(int(score.sum()))
    return results  # type: ignore[return-value]


# --------------------------------------------------------------------------------------------- score files


# --------------------------------------------------------------------------------------------- the score verb


def _inputs_fingerprint(config: ScoreConfig, tok_fp: str, examples: list[TokenizedExample]) -> str:
    h = hashlib.sha256()
    # shard_size is part of it: shards of another size would overlap the ones already written.
    h.update(json.dumps([config.model_ref(), config.adapter, config.max_length, config.dtype, config.shard_size,
                         tok_fp]).encode())
    for e in examples:
        h.update(e.id.encode())
        h.update(np.asarray(e.input_ids, np.int32).tobytes())
        h.update(np.asarray(e.answer_mask, np.bool_).tobytes())
    return h.hexdigest()[:16]


def score(config: ScoreConfig) -> Path:
    """Tokenize `config.data`, score every answer token under `config.model`, write `config.out`.

    Resumable: finished shards live in `<out>.parts/` until the final file is written.
    """
    from accelerate import PartialState
    from tqdm.auto import tqdm

    out = check_output_file(config.out)  # before any work: a bad --out fails now, not after scoring
    # cpu=True makes processes started by `accelerate launch` without a GPU join one gloo group; without it
    # each believes it is alone and scores every shard.
    state = PartialState(cpu=runs_on_cpu(config.device))
    model_ref = config.model_ref()  # a .gguf file's path with --gguf_file: every loader takes it
    context = context_length(model_ref)
    if config.max_length is None:
        config = replace(config, max_length=min(context or DEFAULT_MAX_LENGTH, DEFAULT_MAX_LENGTH))
    elif context is not None and config.max_length > context:
        raise ValueError(f"--max_length {config.max_length} exceeds the context of {config.model} "
                         f"({context} positions); use --max_length {context} or less")
    tokenizer = load_tokenizer(model_ref)
    errors = ErrorLog()
    examples = read_examples(config.data, config.data_format(), on_error=config.on_error, errors=errors)
    tokenized = tokenize_examples(
        tokenizer, examples, config.max_length, on_error=config.on_error, errors=errors,
        progress=config.progress and state.is_main_process,
    )
    if errors.skipped:
        logger.warning("%s", errors.summary())
    if not tokenized:
        raise ValueError(f"{config.data}: no example left to score ({errors.summary()})")
    tok_fp = tokenizer_fingerprint(tokenizer)
    fingerprint = _inputs_fingerprint(config, tok_fp, tokenized)
    parts = out.with_name(out.name + ".parts")
    _prepare_parts_dir(parts, fingerprint, state)

    model = load_model(model_ref, dtype=config.dtype, device=config.device, adapter=config.adapter)
    scorer = TokenScorer(model)
    shards = [tokenized[i : i + config.shard_size] for i in range(0, len(tokenized), config.shard_size)]
    mine = [k for k in range(len(shards)) if k % state.num_processes == state.process_index]
    todo = [k for k in mine if not _shard_path(parts, k).exists()]
    if len(todo) < len(mine):
        logger.info("resuming: %d of %d shard(s) already scored", len(mine) - len(todo), len(mine))
    logger.info("process %d of %d: shards %s of %d", state.process_index, state.num_processes, mine, len(shards))
    for k in tqdm(todo, desc="shards", disable=not config.progress or len(shards) == 1, leave=False):
        nll = score_tokenized(
            model, shards[k], pad_id=tokenizer.pad_token_id, batch_tokens=config.batch_tokens,
            max_batch_size=config.max_batch_size, padding_side=config.padding_side,
            progress=config.progress, scorer=scorer,
        )
        write_parquet(_shard_path(parts, k), scores_table(shards[k], nll))
    state.wait_for_everyone()

    if state.is_main_process:
        import pyarrow as pa
        import pyarrow.parquet as pq

        table = pa.concat_tables([pq.read_table(_shard_path(parts, k)) for k in range(len(shards))])
        metadata = {
            "format": SCORES_FORMAT,
            "model": model_ref,
            "gguf": gguf_record(model_ref),  # the .gguf file and its SHA-256, for a GGUF model
            "adapter": config.adapter,
            "tokenizer_fingerprint": tok_fp,
            "max_length": config.max_length,
            "vocab_size": len(tokenizer),
            "dtype": str(next(model.parameters()).dtype).replace("torch.", ""),
            "data": str(config.data),
            "n_examples": len(tokenized),
            "n_skipped": len(errors.skipped),
            "n_truncated": sum(e.truncated for e in tokenized),
            "inputs_fingerprint": fingerprint,
            "config": asdict(config),
            "versions": library_versions(),
        }
        write_parquet(out, table, metadata)
        remove_dir(parts, PARTS_MARKER)
    state.wait_for_everyone()
    return out


def _shard_path(parts: Path, k: int) -> Path:
    return parts / f"shard-{k:05d}.parquet"


def _prepare_parts_dir(parts: Path, fingerprint: str, state) -> None:
    """Create the shard directory, or check that the one left by a killed run was for the same inputs.

    A directory of that name without our manifest is not ours: it is refused, never written into or removed.
    """
    manifest = parts / PARTS_MARKER
    if state.is_main_process:
        if parts.exists() and not manifest.exists():
            check_replaceable(parts, PARTS_MARKER)  # raises: the directory is not one `score` made
        if manifest.exists():
            previous = json.loads(manifest.read_text()).get("inputs_fingerprint")
            if previous != fingerprint:
                logger.warning("%s holds shards of different inputs; starting over", parts)
                remove_dir(parts, PARTS_MARKER)
        if not manifest.exists():
            parts.mkdir(parents=True, exist_ok=True)
            write_json(manifest, {"inputs_fingerprint": fingerprint})
    state.wait_for_everyone()


