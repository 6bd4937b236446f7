"""Supervised fine-tuning with per-token labels: one trainer for every method.

GT (no masking), STM (high-perplexity tokens masked), the soft STM (tokens weighted), Self-Output / Rephrase
data, the ablations and the reweighted losses (DFT, EAFT, InfoSFT) all run through `train()`: the only thing
that changes between methods is the data, its labels or weights and the token loss, so a comparison never
mixes two training stacks. Built on `transformers.Trainer` (per-epoch checkpoints, resume, seeds, `accelerate
launch`) and PEFT (LoRA, DoRA); full fine-tuning too. On-policy self-distillation (`--loss sdft`) samples from
the model as it trains, so it runs in TRL's SDFTTrainer (training/sdft.py), a Trainer too, with the same model,
LoRA, schedule, checkpoint and epoch-selection options.
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
from robust_sft.training.data import TokenDataset, TrainingData, collate, load_training_data, read_example_ids
from robust_sft.training.hooks import EpochMetricMixin
from robust_sft.training.losses import INFOSFT_P, token_loss
from robust_sft.training.sdft import sdft_trainer

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
    peft_config = peft_config_of(config)
    if peft_config is not None:
        from peft import get_peft_model

        if config.gradient_checkpointing:
            model.enable_input_require_grads()  # lets gradients flow through checkpoints into frozen embeddings
        model = get_peft_model(model, peft_config)
    return model, dtype == torch.bfloat16


def peft_config_of(config: TrainConfig):
    """PEFT's LoraConfig for LoRA / DoRA, None for full fine-tuning."""
    if config.finetuning not in ("lora", "dora"):
        return None
    from peft import LoraConfig

    targets = config.target_modules if config.target_modules == "all-linear" else config.target_modules.split(",")
    return LoraConfig(r=config.lora_r, lora_alpha=config.lora_alpha, lora_dropout=config.lora_dropout,
                      target_modules=targets, use_dora=config.finetuning == "dora", task_type="CAUSAL_LM")


# --------------------------------------------------------------------------------------------- training


def _trainer_class():
    from transformers import Trainer

    class TokenMaskTrainer(EpochMetricMixin, Trainer):
        """Trainer of the token losses: per-token labels, the soft STM's weights beside them (a `weights` batch
        entry the model never sees), and the loss normalised by the trained tokens, or by the weights' sum, over
        every accumulated batch and device."""

        def __init__(self, *args, loss: str = "nll", infosft_p: float = INFOSFT_P, **kwargs):
            self.loss_kind, self.infosft_p, self.batch_weights = loss, infosft_p, None
            super().__init__(*args, compute_loss_func=self.token_loss, **kwargs)

        def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
            self.batch_weights = inputs.pop("weights", None)  # read by token_loss, after the model's forward
            return super().compute_loss(model, inputs, return_outputs, num_items_in_batch)

        def token_loss(self, outputs, labels, num_items_in_batch=None):
            return token_loss(outputs.logits, labels, self.loss_kind, num_items_in_batch, self.batch_weights,
                              self.infosft_p)

        def _get_num_items_in_batch(self, batch_samples, device):
            """With weights, the normaliser is their sum over the trained positions of every accumulated batch
            (and device), as the token count is without them: the loss stays exact under accumulation."""
            if not batch_samples or "weights" not in batch_samples[0]:
                return super()._get_num_items_in_batch(batch_samples, device)
            total = sum(b["weights"][..., 1:].sum() for b in batch_samples).to(device)
            if self.args.average_tokens_across_devices and self.args.world_size > 1:
                total = self.accelerator.gather(total).sum()
            return total

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
    evaluating = config.validation is not None or eval_fn is not None
    if config.loss == "sdft":
        import torch

        use_bf16 = resolve_dtype(config.dtype, resolve_device("auto")) == torch.bfloat16
        values = training_argument_values(config, use_bf16, best_metric if evaluating else None, greater_is_better)
        trainer, report = sdft_trainer(config, tokenizer, values, peft_config_of(config), eval_fn=eval_fn)
        n_examples = report["n_examples"]
    else:
        trainer, data = token_trainer(config, tokenizer, eval_fn, best_metric if evaluating else None,
                                      greater_is_better, task=task)
        report, n_examples = data.report, len(data.labels)
    trainer.add_callback(log_before_saves())
    trainer.train(resume_from_checkpoint=resume_point(out, config.resume_from_checkpoint))

    final = out / "final"
    trainer.save_model(str(final))
    tokenizer.save_pretrained(str(final))
    if trainer.is_world_process_zero():
        # sdft trains on the tokens its student samples (counted since the last resume), the others on labels
        trained = trainer.sampled_tokens if config.loss == "sdft" else trained_token_count(data)
        write_train_summary(out, config, report, n_examples, trained, trainer.state, final)
    return final


def token_trainer(config: TrainConfig, tokenizer, eval_fn: Callable | None, best_metric: str | None,
                  greater_is_better: bool, task=None):
    """The Trainer of the token losses over `config.data` (labels through the policy, weights when soft)."""
    data = load_training_data(config.data, config.policy(), tokenizer, config.dpf_scores,
                              hinted_scores=config.hinted_scores, span_task=task or config.span_task,
                              soft_temperature=config.soft_temperature,
                              example_ids=read_example_ids(config.example_ids),
                              departure_file=config.departure_file)
    if not data.labels:
        raise ValueError(f"{config.data}: no example has a trainable token under this policy ({data.report})")
    logger.info("training data: %s", json.dumps(data.report))
    validation = None
    if config.validation:
        validation = TokenDataset(load_training_data(config.validation, MaskPolicy(kind="none"), tokenizer))
    model, use_bf16 = prepare_model(config)
    args = training_arguments(config, use_bf16, best_metric, greater_is_better)
    trainer = _trainer_class()(
        model=model,
        args=args,
        train_dataset=TokenDataset(data),
        # Trainer insists on an eval dataset when evaluating; with only eval_fn it is never read.
        eval_dataset=validation if validation is not None else (TokenDataset(data) if best_metric else None),
        eval_loss=validation is not None,
        data_collator=lambda features: collate(features, tokenizer.pad_token_id),
        loss=config.loss,
        infosft_p=config.infosft_p,
        eval_fn=eval_fn,
    )
    return trainer, data


def trained_token_count(data: TrainingData) -> int:
    return int(sum((lab != IGNORE_INDEX).sum() for lab in data.labels))


def training_arguments(config: TrainConfig, use_bf16: bool, best_metric: str | None, greater_is_better: bool):
    """transformers' TrainingArguments for `config`: a checkpoint per epoch; the best one kept when a metric is
    given (evaluated at each epoch end)."""
    from transformers import TrainingArguments

    return TrainingArguments(**training_argument_values(config, use_bf16, best_metric, greater_is_better))


def training_argument_values(config: TrainConfig, use_bf16: bool, best_metric: str | None,
                             greater_is_better: bool) -> dict:
    """The TrainingArguments fields every trainer of ours shares (TRL's configs take them too)."""
    import torch

    evaluating = best_metric is not None
    return dict(
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


def write_train_summary(out: Path, config: TrainConfig, report: dict, n_examples: int, trained_tokens: int, state,
                        final: Path) -> None:
    """The trainer's record of what it trained (the run directory's train_summary.json) and its loss log."""
    history = state.log_history
    write_jsonl(out / "loss_log.jsonl", history)
    write_json(out / "train_summary.json", {
        "config": asdict(config),
        "gguf": gguf_record(config.model_ref()),  # the .gguf file and its SHA-256, for a GGUF model
        "mask_report": report,
        "n_train_examples": n_examples,
        "trained_tokens": trained_tokens,
        "train_loss": mean_training_loss(history),
        "epochs": epoch_metrics(history),
        "best_checkpoint": state.best_model_checkpoint,
        "best_metric": state.best_metric,
        "final_model": str(final),
        "versions": library_versions(),
    })
