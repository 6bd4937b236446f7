"""Packages re-export their modules' public names, loaded on first use (PEP 562).

`from robust_sft.training import train` stays short, while importing one light module of a package (e.g.
`robust_sft.scoring.stats`) does not load torch and transformers through its siblings.
"""

from __future__ import annotations

import importlib
from typing import Callable


def lazy_exports(package: str, names: dict[str, str]) -> tuple[Callable, Callable]:
    """`__getattr__` and `__dir__` for `package`, whose public `names` live in the given submodules."""

    def __getattr__(name: str):
        if name not in names:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        return getattr(importlib.import_module(f"{package}.{names[name]}"), name)

    def __dir__() -> list[str]:
        return sorted(names)

    return __getattr__, __dir__
