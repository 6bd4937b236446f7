"""TrainConfig: every option of `robust-sft train` (and of an experiment's `train:` mapping), checked when built."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

from robust_sft.core.config_types import ProgressOption, is_finite_number, require
from robust_sft.masking.policies import MaskOptions
from robust_sft.masking.weights import SoftWeightOption
from robust_sft.models.gguf import GgufFileOption
from robust_sft.models.options import DtypeOption
from robust_sft.training.losses import INFOSFT_P
from robust_sft.training.sdft import SdftOptions

Finetuning = Literal["lora", "dora", "full"]

Loss = Literal["nll", "dft", "eaft", "infosft", "sdft"]


@dataclass(kw_only=True)
class TrainConfig(MaskOptions, SoftWeightOption, SdftOptions, GgufFileOption, DtypeOption, ProgressOption):
    """Options of `robust-sft train`. Defaults follow the paper (LoRA on all linear layers, lr 2e-5, cosine, 3 epochs)."""

    model: str = field(metadata={"help": "Model to fine-tune (Hub name or local path); the one that scored the data."})
    data: str = field(
        metadata={"help": "A score file from `robust-sft score` (masked by --mask at load time) or a masked "
                  "dataset from `robust-sft mask` (input_ids/labels used as they are)."}
    )
    output_dir: str = field(metadata={"help": "Where checkpoints, the final model and the logs go."})
    example_ids: str | None = field(
        default=None, metadata={"help": "A JSON file listing example ids: train on those examples of --data only "
                                "(an experiment's per-seed draw of training problems, its `train_pool`)."})
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
                  "x the detached, normalised top-20 entropy of the model's prediction (Entropy-Aware Fine-Tuning); "
                  "infosft: NLL x InfoSFT's weight of the detached p (--infosft_p); sdft: on-policy self-"
                  "distillation, the model's own samples toward the base model shown the reference (TRL's "
                  "SDFTTrainer; the mask options do not apply)."},
    )
    infosft_p: float = field(default=INFOSFT_P, metadata={
        "help": "loss infosft: tokens the model predicts with p >= P get no weight (InfoSFT's P; in (0.5, 1))."})
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
        require(0.5 < self.infosft_p < 1, f"infosft_p must be in (0.5, 1), not {self.infosft_p}")
        if self.loss == "sdft":
            require(self.soft_temperature is None, "soft_temperature weighs the reference's tokens; sdft trains on "
                                                   "the model's own samples: use one or the other")
            require(self.validation is None, "validation: sdft has no validation loss (select the epoch with a "
                                             "task metric, e.g. the accuracy `run` measures)")
