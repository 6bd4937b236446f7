"""The local back end: calls run in worker processes on this machine (spawned, each with its own threads)."""

from __future__ import annotations

import ctypes
import logging
import multiprocessing
import signal
from concurrent.futures import ProcessPoolExecutor, as_completed
from typing import Callable

from tqdm.auto import tqdm

logger = logging.getLogger(__name__)


def run_in_processes(fn: Callable, calls: list[tuple], workers: int, *, setup: Callable | None = None,
                     setup_args: tuple = (), progress: bool = True, desc: str = "units") -> list:
    """`fn(*call)` for every call in `workers` processes, after `setup(*setup_args)` in each; results in call order.

    spawn, not fork: a forked copy of a process that has used torch's thread pools can deadlock. The first
    failure cancels what has not started and is raised.
    """
    with ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context("spawn"), initializer=_init_worker,
                             initargs=(setup, setup_args)) as pool:
        futures = {pool.submit(fn, *call): i for i, call in enumerate(calls)}
        results = [None] * len(calls)
        try:
            for future in tqdm(as_completed(futures), total=len(futures), desc=desc, disable=not progress):
                results[futures[future]] = future.result()
                logger.info("[%s] %d of %d done", desc, futures[future] + 1, len(calls))
        except BaseException:
            pool.shutdown(cancel_futures=True)
            raise
    return results


def _init_worker(setup: Callable | None, setup_args: tuple) -> None:
    # Die with the parent (Linux): a killed run must not leave workers writing into its directory.
    ctypes.CDLL(None).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
    if setup is not None:
        setup(*setup_args)
