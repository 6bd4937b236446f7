"""Soft token weights: a soft STM that scales each answer token's loss instead of dropping it.

The weight of an answer token is w = sigmoid((log tau - nll) / T), with nll its NLL under the base model (the
score file's) and T a temperature in nats: tokens well under tau weigh 1, tokens well above it 0, and a token at
tau one half. As T -> 0 the weights become STM's 0/1 keep mask (a token exactly at tau aside). Weights are
static (computed once from the score file, like a mask), so a tau or T sweep never rescores.

Weights cannot travel in a pre-tokenized TRL / axolotl dataset (their losses read 0/1 labels only), so `mask`
refuses them; `train` applies them.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

from robust_sft.core.config_types import Options, require

# Why an export refuses soft weights: said once, shown by `mask` and by `train` on a masked dataset.
NO_WEIGHTS_IN_EXPORT = ("soft weights cannot travel in a pre-tokenized input_ids/attention_mask/labels dataset: "
                        "TRL's SFTTrainer and axolotl read 0/1 labels only")


def soft_weights(nll: np.ndarray, keep: np.ndarray, tau: float, temperature: float) -> np.ndarray:
    """Per-token weights (float32, aligned with `nll`): sigmoid((log tau - nll) / T) on the kept tokens, 0 elsewhere.

    A kept token with no score (NaN) weighs 1, as STM keeps it. Computed in float64, so that a small T gives
    weights of exactly 0 and 1 (then the loss is hard STM's)."""
    if not (tau > 1 and math.isfinite(tau)):
        raise ValueError(f"soft weights need a finite tau > 1, not {tau}")
    if not (temperature > 0 and math.isfinite(temperature)):
        raise ValueError(f"the soft weights' temperature must be a positive number, not {temperature}")
    margin = (math.log(tau) - np.asarray(nll, np.float64)) / temperature
    weight = 0.5 * (1.0 + np.tanh(0.5 * margin))  # the logistic function, without overflow
    weight = np.where(np.isnan(margin), 1.0, weight)
    return np.where(keep, weight, 0.0).astype(np.float32)


@dataclass(kw_only=True)
class SoftWeightOption(Options):
    """The soft STM's temperature: `train` weights the tokens with it; `mask` refuses it (see NO_WEIGHTS_IN_EXPORT)."""

    soft_temperature: float | None = field(default=None, metadata={
        "help": "Soft STM: train every answer token the policy keeps, its loss weighted by sigmoid((log tau - nll) "
                "/ T), nll its score under the base model, T this temperature in nats (use --mask none; tau from "
                "--tau). The loss is the weighted sum over the sum of the weights. Unset: 0/1 labels."})

    def check(self) -> None:
        require(self.soft_temperature is None or (math.isfinite(self.soft_temperature) and self.soft_temperature > 0),
                f"soft_temperature must be a positive number (or unset), not {self.soft_temperature}")
