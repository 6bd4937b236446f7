"""The package's shape: dependencies run one way along the pipeline, no import cycles, lazy imports only where
start-up cost is the reason, and one place that loads models."""

from __future__ import annotations

import ast
import sys
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parent.parent / "src" / "robust_sft"

# Lower layers never import higher ones (the pipeline's order; plug-ins sit above the engine parts they use).
LAYERS = {
    "core": 0, "configs": 0,
    "models": 1, "sandbox": 1,
    "data": 2,
    "tasks": 3,
    "scoring": 4,
    "masking": 5,
    "training": 6,
    "evaluation": 7,
    "report": 8, "executors": 8,
    "experiment": 9, "analysis": 9,
    "organism": 10,  # a plug-in: it uses the engine; the engine reaches it only through registries
    "study": 11,
    "cli": 12,
    # Self-Output / Rephrase data live with the data they make, but they need a task's verifier and the scorer.
    "data.synthesis": 4.5,
}
# Importing these costs seconds (or a GPU runtime): a function-level import of a module that pulls one in is
# the one accepted reason for an import not at the top.
HEAVY = {"torch", "transformers", "peft", "datasets", "accelerate", "vllm", "matplotlib", "lm_eval", "ray",
         "tokenizers", "safetensors", "trl"}


def modules() -> dict[str, ast.Module]:
    found = {}
    for path in sorted(SRC.rglob("*.py")):
        parts = path.relative_to(SRC.parent).with_suffix("").parts
        name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
        found[name] = ast.parse(path.read_text(), filename=str(path))
    return found


def imported(node: ast.AST, module: str, is_package: bool, known: dict | None = None) -> list[str]:
    """The modules an import statement loads: `from pkg import sub` loads pkg.sub; `from pkg import name`, pkg."""
    if isinstance(node, ast.Import):
        return [a.name for a in node.names]
    if isinstance(node, ast.ImportFrom):
        if node.level:
            base = module.split(".") if is_package else module.split(".")[:-1]
            base = base[: len(base) - node.level + 1]
            name = ".".join(base + ([node.module] if node.module else []))
        else:
            name = node.module or ""
        known = modules() if known is None else known
        return sorted({f"{name}.{a.name}" if f"{name}.{a.name}" in known else name for a in node.names})
    return []


def graph(top_only: bool) -> dict[str, set[str]]:
    mods = modules()
    edges = {}
    for name, tree in mods.items():
        is_package = (SRC.parent / name.replace(".", "/") / "__init__.py").exists()
        nodes = tree.body if top_only else ast.walk(tree)
        edges[name] = {target for node in nodes for target in imported(node, name, is_package, mods)
                       if target in mods and target != name}
    return edges


def layer(module: str) -> float:
    """The layer of the longest LAYERS key that names the module's package (or the module itself)."""
    parts = module.split(".")[1:]
    for n in range(len(parts), 0, -1):
        if ".".join(parts[:n]) in LAYERS:
            return LAYERS[".".join(parts[:n])]
    return -1


def test_every_package_has_a_layer():
    packages = {name.split(".")[1] for name in modules() if "." in name}
    assert packages <= set(LAYERS), f"add these to LAYERS: {sorted(packages - set(LAYERS))}"


def test_dependencies_run_one_way():
    wrong = [f"{a} -> {b}" for a, targets in graph(top_only=False).items() for b in sorted(targets)
             if layer(b) > layer(a)]
    assert not wrong, "a lower layer imports a higher one:\n" + "\n".join(wrong)


def test_no_import_cycles():
    edges = graph(top_only=False)
    state, cycles = {}, []

    def visit(node, stack):
        state[node] = "open"
        for nxt in sorted(edges.get(node, ())):
            if state.get(nxt) == "open":
                cycles.append(" -> ".join(stack[stack.index(nxt):] + [nxt]))
            elif nxt not in state:
                visit(nxt, stack + [nxt])
        state[node] = "done"

    sys.setrecursionlimit(10_000)
    for node in sorted(edges):
        if node not in state:
            visit(node, [node])
    assert not cycles, "import cycles:\n" + "\n".join(cycles)


def heavy_at_import(edges_top: dict[str, set[str]], mods: dict[str, ast.Module]) -> set[str]:
    """Modules whose import (top-level, transitively) loads a heavy library."""
    direct = {name for name, tree in mods.items()
              if any(t.split(".")[0] in HEAVY for node in tree.body for t in imported(node, name, False, mods))}
    heavy, grew = set(direct), True
    while grew:
        grew = False
        for name, targets in edges_top.items():
            if name not in heavy and targets & heavy:
                heavy.add(name)
                grew = True
    return heavy


def test_internal_imports_sit_at_module_top_unless_they_load_a_heavy_library():
    mods = modules()
    heavy = heavy_at_import(graph(top_only=True), mods)
    lazy = []
    for name, tree in mods.items():
        is_package = (SRC.parent / name.replace(".", "/") / "__init__.py").exists()
        top = set(tree.body)
        for node in ast.walk(tree):
            if isinstance(node, (ast.Import, ast.ImportFrom)) and node not in top:
                targets = [t for t in imported(node, name, is_package, mods) if t in mods]
                if targets and not any(t in heavy for t in targets):
                    lazy.append(f"{name}:{node.lineno} imports {targets[0]} inside a function")
    assert not lazy, "move to the module top (nothing heavy is loaded):\n" + "\n".join(lazy)


def test_core_imports_nothing_else_of_the_package():
    outside = [f"{a} -> {b}" for a, targets in graph(top_only=False).items() if a.startswith("robust_sft.core")
               for b in targets if not b.startswith("robust_sft.core")]
    assert not outside, outside


def test_only_models_loads_a_model():
    callers = []
    for name, tree in modules().items():
        if name.startswith("robust_sft.models"):
            continue
        callers += [f"{name}:{n.lineno}" for n in ast.walk(tree)
                    if isinstance(n, ast.Attribute) and n.attr == "from_pretrained"]
    assert not callers, f"from_pretrained outside robust_sft.models: {callers}"


@pytest.mark.parametrize("check", [test_dependencies_run_one_way, test_no_import_cycles])
def test_the_checks_can_fail(check, monkeypatch):
    """A planted violation (core importing the experiment runner) is caught."""
    real = modules()
    planted = dict(real)
    planted["robust_sft.core.artifacts"] = ast.parse("from robust_sft.experiment.runner import Experiment\n"
                                                     + ast.unparse(real["robust_sft.core.artifacts"]))
    monkeypatch.setitem(globals(), "modules", lambda: planted)
    with pytest.raises(AssertionError):
        check()


def test_the_readmes_python_names_import():
    """Every `from robust_sft... import ...` line and `robust_sft.x.y` name in the README resolves (public API)."""
    import importlib
    import re

    readme = (SRC.parent.parent / "README.md").read_text()
    for line in sorted(set(re.findall(r"^\s*(from robust_sft[\w.]* import [\w, ]+)$", readme, re.M))):
        exec(line.strip(), {})
    missing = []
    for name in sorted(set(re.findall(r"`(robust_sft(?:\.\w+)+)", readme))):
        if name.endswith((".json", ".md")):
            continue  # a file name, not a Python name
        parts = name.split(".")
        found = next(i for i in range(len(parts), 0, -1) if _is_module(".".join(parts[:i])))
        obj = importlib.import_module(".".join(parts[:found]))
        for attribute in parts[found:]:
            if not hasattr(obj, attribute):
                missing.append(name)
                break
            obj = getattr(obj, attribute)
    assert not missing, missing


def _is_module(name: str) -> bool:
    import importlib

    try:
        importlib.import_module(name)
    except ImportError:
        return False
    return True
