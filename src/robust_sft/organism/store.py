"""Build (once), cache and ship the organism's base models; the runner asks here for world K's model.

Nothing here is part of the definition (base_model.py, world.py, tokenizer.py): editing this file leaves every
cached and shipped build valid.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import tempfile
import time
from dataclasses import asdict
from pathlib import Path

import torch

from robust_sft.artifacts import replace_dir
from robust_sft.evaluation import evaluate_tasks
from robust_sft.organism import world
from robust_sft.organism.base_model import OrganismConfig, cache_key, definition_sources, new_model, pretrain
from robust_sft.organism.tokenizer import build_tokenizer

logger = logging.getLogger(__name__)

SHIPPED_ROOT = Path(__file__).parent / "shipped"
SHIPPED_FILES = ("config.json", "generation_config.json", "model.safetensors", "tokenizer.json",
                 "tokenizer_config.json", "chat_template.jinja", "base_eval.json")
# Every world that the demo, the study and the tests use ships, so no reader's CPU decides their base models.
SHIPPED_WORLDS = (0, 1, 2)


def cache_root() -> Path:
    return Path(os.environ.get("ROBUST_SFT_CACHE", Path.home() / ".cache" / "robust-sft")) / "organism"


# --- build + cache ------------------------------------------------------------------------------
def build_base_model(
    cache_dir: str | Path | None = None, seed: int = 0, force: bool = False,
    config: OrganismConfig | None = None, progress: bool = True,
) -> Path:
    """Path of the cached base model (model + tokenizer + base_eval.json), building it if needed."""
    config = config or OrganismConfig(seed=seed)
    root = Path(cache_dir) if cache_dir is not None else cache_root()
    out = root / cache_key(config, definition_sources())
    if out.exists() and not force:
        return out
    torch.set_num_threads(config.threads)
    start = time.time()
    tok = build_tokenizer()
    model = new_model(config, tok)
    pretrain(model, tok, config, progress)
    limits = {**{t: config.eval_limit for t in world.TASKS}, world.TARGET: config.target_eval_limit}
    accuracies = evaluate_tasks(model, tok, list(world.TASKS), limit=limits, batch_size=64, progress=progress,
                                task_kwargs={t: {"seed": config.seed} for t in world.TASKS})
    report = {
        "key": out.name,
        "accuracy": accuracies,
        "non_target_mean": sum(v for k, v in accuracies.items() if k != world.TARGET) / (len(accuracies) - 1),
        "target": world.TARGET,
        "build_seconds": round(time.time() - start, 1),
        "config": asdict(config),
    }
    root.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=root, prefix=".building-"))
    try:
        model.save_pretrained(tmp)
        tok.save_pretrained(tmp)
        (tmp / "base_eval.json").write_text(json.dumps(report, indent=2))
        replace_dir(tmp, out, marker="base_eval.json")  # force=True: only an earlier build is replaced
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    if progress:
        print(json.dumps({k: report[k] for k in ("accuracy", "non_target_mean", "build_seconds")}, indent=2))
    return out


# --- the shipped model ----------------------------------------------------------------------------
def shipped_dir(seed: int = 0) -> Path:
    return SHIPPED_ROOT / f"seed{seed}"


def shipped_key(seed: int = 0) -> str | None:
    """The definition key the shipped model of world `seed` was built from, or None when none is shipped."""
    report = shipped_dir(seed) / "base_eval.json"
    return json.loads(report.read_text()).get("key") if report.exists() else None


def base_model_path(seed: int = 0, progress: bool = True) -> Path:
    """The organism's base model for world `seed`.

    The model shipped inside the package when it was built from this code's definition of the world,
    tokenizer and pretraining (so every machine fine-tunes the same weights, whatever its float kernels);
    otherwise a local build, cached after the first use.
    """
    key = cache_key(OrganismConfig(seed=seed), definition_sources())
    shipped = shipped_key(seed)
    if shipped == key:
        return shipped_dir(seed)
    if shipped is not None:
        logger.warning("the shipped organism (world %d) was built from another definition (%s, this code: %s); "
                       "building one locally. `robust-sft organism build --ship` refreshes the shipped one.",
                       seed, shipped, key)
    return build_base_model(seed=seed, progress=progress)


def ship_base_model(seed: int = 0, force: bool = False, progress: bool = True) -> Path:
    """Build (or reuse the cached build of) world `seed`'s base model and copy it into the package."""
    built = build_base_model(seed=seed, force=force, progress=progress)
    target = shipped_dir(seed)
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=target.parent, prefix=f".{target.name}-"))
    try:
        for name in SHIPPED_FILES:
            shutil.copyfile(built / name, tmp / name)  # plain copies: readable as the umask allows
        tmp.chmod(0o755)
        replace_dir(tmp, target, marker="base_eval.json")
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return target
