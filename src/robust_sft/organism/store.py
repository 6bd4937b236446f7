"""Build (once), cache and ship the organism's base models; the runner asks here for a world's model.

Nothing here is part of a definition (each version's key hashes its world, tokenizer and pretraining modules
only): editing this file leaves every cached and shipped build valid.
"""

from __future__ import annotations

import importlib
import json
import logging
import os
import shutil
import tempfile
import time
from dataclasses import asdict
from pathlib import Path

import torch

from robust_sft.core.artifacts import replace_dir, write_json
from robust_sft.evaluation import evaluate_tasks
from robust_sft.organism.tokenizer import build_tokenizer
from robust_sft.organism.versions import world_version

logger = logging.getLogger(__name__)

SHIPPED_FILES = ("config.json", "generation_config.json", "model.safetensors", "tokenizer.json",
                 "tokenizer_config.json", "chat_template.jinja", "base_eval.json")
MARKER = "base_eval.json"  # a build directory holds it; replace_dir refuses to replace anything else


def cache_root() -> Path:
    return Path(os.environ.get("ROBUST_SFT_CACHE", Path.home() / ".cache" / "robust-sft")) / "organism"


def definition(version: str = "v4"):
    """The module that defines `version`'s model: OrganismConfig, definition_sources, cache_key, pretrain."""
    return importlib.import_module(world_version(version).definition)


def definition_key(config, version: str = "v4") -> str:
    module = definition(version)
    return module.cache_key(config, module.definition_sources())


# --- build + cache ------------------------------------------------------------------------------
def build_base_model(
    cache_dir: str | Path | None = None, seed: int = 0, force: bool = False,
    config=None, progress: bool = True, version: str = "v4",
) -> Path:
    """Path of the cached base model of world `seed` (model + tokenizer + base_eval.json), building it if needed."""
    module = definition(version)
    config = config or module.OrganismConfig(seed=seed)
    if not isinstance(config, module.OrganismConfig):
        raise TypeError(f"world {version} is built from {module.__name__}.OrganismConfig, not {type(config).__name__}")
    root = Path(cache_dir) if cache_dir is not None else cache_root()
    out = root / definition_key(config, version)
    if out.exists() and not force:
        return out
    torch.set_num_threads(config.threads)
    start = time.time()
    tok = build_tokenizer()
    model = module.new_model(config, tok)
    module.pretrain(model, tok, config, progress)
    root.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=root, prefix=".building-"))
    try:
        report = {"key": out.name, "version": version, **evaluate_build(model, tok, config, version, tmp, progress)}
        report |= {"build_seconds": round(time.time() - start, 1), "config": asdict(config)}
        model.save_pretrained(tmp)
        tok.save_pretrained(tmp)
        write_json(tmp / MARKER, report)
        replace_dir(tmp, out, MARKER)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    if progress:
        print(json.dumps({k: report[k] for k in ("accuracy", "non_target_mean", "build_seconds")}, indent=2))
    return out


def evaluate_build(model, tok, config, version: str, out: Path, progress: bool) -> dict:
    """The report's figures: base accuracy per task (and for v5 the design measures, organism/measures.py)."""
    spec = world_version(version)
    world = importlib.import_module(spec.world)
    kwargs = {t: {"seed": config.seed} for t in world.TASKS}
    if spec.measures:
        from robust_sft.organism.measures import design_measures

        figures = design_measures(model, tok, world, config.seed, config.eval_limit, out / "eval", progress)
    else:
        figures = {"accuracy": evaluate_tasks(model, tok, list(world.TASKS), limit=config.eval_limit, batch_size=64,
                                              progress=progress, task_kwargs=kwargs)}
    accuracy = figures["accuracy"]
    return {**figures, "target": world.TARGET,
            "non_target_mean": sum(v for k, v in accuracy.items() if k != world.TARGET) / (len(accuracy) - 1)}


# --- the shipped model ----------------------------------------------------------------------------
def shipped_dir(seed: int = 0, version: str = "v4") -> Path:
    return world_version(version).shipped / f"seed{seed}"


def shipped_report(seed: int = 0, version: str = "v4") -> dict | None:
    """The shipped build's base_eval.json of world `seed`, or None when none is shipped."""
    report = shipped_dir(seed, version) / MARKER
    return json.loads(report.read_text()) if report.exists() else None


def shipped_key(seed: int = 0, version: str = "v4") -> str | None:
    """The definition key the shipped model of world `seed` was built from, or None when none is shipped."""
    return (shipped_report(seed, version) or {}).get("key")


def base_model_path(seed: int = 0, progress: bool = True, version: str = "v4") -> Path:
    """The organism's base model for world `seed` of `version`.

    The model shipped inside the package when it was built from this code's definition of the world,
    tokenizer and pretraining (so every machine fine-tunes the same weights, whatever its float kernels);
    otherwise a local build, cached after the first use.
    """
    key = definition_key(definition(version).OrganismConfig(seed=seed), version)
    shipped = shipped_key(seed, version)
    if shipped == key:
        return shipped_dir(seed, version)
    if shipped is not None:
        logger.warning("the shipped organism (%s, world %d) was built from another definition (%s, this code: %s); "
                       "building one locally. `robust-sft organism build --version %s --seed %d --ship` refreshes it.",
                       version, seed, shipped, key, version, seed)
    return build_base_model(seed=seed, progress=progress, version=version)


def ship_base_model(seed: int = 0, force: bool = False, progress: bool = True, version: str = "v4") -> Path:
    """Build (or reuse the cached build of) world `seed`'s base model and copy it into the package."""
    built = build_base_model(seed=seed, force=force, progress=progress, version=version)
    target = shipped_dir(seed, version)
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=target.parent, prefix=f".{target.name}-"))
    try:
        for name in SHIPPED_FILES:
            shutil.copyfile(built / name, tmp / name)  # plain copies: readable as the umask allows
        tmp.chmod(0o755)
        replace_dir(tmp, target, MARKER)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return target
