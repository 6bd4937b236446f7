"""Run independent calls (an experiment's (variant, seed) units) in worker processes: a local pool or Ray.

A call reads and writes only files (the run directory), so it can run in any process that sees the same
storage: here in a local process pool, or as a Ray task on this machine or on any node of a Ray cluster.
Both back ends take the same `ExecutorConfig` and return the same results, in the order of the calls.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable, Literal

EXECUTORS = ("local", "ray")


@dataclass
class ExecutorConfig:
    """Where and how many calls run at once."""

    executor: Literal["local", "ray"] = field(default="local", metadata={
        "help": "local: a process pool on this machine; ray: Ray tasks on a local or existing Ray cluster "
                "(pip install 'robust-sft[ray]')."})
    workers: int = field(default=1, metadata={
        "help": "local: processes (calls at once). ray: at most this many calls submitted at once; 0 submits "
                "them all and lets the cluster's free CPUs/GPUs decide how many run."})
    ray_address: str | None = field(default=None, metadata={
        "help": "ray: unset starts a Ray instance on this machine for the run (and stops it after); 'auto' joins "
                "the cluster started here with `ray start`; 'HOST:6379' or 'ray://HOST:10001' joins that one."})
    cpus_per_unit: float = field(default=1, metadata={
        "help": "ray: CPUs Ray reserves for each call (fractions allowed)."})
    gpus_per_unit: float = field(default=0, metadata={
        "help": "ray: GPUs Ray reserves for each call (0.5 puts two calls on one GPU)."})
    max_retries: int = field(default=2, metadata={
        "help": "ray: reruns of a call whose worker process or node died (not of a call that raised an "
                "error); calls resume from the run directory."})

    def __post_init__(self) -> None:
        from robust_sft.core.config_types import coerce_fields, is_finite_number, require

        coerce_fields(self)  # YAML's `0.5` may arrive as a string; `workers: '2'` as text
        require(self.executor in EXECUTORS,
                f"executor must be one of {', '.join(EXECUTORS)}, not {self.executor!r}")
        if self.executor == "local":
            require(self.workers >= 1, f"workers must be at least 1 with the local executor, not {self.workers}"
                    " (workers: 0, no limit, is for executor: ray)")
            require(self.ray_address is None,
                    f"ray_address {self.ray_address!r} is set but executor is local: set executor: ray to use it")
        else:
            require(self.workers >= 0, f"workers must be 0 (no limit) or more, not {self.workers}")
            require(self.ray_address is None or self.ray_address.strip() != "",
                    "ray_address must be unset (start Ray here), 'auto' or an address, not empty")
        require(is_finite_number(self.cpus_per_unit) and self.cpus_per_unit > 0,
                f"cpus_per_unit must be a positive number, not {self.cpus_per_unit}")
        require(is_finite_number(self.gpus_per_unit) and self.gpus_per_unit >= 0,
                f"gpus_per_unit must be 0 or more, not {self.gpus_per_unit}")
        # Never infinite (Ray's -1): a call that keeps killing its worker (out of memory) must end the run.
        require(self.max_retries >= 0, f"max_retries must be 0 or more, not {self.max_retries}")

    def describe(self) -> str:
        """Where calls run, in words (a dry run's plan says it)."""
        if self.executor == "local":
            return "one at a time, in this process" if self.workers == 1 else f"{self.workers} at a time, in processes"
        where = {None: "a Ray instance started here", "auto": "the Ray cluster this machine is in (auto)"}.get(
            self.ray_address, f"the Ray cluster at {self.ray_address}")
        at_once = f"up to {self.workers} at once" if self.workers else "as many at once as free resources allow"
        return (f"as Ray tasks on {where}, {at_once}, each reserving {self.cpus_per_unit:g} CPUs and "
                f"{self.gpus_per_unit:g} GPUs, rerun up to {self.max_retries} times if its worker dies")


class CallFailed(RuntimeError):
    """A call raised (or its worker died past its retries); `index` and `call` say which. The cause is chained."""

    def __init__(self, desc: str, fn: Callable, index: int, call: tuple, error: BaseException) -> None:
        self.index, self.call = index, call
        name = getattr(fn, "__qualname__", repr(fn))
        super().__init__(f"{desc}: call {index + 1} {name}{_short(call)} failed: {type(error).__name__}: "
                         f"{error}")


def run_calls(fn: Callable, calls: list[tuple], config: ExecutorConfig, *, setup: Callable | None = None,
              setup_args: tuple = (), progress: bool = True, desc: str = "units") -> list[Any]:
    """`[fn(*call) for call in calls]`, run in worker processes as `config` says; results in the order of `calls`.

    `fn` and `setup` must be module-level functions (they are pickled by name); `setup(*setup_args)` runs once
    in each worker process before its first call. The first call to fail raises `CallFailed` naming it; calls
    that have not started are cancelled (local: running ones finish; ray: running ones are interrupted, as a
    Ray job's tasks do not outlive its driver anyway).
    """
    calls = [tuple(call) for call in calls]
    if not calls:
        return []
    if config.executor == "ray":
        from robust_sft.executors.ray import run_tasks

        return run_tasks(fn, calls, config, setup=setup, setup_args=tuple(setup_args), progress=progress, desc=desc)
    from robust_sft.executors.local import run_in_processes

    return run_in_processes(fn, calls, config.workers, setup=setup, setup_args=tuple(setup_args), progress=progress,
                            desc=desc)


def _short(call: tuple, limit: int = 60) -> str:
    """The call's arguments, each cut to `limit` characters: a long config must not hide the variant and seed."""
    parts = [text if len(text) <= limit else text[:limit] + "..." for text in map(repr, call)]
    return "(" + ", ".join(parts) + ")"
