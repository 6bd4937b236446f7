"""The local back end: calls run in worker processes on this machine (spawned, each with its own threads)."""

from __future__ import annotations

import logging
import multiprocessing
import sys
from concurrent.futures import ProcessPoolExecutor, as_completed
from typing import Any, Callable

from tqdm.auto import tqdm

from robust_sft.executors.config import CallFailed

logger = logging.getLogger(__name__)


def run_in_processes(fn: Callable, calls: list[tuple], workers: int, *, setup: Callable | None = None,
                     setup_args: tuple = (), progress: bool = True, desc: str = "units") -> list[Any]:
    """`fn(*call)` for every call in `workers` processes, after `setup(*setup_args)` in each; results in call order.

    spawn, not fork: a forked copy of a process that has used torch's thread pools can deadlock. The first
    failure raises `CallFailed` naming the call; calls not started are cancelled, running ones finish.
    """
    results: list[Any] = [None] * len(calls)
    with ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context("spawn"), initializer=_init_worker,
                             initargs=(setup, setup_args)) as pool:
        futures = {pool.submit(fn, *call): i for i, call in enumerate(calls)}
        try:
            for future in tqdm(as_completed(futures), total=len(futures), desc=desc, disable=not progress):
                i = futures[future]
                try:
                    results[i] = future.result()
                except Exception as err:
                    raise CallFailed(desc, fn, i, calls[i], err) from err
                logger.info("[%s] %d of %d done", desc, i + 1, len(calls))
        except BaseException:
            pool.shutdown(cancel_futures=True)
            raise
    return results


def _init_worker(setup: Callable | None, setup_args: tuple) -> None:
    if sys.platform.startswith("linux"):
        import ctypes
        import signal

        # Die with the parent: a killed run must not leave workers writing into its directory.
        ctypes.CDLL(None).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
    if setup is not None:
        setup(*setup_args)
