"""The plan of an experiment: the variants (training set, token policy, loss, learning rate) its config asks for,
and plan.json, the resolved plan the runner writes before any unit runs (what the report and analysis read)."""

from __future__ import annotations

import os
from dataclasses import asdict, dataclass
from pathlib import Path

from robust_sft.core.config_types import require_path_name
from robust_sft.core.rundir import PLAN_SCHEMA
from robust_sft.experiment.config import LOSS_METHODS, SOURCES, ExperimentConfig
from robust_sft.models.gguf import gguf_record
from robust_sft.training.config import TrainConfig


# data/<SDFT_TEACHER>.jsonl: the sdft teacher's prompt per GT example (the target task's rewrite prompt)
SDFT_TEACHER = "sdft_teacher"


@dataclass(frozen=True)
class Variant:
    """One trained configuration: a training set, a token policy and a loss."""

    name: str
    method: str
    source: str  # one of SOURCES
    train_overrides: tuple = ()  # (key, value) pairs for TrainConfig
    lr_scale: float = 1.0  # factor on the config's learning rate (the learning-rate control's variants)

    def __post_init__(self) -> None:
        require_path_name(self.name, "variant")  # models/<name>/ and eval/<name>/

    @property
    def tau(self) -> float | str | None:
        return dict(self.train_overrides).get("tau")

    @property
    def mask(self) -> str | None:
        return dict(self.train_overrides).get("mask")


def plan_variants(config: ExperimentConfig) -> list[Variant]:
    variants = []
    for method in config.methods:
        if method == "gt":
            variants.append(Variant("gt", "gt", "gt", (("mask", "none"),)))
        elif method == "stm":
            variants += [Variant(f"stm@{tau:g}", "stm", "gt", (("mask", "threshold"), ("tau", tau)))
                         for tau in config.taus]
        elif method in ("stm_random", "stm_lowest"):
            kind = method.split("_")[1]
            variants.append(Variant(f"{method}@{config.control_tau:g}", method, "gt",
                                    (("mask", kind), ("tau", config.control_tau))))
        elif method == "stm_soft":  # every GT token trained, weighted by its score (masking.weights)
            variants += [Variant(f"stm_soft@{tau:g}", "stm_soft", "gt", (("mask", "none"), ("tau", tau),
                                                                         ("soft_temperature", config.soft_temperature)))
                         for tau in config.taus]
        elif method in (*LOSS_METHODS, "sdft"):  # GT, the loss changed (sdft: the GT prompts, its own samples)
            variants.append(Variant(method, method, "gt", (("mask", "none"), ("loss", method))))
        elif method == "stm_auto":
            variants.append(Variant("stm@auto", method, "gt", (("mask", "threshold"), ("tau", "auto"))))
        elif method in ("answer_aware", "hindsight"):
            variants.append(Variant(f"{method}@{config.control_tau:g}", method, "gt",
                                    (("mask", method), ("tau", config.control_tau))))
        elif method == "departure_kept":  # STM at control_tau, the departure token always trained
            variants.append(Variant(f"departure_kept@{config.control_tau:g}", method, "gt",
                                    (("mask", "keep_departure"), ("tau", config.control_tau))))
        elif method == "style_only":  # GT rows of the problems Self-Output solved (units.py: style_only_ids)
            variants.append(Variant("style_only", "style_only", "gt", (("mask", "none"),)))
        else:  # self_output, rephrase, oracle: their own training set, nothing masked
            variants.append(Variant(method, method, method, (("mask", "none"),)))
    return variants + lr_sweep_variants(config)


def lr_sweep_variants(config: ExperimentConfig) -> list[Variant]:
    """The learning-rate control: each swept method again at train.learning_rate x factor, named by that rate."""
    base_lr = float(config.train.get("learning_rate", TrainConfig.__dataclass_fields__["learning_rate"].default))
    variants = []
    for method, factors in config.lr_sweep.items():
        if method == "stm":
            name, overrides = f"stm@{config.control_tau:g}", (("mask", "threshold"), ("tau", config.control_tau))
        elif method in LOSS_METHODS:
            name, overrides = method, (("mask", "none"), ("loss", method))
        else:
            name, overrides = method, (("mask", "none"),)
        source = "oracle" if method == "oracle" else "gt"
        for factor in factors:
            if factor == 1:
                continue  # the method's own variant at the config's rate
            lr = base_lr * factor
            variants.append(Variant(f"{name}_lr{lr:.0e}", method, source,
                                    overrides + (("learning_rate", lr),), lr_scale=float(factor)))
    names = [v.name for v in variants]
    duplicated = sorted({n for n in names if names.count(n) > 1})
    if duplicated:
        raise ValueError(f"lr_sweep: factors give the same learning rate twice ({', '.join(duplicated)})")
    return variants


def sources_needed(variants: list[Variant]) -> list[str]:
    """The training sets the variants read: their own, and Self-Output's for style_only (which problems it solved)."""
    needed = {v.source for v in variants} | ({"self_output"} if any(v.method == "style_only" for v in variants)
                                             else set())
    return sorted(needed, key=SOURCES.index)


def variant_train_options(config: ExperimentConfig, variant: Variant, seed: int) -> dict:
    """TrainConfig options of one run: the config's, the variant's, and per-seed ones."""
    options = {**config.train, **dict(variant.train_overrides)}
    if variant.method == "stm_random":
        options["mask_seed"] = seed  # a new random mask per seed: the spread includes the mask's
    return options


def variant_plan(variant: Variant, train_configs: dict[int, object], run_dir: Path) -> dict:
    """One variant as trained: its family, training set and, per seed, the token policy and every TrainConfig field.

    Paths inside the run directory are written relative to it, so a copied run directory's plan stays true."""
    per_seed = {}
    for seed, train_config in train_configs.items():
        options = asdict(train_config)
        options.pop("progress")  # how a run shows itself, not what it trains
        for name in ("data", "output_dir", "hinted_scores", "sdft_teacher_prompts", "example_ids", "departure_file"):
            if options.get(name) is not None:
                options[name] = os.path.relpath(options[name], run_dir)
        per_seed[str(seed)] = {"policy": asdict(train_config.policy()), "train": options}
    first = next(iter(train_configs.values()))
    return {"name": variant.name, "method": variant.method, "source": variant.source, "tau": variant.tau,
            "loss": first.loss, "learning_rate": first.learning_rate, "lr_scale": variant.lr_scale,
            "seeds": per_seed}


def run_plan(config: ExperimentConfig, *, base: str, base_key: str, keyed_path: str, tasks: list[str],
             task_kwargs: dict[str, dict], sources: list[str], variants: list[dict]) -> dict:
    """plan.json: the run as resolved (base model, tasks, seeds, training sets, variants from `variant_plan`)."""
    return {
        "schema": PLAN_SCHEMA,
        "name": config.name,
        # A GGUF model: its .gguf file and SHA-256 (the path is the file itself, loaded through the cache).
        # keyed_path: where the model lay when the run's keys were made (experiment/runner.py resolve_base).
        "base_model": {"path": base, "key": base_key, "keyed_path": keyed_path, "gguf": gguf_record(base)},
        "target": tasks[0],
        "others": tasks[1:],
        "task_kwargs": task_kwargs,  # how each task is built (the organism's world seed)
        "seeds": list(config.seeds),
        "sources": sources,
        "control_tau": config.control_tau,
        "variants": variants,
        "criteria": config.criteria,  # pre-registered in the config; judged in results.json
    }
