"""The Ray back end: each call is a Ray task, on this machine or on any node of a Ray cluster.

Ray is an optional extra (`pip install 'robust-sft[ray]'`); only this module imports it. Every node must have
robust-sft and its dependencies installed (the same versions) and must see the run directory at the same path.
"""

from __future__ import annotations

import logging
import os
import sys
from typing import Any, Callable

import ray

from robust_sft.executors.config import CallFailed, ExecutorConfig

logger = logging.getLogger(__name__)

# The setups that already ran in this worker process: Ray reuses a worker process for many tasks (CPU tasks;
# a GPU task gets a fresh process), and one process may serve runs with different setups.
_setups_done: set[tuple] = set()


def run_tasks(fn: Callable, calls: list[tuple], config: ExecutorConfig, *, setup: Callable | None,
              setup_args: tuple, progress: bool, desc: str) -> list[Any]:
    """See `robust_sft.executors.run_calls`. Uses this process's Ray connection if it has one, else makes one."""
    connect = not ray.is_initialized()
    if not connect and config.ray_address is not None:
        logger.info("this process is already connected to Ray: ray_address %r is not used", config.ray_address)
    if connect:
        if config.ray_address is None:
            # "local" always starts a new instance; None would join one found through RAY_ADDRESS or `ray start`.
            # Its workers get this process's sys.path, as the local pool's do: modules the caller made
            # importable (task modules, tests) import there too.
            ray.init(address="local", num_cpus=len(os.sched_getaffinity(0)), include_dashboard=False,
                     runtime_env={"env_vars": {"PYTHONPATH": os.pathsep.join(p for p in sys.path if p)}})
        else:
            ray.init(address=config.ray_address)
    try:
        if connect and config.ray_address is None:
            _check_fits(config)
        return _run(fn, calls, config, setup, setup_args, progress, desc)
    finally:
        if connect:
            ray.shutdown()  # stops the instance started above; only disconnects from a joined cluster


def _run(fn, calls, config, setup, setup_args, progress, desc) -> list[Any]:
    from tqdm.auto import tqdm

    # max_retries counts deaths of the worker process or node; a call that raises is not retried.
    task = ray.remote(num_cpus=config.cpus_per_unit, num_gpus=config.gpus_per_unit,
                      max_retries=config.max_retries, retry_exceptions=False)(_run_call)
    results: list[Any] = [None] * len(calls)
    pending: dict[Any, int] = {}  # object ref -> index of its call
    submitted = 0

    def submit() -> None:
        nonlocal submitted
        while submitted < len(calls) and (config.workers == 0 or len(pending) < config.workers):
            ref = task.options(name=f"{desc}[{submitted}]").remote(fn, setup, setup_args, calls[submitted])
            pending[ref] = submitted
            submitted += 1

    with tqdm(total=len(calls), desc=desc, disable=not progress) as bar:
        try:
            submit()
            while pending:
                done, _ = ray.wait(list(pending), num_returns=1)
                for ref in done:
                    i = pending.pop(ref)
                    try:
                        results[i] = ray.get(ref)
                    except Exception as err:
                        # A RayTaskError carries the call's own exception as `cause`; name that one.
                        raise CallFailed(desc, fn, i, calls[i], getattr(err, "cause", None) or err) from err
                    bar.update()
                submit()
        except BaseException:
            # Queued calls never start; running ones get a KeyboardInterrupt (their finished stages stay on disk).
            for ref in pending:
                ray.cancel(ref)
            raise
    return results


def _run_call(fn: Callable, setup: Callable | None, setup_args: tuple, call: tuple) -> Any:
    """The Ray task: this worker process's setup (the first time it sees it), then the call."""
    if setup is not None:
        key = (setup.__module__, setup.__qualname__, repr(setup_args))
        if key not in _setups_done:
            setup(*setup_args)
            _setups_done.add(key)
    return fn(*call)


def _check_fits(config: ExecutorConfig) -> None:
    """A task that asks for more than the started instance has would wait forever: say so instead."""
    have = ray.cluster_resources()
    for name, want in (("CPU", config.cpus_per_unit), ("GPU", config.gpus_per_unit)):
        if want > have.get(name, 0):
            raise ValueError(f"each call asks for {want:g} {name}s but this machine's Ray instance has "
                             f"{have.get(name, 0):g}: lower {name.lower()}s_per_unit or join a cluster (ray_address)")
