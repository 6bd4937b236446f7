"""Supervised fine-tuning with per-token labels: one trainer for every method.

GT (no masking), STM (high-perplexity tokens masked), Self-Output / Rephrase data and the ablations all
run through `train()`: the only thing that changes between methods is the data and its labels, so a
comparison never mixes two training stacks. Built on `transformers.Trainer` (per-epoch checkpoints,
resume, seeds, `accelerate launch`) and PEFT (LoRA, DoRA); full fine-tuning too.
"""

from __future__ import annotations

import json
import logging
import math
import shutil
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Callable, Literal

import numpy as np

from robust_sft.core.artifacts import library_versions, read_parquet, write_json, write_jsonl
from robust_sft.core.config_types import ProgressOption, is_finite_number, require
from robust_sft.masking.policies import IGNORE_INDEX, MaskOptions, MaskPolicy, apply_policy
from robust_sft.models.loading import load_causal_lm, load_tokenizer, resolve_device, resolve_dtype
from robust_sft.models.options import DtypeOption
from robust_sft.scoring.token_nll import check_tokenizer_matches, load_scores

logger = logging.getLogger(__name__)

Finetuning = Literal["lora", "dora", "full"]
Loss = Literal["nll", "dft", "eaft"]
EAFT_TOP_K = 20  # logits whose entropy approximates the full distribution's (as axolotl and LLaMA-Factory do)


@dataclass(kw_only=True)
class TrainConfig(MaskOptions, DtypeOption, ProgressOption):
    """Options of `robust-sft train`. Defaults follow the paper (LoRA on all linear layers, lr 2e-5, cosine, 3 epochs)."""

    model: str = field(metadata={"help": "Model to fine-tune (Hub name or local path); the one that scored the data."})
    data: str = field(
        metadata={"help": "A score file from `robust-sft score` (masked by --mask at load time) or a masked "
                  "dataset from `robust-sft mask` (input_ids/labels used as they are)."}
    )
    output_dir: str = field(metadata={"help": "Where checkpoints, the final model and the logs go."})
    finetuning: Finetuning = field(default="lora", metadata={"help": "lora, dora or full."})
    lora_r: int = field(default=16, metadata={"help": "LoRA/DoRA rank."})
    lora_alpha: int = field(default=32, metadata={"help": "LoRA/DoRA alpha."})
    lora_dropout: float = field(default=0.05, metadata={"help": "LoRA/DoRA dropout."})
    target_modules: str = field(
        default="all-linear", metadata={"help": "Modules to adapt: all-linear, or a comma-separated list of names."}
    )
    loss: Loss = field(
        default="nll",
        metadata={"help": "nll: mean NLL over trained tokens; dft: NLL x detached p (Dynamic Fine-Tuning); eaft: NLL "
                  "x the detached, normalised top-20 entropy of the model's prediction (Entropy-Aware Fine-Tuning)."},
    )
    learning_rate: float = field(default=2e-5, metadata={"help": "Peak learning rate (the paper: 2e-5 LoRA, 2e-6 full)."})
    num_train_epochs: float = field(default=3, metadata={"help": "Epochs."})
    lr_scheduler_type: str = field(default="cosine", metadata={"help": "Learning-rate schedule."})
    warmup_ratio: float = field(default=0.03, metadata={"help": "Fraction of steps spent warming up."})
    weight_decay: float = field(default=0.0, metadata={"help": "AdamW weight decay."})
    per_device_train_batch_size: int = field(default=4, metadata={"help": "Examples per device per step."})
    gradient_accumulation_steps: int = field(default=1, metadata={"help": "Steps accumulated per update."})
    validation: str | None = field(
        default=None, metadata={"help": "Score file of validation data: loss per epoch, best epoch kept."}
    )
    seed: int = field(default=42, metadata={"help": "Seed of initialisation and data order."})
    gradient_checkpointing: bool = field(default=False, metadata={"help": "Trade compute for activation memory."})
    resume_from_checkpoint: str | None = field(
        default=None, metadata={"help": "A checkpoint directory, or 'latest' for the newest one in output_dir."}
    )
    logging_steps: int = field(default=10, metadata={"help": "Log the training loss every N steps."})
    save_total_limit: int | None = field(default=None, metadata={"help": "Keep at most N epoch checkpoints."})
    max_steps: int = field(default=-1, metadata={"help": "Stop after N steps (for smoke tests); -1 = all epochs."})

    def check(self) -> None:
        """The training options' ranges, before data or a model is loaded (the mask options and the dtype are
        checked by their groups, the choices by their types)."""
        from transformers.trainer_utils import SchedulerType

        require(is_finite_number(self.learning_rate) and self.learning_rate > 0,
                f"learning_rate must be a positive number, not {self.learning_rate}")
        require(is_finite_number(self.num_train_epochs) and self.num_train_epochs > 0,
                f"num_train_epochs must be positive, not {self.num_train_epochs}")
        # TrainingArguments reads a warmup value below 1 as a fraction and 1 or more as a number of steps.
        require(0 <= self.warmup_ratio < 1, f"warmup_ratio must be in [0, 1), not {self.warmup_ratio}")
        require(is_finite_number(self.weight_decay) and self.weight_decay >= 0,
                f"weight_decay must be >= 0, not {self.weight_decay}")
        for name in ("per_device_train_batch_size", "gradient_accumulation_steps", "lora_r", "logging_steps"):
            require(getattr(self, name) >= 1, f"{name} must be at least 1, not {getattr(self, name)}")
        require(self.lora_alpha > 0, f"lora_alpha must be positive, not {self.lora_alpha}")
        require(0 <= self.lora_dropout < 1, f"lora_dropout must be in [0, 1), not {self.lora_dropout}")
        require(bool(self.target_modules.strip(",").strip()), "target_modules must name at least one module")
        schedulers = [s.value for s in SchedulerType]
        require(self.lr_scheduler_type in schedulers,
                f"lr_scheduler_type must be one of {schedulers}, not {self.lr_scheduler_type!r}")
        require(0 <= self.seed < 2**32, f"seed must be in [0, 2**32), not {self.seed}")
        require(self.save_total_limit is None or self.save_total_limit >= 1,
                f"save_total_limit must be at least 1 (or unset), not {self.save_total_limit}")
        require(self.max_steps == -1 or self.max_steps >= 1, f"max_steps must be -1 or at least 1, not {self.max_steps}")


# --------------------------------------------------------------------------------------------- data


@dataclass
class TrainingData:
    input_ids: list[np.ndarray]
    labels: list[np.ndarray]
    ids: list[str]
    report: dict


def load_training_data(path: str, policy: MaskPolicy, tokenizer=None, dpf_scores: str | None = None) -> TrainingData:
    """Labels for training: from a masked dataset as they are, or from a score file through `policy`."""
    table, metadata = _read_masked_dir(Path(path)) if Path(path).is_dir() else (
        read_parquet(path) if Path(path).is_file() else (None, {}))
    if table is not None and "labels" in table.column_names:
        if tokenizer is not None and metadata.get("tokenizer_fingerprint"):
            check_tokenizer_matches(metadata, tokenizer, path)
        input_ids = [np.asarray(x, np.int64) for x in table.column("input_ids").to_pylist()]
        labels = [np.asarray(x, np.int64) for x in table.column("labels").to_pylist()]
        ids = table.column("id").to_pylist() if "id" in table.column_names else [str(i) for i in range(len(labels))]
        return TrainingData(input_ids, labels, ids, metadata.get("mask_report", {"policy": "precomputed"}))
    scores = load_scores(path, tokenizer)
    after = load_scores(dpf_scores, tokenizer) if dpf_scores else None
    result = apply_policy(scores, policy, after)
    return TrainingData(
        [scores.input_ids[i] for i in result.keep_examples],
        result.labels,
        [scores.ids[i] for i in result.keep_examples],
        result.report,
    )


def _read_masked_dir(path: Path):
    """A masked dataset written by `robust-sft mask` as a save_to_disk directory: (table, metadata)."""
    import datasets

    metadata_file = path / "robust_sft.json"
    metadata = json.loads(metadata_file.read_text()) if metadata_file.exists() else {}
    return datasets.load_from_disk(str(path)).data.table, metadata


class TokenDataset:
    """Map-style dataset of {input_ids, labels} for the Trainer."""

    def __init__(self, data: TrainingData):
        self.data = data

    def __len__(self) -> int:
        return len(self.data.input_ids)

    def __getitem__(self, i: int) -> dict:
        return {"input_ids": self.data.input_ids[i], "labels": self.data.labels[i]}


def collate(features: list[dict], pad_id: int) -> dict:
    """Right-pad a batch; labels keep their -100 masks and padding gets -100 too."""
    import torch

    width = max(len(f["input_ids"]) for f in features)
    ids = torch.full((len(features), width), pad_id, dtype=torch.long)
    labels = torch.full((len(features), width), IGNORE_INDEX, dtype=torch.long)
    attention = torch.zeros((len(features), width), dtype=torch.long)
    for row, f in enumerate(features):
        n = len(f["input_ids"])
        ids[row, :n] = torch.as_tensor(f["input_ids"])
        labels[row, :n] = torch.as_tensor(f["labels"])
        attention[row, :n] = 1
    return {"input_ids": ids, "attention_mask": attention, "labels": labels}


# --------------------------------------------------------------------------------------------- losses


def token_loss(logits, labels, kind: str = "nll", num_items_in_batch=None):
    """Loss over the tokens whose label is not -100 (labels are shifted here, as in HF causal LMs).

    nll: the usual token cross-entropy. dft: cross-entropy times the token's detached probability
    (Dynamic Fine-Tuning), which down-weights tokens the model finds unlikely, a soft cousin of STM.
    eaft: cross-entropy times the detached entropy of the model's top-k prediction divided by log k, so in
    [0, 1] (Entropy-Aware Fine-Tuning): a confident prediction that the label contradicts (low entropy, high
    loss) is down-weighted, an uncertain one trained fully. (axolotl's and LLaMA-Factory's EAFT use the raw
    top-20 entropy, up to log 20 = 3.0; dividing by log k keeps the learning rate's meaning.)
    Normalised by `num_items_in_batch` when the Trainer provides it (exact under gradient accumulation).
    """
    import torch

    targets = labels[:, 1:]
    selected = targets != IGNORE_INDEX
    rows = logits[:, :-1][selected].float()  # only trained positions are upcast
    log_probs = torch.log_softmax(rows, dim=-1).gather(-1, targets[selected][:, None]).squeeze(-1)
    if kind == "nll":
        per_token = -log_probs
    elif kind == "dft":
        per_token = -log_probs * log_probs.detach().exp()
    elif kind == "eaft":
        per_token = -log_probs * normalized_top_k_entropy(rows.detach(), EAFT_TOP_K)
    else:
        raise ValueError(f"unknown loss {kind!r}")
    denominator = num_items_in_batch if num_items_in_batch is not None else selected.sum().clamp(min=1)
    return per_token.sum() / denominator


def normalized_top_k_entropy(logits, k: int):
    """Entropy of the softmax over each row's k largest logits, divided by log k (1 = uniform over k)."""
    import math

    import torch

    k = min(k, logits.shape[-1])
    if k < 2:
        return torch.zeros(logits.shape[:-1], dtype=logits.dtype, device=logits.device)
    log_p = torch.log_softmax(torch.topk(logits, k, dim=-1).values, dim=-1)
    return -(log_p.exp() * log_p).sum(-1) / math.log(k)


# --------------------------------------------------------------------------------------------- model


def prepare_model(config: TrainConfig):
    """Load the model for training and wrap it with LoRA/DoRA when asked."""
    import torch

    dtype = resolve_dtype(config.dtype, resolve_device("auto"))
    # Full fine-tuning keeps float32 master weights (bf16 runs as autocast): at lr 2e-6 most AdamW updates
    # are below bf16's resolution and would round away. Adapters train in float32 inside PEFT anyway.
    load_dtype = torch.float32 if config.finetuning == "full" else dtype
    model = load_causal_lm(config.model, load_dtype)
    if config.gradient_checkpointing:
        model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
        model.config.use_cache = False
    if config.finetuning in ("lora", "dora"):
        from peft import LoraConfig, get_peft_model

        targets = config.target_modules if config.target_modules == "all-linear" else config.target_modules.split(",")
        peft_config = LoraConfig(
            r=config.lora_r,
            lora_alpha=config.lora_alpha,
            lora_dropout=config.lora_dropout,
            target_modules=targets,
            use_dora=config.finetuning == "dora",
            task_type="CAUSAL_LM",
        )
        if config.gradient_checkpointing:
            model.enable_input_require_grads()  # lets gradients flow through checkpoints into frozen embeddings
        model = get_peft_model(model, peft_config)
    return model, dtype == torch.bfloat16


# --------------------------------------------------------------------------------------------- training


def _trainer_class():
    from transformers import Trainer

    class TokenMaskTrainer(Trainer):
        """Trainer whose evaluation can add task metrics (e.g. validation accuracy) to the loss."""

        def __init__(self, *args, eval_fn: Callable | None = None, eval_loss: bool = True, **kwargs):
            super().__init__(*args, **kwargs)
            self.eval_fn = eval_fn
            self.eval_loss = eval_loss

        def evaluate(self, eval_dataset=None, ignore_keys=None, metric_key_prefix: str = "eval"):
            metrics = {}
            if self.eval_loss:
                metrics = super().evaluate(eval_dataset, ignore_keys, metric_key_prefix)
            if self.eval_fn is not None:
                extra = {f"{metric_key_prefix}_{k}": v for k, v in self.eval_fn(self.model).items()}
                metrics.update(extra)
                self.log(extra)
            return metrics

    return TokenMaskTrainer


def train(
    config: TrainConfig,
    *,
    eval_fn: Callable | None = None,
    best_metric: str = "loss",
    greater_is_better: bool = False,
) -> Path:
    """Fine-tune `config.model` on `config.data`; return the directory of the final (best-epoch) model.

    `eval_fn(model) -> {name: value}` adds metrics at every epoch end (the paper selects the epoch with
    the best validation accuracy: pass best_metric="accuracy", greater_is_better=True).
    """
    import torch
    from transformers import TrainingArguments, set_seed

    set_seed(config.seed)
    out = Path(config.output_dir)
    tokenizer = load_tokenizer(config.model)
    data = load_training_data(config.data, config.policy(), tokenizer, config.dpf_scores)
    if not data.labels:
        raise ValueError(f"{config.data}: no example has a trainable token under this policy ({data.report})")
    logger.info("training data: %s", json.dumps(data.report))
    validation = None
    if config.validation:
        validation = TokenDataset(load_training_data(config.validation, MaskPolicy(kind="none"), tokenizer))
    evaluating = validation is not None or eval_fn is not None

    model, use_bf16 = prepare_model(config)
    args = TrainingArguments(
        output_dir=str(out),
        learning_rate=config.learning_rate,
        num_train_epochs=config.num_train_epochs,
        max_steps=config.max_steps,
        lr_scheduler_type=config.lr_scheduler_type,
        warmup_steps=config.warmup_ratio,  # a value below 1 is a fraction of the steps
        weight_decay=config.weight_decay,
        per_device_train_batch_size=config.per_device_train_batch_size,
        per_device_eval_batch_size=config.per_device_train_batch_size,
        gradient_accumulation_steps=config.gradient_accumulation_steps,
        bf16=use_bf16,
        use_cpu=resolve_device("auto").type == "cpu",  # lets bf16 (autocast) train on a CPU-only machine
        seed=config.seed,
        logging_steps=config.logging_steps,
        logging_first_step=True,
        save_strategy="epoch",
        save_total_limit=config.save_total_limit,
        eval_strategy="epoch" if evaluating else "no",
        load_best_model_at_end=evaluating,
        metric_for_best_model=best_metric if evaluating else None,
        greater_is_better=greater_is_better if evaluating else None,
        remove_unused_columns=False,
        report_to="none",
        disable_tqdm=not config.progress,
        dataloader_num_workers=0,
        dataloader_pin_memory=torch.cuda.is_available(),
    )
    trainer = _trainer_class()(
        model=model,
        args=args,
        train_dataset=TokenDataset(data),
        # Trainer insists on an eval dataset when evaluating; with only eval_fn it is never read.
        eval_dataset=validation if validation is not None else (TokenDataset(data) if evaluating else None),
        eval_loss=validation is not None,
        data_collator=lambda features: collate(features, tokenizer.pad_token_id),
        compute_loss_func=lambda outputs, labels, num_items_in_batch=None: token_loss(
            outputs.logits, labels, config.loss, num_items_in_batch
        ),
        eval_fn=eval_fn,
    )
    trainer.add_callback(_log_before_saves())
    trainer.train(resume_from_checkpoint=resume_point(out, config.resume_from_checkpoint))

    final = out / "final"
    trainer.save_model(str(final))
    tokenizer.save_pretrained(str(final))
    if trainer.is_world_process_zero():
        history = trainer.state.log_history
        write_jsonl(out / "loss_log.jsonl", history)
        write_json(out / "train_summary.json", {
            "config": asdict(config),
            "mask_report": data.report,
            "n_train_examples": len(data.labels),
            "trained_tokens": int(sum((lab != IGNORE_INDEX).sum() for lab in data.labels)),
            "train_loss": mean_training_loss(history),
            "epochs": _epoch_metrics(history),
            "best_checkpoint": trainer.state.best_model_checkpoint,
            "best_metric": trainer.state.best_metric,
            "final_model": str(final),
            "versions": library_versions(),
        })
    return final


def _epoch_metrics(history: list[dict]) -> list[dict]:
    """Per-epoch evaluation entries of the Trainer's log history, with the epoch rounded."""
    epochs = {}
    for entry in history:
        if any(k.startswith("eval_") for k in entry):
            epoch = int(math.ceil(entry.get("epoch", 0) - 1e-9))
            epochs.setdefault(epoch, {"epoch": epoch}).update(
                {k: v for k, v in entry.items() if k.startswith("eval_")}
            )
    return [epochs[k] for k in sorted(epochs)]


# --------------------------------------------------------------------------------------------- resuming


def checkpoint_is_complete(checkpoint: Path) -> bool:
    """True when the Trainer finished saving `checkpoint`: trainer_state.json is written last and must parse."""
    try:
        json.loads((checkpoint / "trainer_state.json").read_text())
    except (OSError, ValueError):
        return False
    return True


def resume_point(output_dir: Path, resume: str | None) -> str | None:
    """The checkpoint to resume from: `resume` itself, or for 'latest' the newest complete checkpoint-N.

    Checkpoints left half-written by a kill during a save are reported and removed: the Trainer cannot
    load them and writes them again when training reaches their step. With no complete checkpoint,
    'latest' starts from the beginning.
    """
    if resume is None:
        return None
    if resume != "latest":
        if Path(resume).is_dir() and not checkpoint_is_complete(Path(resume)):
            raise ValueError(f"{resume}: incomplete checkpoint (no readable trainer_state.json: killed while saving?)")
        return resume
    numbered = [p for p in output_dir.glob("checkpoint-*") if p.is_dir() and p.name.split("-", 1)[1].isdigit()]
    complete = []
    for checkpoint in numbered:
        if checkpoint_is_complete(checkpoint):
            complete.append(checkpoint)
        else:
            logger.warning("%s is incomplete (killed while saving); ignoring and removing it", checkpoint)
            shutil.rmtree(checkpoint, ignore_errors=True)  # other processes of a launch may race here
    if not complete:
        logger.warning("no complete checkpoint in %s; training from the start", output_dir)
        return None
    return str(max(complete, key=lambda p: int(p.name.split("-", 1)[1])))


def _log_before_saves():
    """A callback that logs the running loss at every epoch end and at the last step.

    The log history is saved in each checkpoint, so it then accounts for every step before the checkpoint,
    and `mean_training_loss` of a resumed run covers the whole run.
    """
    from transformers import TrainerCallback

    class LogBeforeSaves(TrainerCallback):
        def on_step_end(self, args, state, control, **kwargs):
            if state.global_step >= state.max_steps:
                control.should_log = True

        def on_epoch_end(self, args, state, control, **kwargs):
            control.should_log = True

    return LogBeforeSaves()


def mean_training_loss(history: list[dict]) -> float | None:
    """Mean per-step training loss of the whole run, from the Trainer's log history.

    Each "loss" entry is the mean over the steps since the previous one, so it is weighted by that count.
    (The Trainer's own train_loss averages only the steps run since the last resume.)
    """
    total, steps, last_step = 0.0, 0, 0
    for entry in history:
        if "loss" in entry and "step" in entry:
            n = entry["step"] - last_step
            total, steps, last_step = total + entry["loss"] * n, steps + n, entry["step"]
    return total / steps if steps else None
