"""Every shipped config: `demo.yaml`, the paper's grid (`paper/`) and the study (`study/`).

A config argument that is not an existing file is looked up here, so `robust-sft run paper/gemma-2-2b-it_mbpp.yaml`
works from an installed package as well as from a checkout.
"""

from __future__ import annotations

from pathlib import Path

SHIPPED = Path(__file__).parent


def resolve_config(path: str | Path) -> Path:
    """`path` itself when it exists, else the shipped config of that name; an error lists the shipped ones."""
    path = Path(path)
    if path.exists() or path.is_absolute():
        return path
    shipped = SHIPPED / path
    if shipped.is_file():
        return shipped
    names = sorted(str(p.relative_to(SHIPPED)) for p in SHIPPED.rglob("*.yaml"))
    raise FileNotFoundError(f"{path}: no such file, nor a shipped config of that name (shipped: {', '.join(names)})")
