"""Where derived models are cached between runs: $ROBUST_SFT_CACHE, else ~/.cache/robust-sft.

The organism's builds sit under the same root (organism/base_model.py spells the same rule out itself: that
file's text is part of its models' cache key).
"""

from __future__ import annotations

import os
from pathlib import Path


def cache_root() -> Path:
    return Path(os.environ.get("ROBUST_SFT_CACHE", Path.home() / ".cache" / "robust-sft"))
