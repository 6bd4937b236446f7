"""Plug-ins: modules that register tasks and named models when imported, found through package metadata.

A plug-in is any importable module named under the entry-point group `robust_sft.plugins` of an installed
distribution (robust-sft declares its own two, the paper's tasks and the model organism, in pyproject.toml).
The engine loads them all and then looks tasks and models up by name: it never names a plug-in itself.
"""

from __future__ import annotations

import importlib
from importlib.metadata import entry_points

GROUP = "robust_sft.plugins"
_loaded = False


def load_plugins() -> None:
    """Import every registered plug-in module once; a plug-in that fails to import is an error naming it."""
    global _loaded
    if _loaded:
        return
    found = entry_points(group=GROUP)
    if not found:
        raise RuntimeError(f"no {GROUP} entry points found: robust-sft is not installed in this environment "
                           "(run `pip install -e .` in the checkout, or scripts/bootstrap.sh)")
    for point in sorted(found, key=lambda p: p.name):
        try:
            importlib.import_module(point.value)
        except ImportError as err:
            raise ImportError(f"plug-in {point.name!r} ({point.value}) cannot be imported: {err}") from err
    _loaded = True
