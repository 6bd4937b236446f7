"""The task interface: what a benchmark or fine-tuning target must provide.

A task is declared apart from the engine that runs it (as in lm-evaluation-harness): it knows how to
load its examples, write the user prompt, give the reference (ground-truth) answer used for training,
extract an answer from a model completion and check it. The engine (generation, evaluation, training)
never contains task-specific logic.

Examples are plain dicts with at least a string "id"; every other key belongs to the task.
"""

from __future__ import annotations

import hashlib
import sys
from abc import ABC, abstractmethod
from pathlib import Path
from typing import Callable

from robust_sft.core.plugins import load_plugins


class TaskError(ValueError):
    """Bad task name, split, or task data; the message names the file/example at fault."""


class Task(ABC):
    """One task: prompts, references, answer extraction and an exact checker."""

    #: registry name, e.g. "gsm8k" or "organism/sort"
    name: str = ""
    #: splits this task can load
    splits: tuple[str, ...] = ("train", "validation", "test")
    #: generation budget for evaluation
    max_new_tokens: int = 512
    #: strings after which evaluation may stop generating (kept in the text): where the checker can have all it
    #: reads. A completion that ends at one but is not `complete` is generated again without them.
    stop_strings: tuple[str, ...] = ()
    #: bump when a task's behaviour changes outside its code (e.g. its data); code changes are seen by `task_version`
    version: str = "1"

    @abstractmethod
    def load(self, split: str, *, limit: int | None = None, path: str | None = None) -> list[dict]:
        """Examples of `split` (each a dict with a unique string "id"), at most `limit` of them.

        `path` points at local files/directories when the Hub is not reachable.
        """

    @abstractmethod
    def prompt(self, example: dict) -> str:
        """The user message shown to the model (zero-shot; the chat template is applied by the engine)."""

    @abstractmethod
    def reference(self, example: dict) -> str:
        """The ground-truth assistant answer used as a fine-tuning target."""

    def oracle_reference(self, example: dict) -> str | None:
        """A correct answer in the base model's own style, or None when the task cannot write one.

        Only a task that knows the model's style (the organism's) can: it feeds the `oracle` positive
        control, which measures what a fine-tune that forgets nothing could gain on the target.
        """
        return None

    def answer_span(self, completion: str) -> tuple[int, int] | None:
        """(start, end) characters of `completion` that the checker reads as the answer, or None when the
        task cannot say. Lets a report measure whether a token policy masks the answer or the prose, and the
        answer-aware policy keep those tokens in the loss."""
        return None

    def hint(self, example: dict) -> str | None:
        """A content-only hint for `example` (its final answer, its expected test outputs: what a checker knows,
        never the reference's wording), or None when the task has none. The hindsight policy scores each answer
        again with this hint in the prompt, and keeps the surprising tokens the hint makes predictable."""
        return None

    def complete(self, completion: str) -> bool:
        """Whether a completion cut right after a stop string holds all the checker reads, so that generating
        on could not change its verdict. Only asked of completions that end at a stop string."""
        return True

    @abstractmethod
    def extract(self, completion: str) -> str | None:
        """The answer extracted from a model completion, or None when there is none."""

    @abstractmethod
    def check(self, example: dict, completion: str) -> bool:
        """True when `completion` answers `example` correctly."""

    def check_many(self, examples: list[dict], completions: list[str]) -> list[bool]:
        """`check` over many pairs; tasks whose checks are slow (e.g. run code) batch them here."""
        return [self.check(e, c) for e, c in zip(examples, completions)]


# Packages whose modules hold the built-in task code: prompts, references, extraction, checkers and the sandbox
# that runs generated programs.
_TASK_PACKAGES = ("robust_sft.tasks", "robust_sft.organism", "robust_sft.sandbox")


def has_answer_span(task: Task) -> bool:
    """Whether a task says where its checker reads (overrides `Task.answer_span`)."""
    return type(task).answer_span is not Task.answer_span


def task_version(task: Task) -> str:
    """A hash of what decides a task's prompts, references and checks, for cache keys.

    It covers the task's `version`, its settings (instance attributes such as a seed) and the source of
    every module its class is built from, together with the task modules those use (e.g. a checker's
    sandbox or an equivalence module), so fixing a checker invalidates results cached with the old one.
    """
    h = hashlib.sha256(f"{type(task).__qualname__}:{task.version}:{sorted(map(repr, vars(task).items()))}".encode())
    for name in sorted(task_modules(task)):
        source = getattr(sys.modules[name], "__file__", None)
        h.update(name.encode() + (Path(source).read_bytes() if source else b""))
    return h.hexdigest()[:16]


def task_modules(task: Task) -> set[str]:
    """The modules `task_version` hashes: those its class is built from and the task-code modules they use, in
    turn (a checker's sandbox is a package of modules that use one another)."""
    modules = {klass.__module__ for klass in type(task).__mro__} - {"builtins", "abc"}
    own_package = type(task).__module__.split(".")[0]
    task_code = (*_TASK_PACKAGES, own_package + ".") if own_package != "robust_sft" else _TASK_PACKAGES
    pending = list(modules)
    while pending:
        for value in vars(sys.modules[pending.pop()]).values():
            used = getattr(value, "__name__", "") if isinstance(value, type(sys)) else getattr(value, "__module__", "")
            if isinstance(used, str) and (used.startswith(task_code) or used == own_package) and used in sys.modules \
                    and used not in modules:
                modules.add(used)
                pending.append(used)
    return modules


_REGISTRY: dict[str, Callable[..., Task]] = {}


def register_task(name: str) -> Callable[[Callable[..., Task]], Callable[..., Task]]:
    """Class/factory decorator: make a task available to `get_task(name)`."""

    def decorate(factory: Callable[..., Task]) -> Callable[..., Task]:
        if name in _REGISTRY and _REGISTRY[name] is not factory:
            raise TaskError(f"task {name!r} is registered twice")
        _REGISTRY[name] = factory
        return factory

    return decorate


def get_task(name: str, **kwargs) -> Task:
    """Instantiate the task registered under `name`."""
    _import_builtin_tasks()
    if name not in _REGISTRY:
        known = ", ".join(sorted(_REGISTRY)) or "(none)"
        raise TaskError(f"unknown task {name!r}; known tasks: {known}")
    return _REGISTRY[name](**kwargs)


def list_tasks() -> list[str]:
    _import_builtin_tasks()
    return sorted(_REGISTRY)


def _import_builtin_tasks() -> None:
    # Importing the plug-ins registers their tasks (the paper's and the organism's ship as plug-ins too).
    load_plugins()
