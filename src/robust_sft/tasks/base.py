"""The task interface: what a benchmark or fine-tuning target must provide.

A task is declared apart from the engine that runs it (as in lm-evaluation-harness): it knows how to
load its examples, write the user prompt, give the reference (ground-truth) answer used for training,
extract an answer from a model completion and check it. The engine (generation, evaluation, training)
never contains task-specific logic.

Examples are plain dicts with at least a string "id"; every other key belongs to the task.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import Callable


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
        task cannot say. Lets a report measure whether a token policy masks the answer or the prose."""
        return None

    @abstractmethod
    def extract(self, completion: str) -> str | None:
        """The answer extracted from a model completion, or None when there is none."""

    @abstractmethod
    def check(self, example: dict, completion: str) -> bool:
        """True when `completion` answers `example` correctly."""

    def check_many(self, examples: list[dict], completions: list[str]) -> list[bool]:
        """`check` over many pairs; tasks whose checks are slow (e.g. run code) batch them here."""
        return [self.check(e, c) for e, c in zip(examples, completions)]


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
    # Importing the modules registers their tasks; modules that do not exist yet are skipped.
    import importlib

    for module in ("robust_sft.tasks.paper", "robust_sft.organism.world"):
        try:
            importlib.import_module(module)
        except ModuleNotFoundError as err:
            if err.name != module:
                raise
