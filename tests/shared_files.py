"""Real tokenizer files and the paper authors' data, kept beside the repository (`../shared`), not in it.

`ROBUST_SFT_SHARED` overrides the location. Tests that need these files skip, saying why, when they are absent.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

SHARED = Path(os.environ.get("ROBUST_SFT_SHARED") or Path(__file__).resolve().parents[1].parent / "shared")
TOKENIZERS = SHARED / "tokenizers"
PAPER_DATA = SHARED / "paper-data"


def shared_path(relative: str) -> Path:
    """`SHARED / relative`, or skip the test naming what is missing."""
    path = SHARED / relative
    if not path.exists():
        pytest.skip(f"{path} is absent (real tokenizers and paper data live in ../shared; set ROBUST_SFT_SHARED)")
    return path


def real_tokenizer(name: str):
    """A real tokenizer (`llama3` or `qwen3`) loaded as a user would, with AutoTokenizer."""
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(shared_path(f"tokenizers/{name}"))
