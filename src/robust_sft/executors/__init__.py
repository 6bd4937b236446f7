"""Run independent calls (an experiment's (variant, seed) units) in worker processes: a local pool or Ray.

A call reads and writes only files (the run directory), so it can run in any process that sees the same
storage: here in a local process pool, or as a Ray task on this machine or on any node of a Ray cluster.
Both back ends take the same `ExecutorConfig` and return the same results, in the order of the calls.
"""

from __future__ import annotations

from typing import Any, Callable

from robust_sft.executors.config import CallFailed, ExecutorConfig
from robust_sft.executors.local import run_in_processes

__all__ = ["CallFailed", "ExecutorConfig", "run_calls"]


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

    return run_in_processes(fn, calls, config.workers, setup=setup, setup_args=tuple(setup_args), progress=progress,
                            desc=desc)


