"""Supervised fine-tuning with per-token labels: one trainer for every method.

GT (no masking), STM (high-perplexity tokens masked), Self-Output / Rephrase data and the ablations all
run through `train()`: the only thing that changes between methods is the data and its labels, so a
comparison never mixes two training stacks. Built on `transformers.Trainer` (per-epoch checkpoints,
resume, seeds, `accelerate launch`) and PEFT (LoRA, DoRA); full fine-tuning too.
"""

from __future__ import annotations

import json
import logging
from dataclasses import asdict
from pathlib import Path
from typing import Callable

from robust_sft.core.artifacts import library_versions, write_json, write_jsonl
from robust_sft.masking.policies import IGNORE_INDEX, MaskPolicy
from robust_sft.models.gguf import gguf_record
from robust_sft.models.loading import load_causal_lm, load_tokenizer, resolve_device, resolve_dtype
from robust_sft.training.checkpoints import epoch_metrics, log_before_saves, mean_training_loss, resume_point
from robust_sft.training.config import TrainConfig
from robust_sft.training.data import TokenDataset, TrainingData, collate, load_training_data
from robust_sft.training.losses import token_loss

logger = logging.getLogger(__name__)


# --------------------------------------------------------------------------------------------- model


def prepare_model(config: TrainConfig):
    """Load the model for training and wrap it with LoRA/DoRA when asked."""
    import torch

    dtype = resolve_dtype(config.dtype, resolve_device("auto"))
    # Full fine-tuning keeps float32 master weights (bf16 runs as autocast): at lr 2e-6 most AdamW updates
    # are below bf16's resolution and would round away. Adapters train in float32 inside PEFT anyway.
    load_dtype = torch.float32 if config.finetuning == "full" else dtype
    model = load_causal_lm(config.model_ref(), load_dtype)
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
    task=None,
) -> Path:
    """Fine-tune `config.model` on `config.data`; return the directory of the final (best-epoch) model.

    `eval_fn(model) -> {name: value}` adds metrics at every epoch end (the paper selects the epoch with
    the best validation accuracy: pass best_metric="accuracy", greater_is_better=True).
    `task`: answer_aware's task object, when it needs options a name cannot carry (default: `config.span_task`).
    """
    from transformers import set_seed

    set_seed(config.seed)
    out = Path(config.output_dir)
    tokenizer = load_tokenizer(config.model_ref())
    data = load_training_data(config.data, config.policy(), tokenizer, config.dpf_scores,
                              hinted_scores=config.hinted_scores, span_task=task or config.span_task)
    if not data.labels:
        raise ValueError(f"{config.data}: no example has a trainable token under this policy ({data.report})")
    logger.info("training data: %s", json.dumps(data.report))
    validation = None
    if config.validation:
        validation = TokenDataset(load_training_data(config.validation, MaskPolicy(kind="none"), tokenizer))
    evaluating = validation is not None or eval_fn is not None

    model, use_bf16 = prepare_model(config)
    args = training_arguments(config, use_bf16, best_metric if evaluating else None, greater_is_better)
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
    trainer.add_callback(log_before_saves())
    trainer.train(resume_from_checkpoint=resume_point(out, config.resume_from_checkpoint))

    final = out / "final"
    trainer.save_model(str(final))
    tokenizer.save_pretrained(str(final))
    if trainer.is_world_process_zero():
        write_train_summary(out, config, data, trainer.state, final)
    return final


def training_arguments(config: TrainConfig, use_bf16: bool, best_metric: str | None, greater_is_better: bool):
    """transformers' TrainingArguments for `config`: a checkpoint per epoch; the best one kept when a metric is
    given (evaluated at each epoch end)."""
    import torch
    from transformers import TrainingArguments

    evaluating = best_metric is not None
    return TrainingArguments(
        output_dir=str(Path(config.output_dir)),
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
        metric_for_best_model=best_metric,
        greater_is_better=greater_is_better if evaluating else None,
        remove_unused_columns=False,
        report_to="none",
        disable_tqdm=not config.progress,
        dataloader_num_workers=0,
        dataloader_pin_memory=torch.cuda.is_available(),
    )


def write_train_summary(out: Path, config: TrainConfig, data: TrainingData, state, final: Path) -> None:
    """The trainer's record of what it trained (the run directory's train_summary.json) and its loss log."""
    history = state.log_history
    write_jsonl(out / "loss_log.jsonl", history)
    write_json(out / "train_summary.json", {
        "config": asdict(config),
        "gguf": gguf_record(config.model_ref()),  # the .gguf file and its SHA-256, for a GGUF model
        "mask_report": data.report,
        "n_train_examples": len(data.labels),
        "trained_tokens": int(sum((lab != IGNORE_INDEX).sum() for lab in data.labels)),
        "train_loss": mean_training_loss(history),
        "epochs": epoch_metrics(history),
        "best_checkpoint": state.best_model_checkpoint,
        "best_metric": state.best_metric,
        "final_model": str(final),
        "versions": library_versions(),
    })
