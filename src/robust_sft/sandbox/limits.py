"""A run's resource limits, and the per-process limits (setrlimit) the bootstrap sets from them: with a cgroup
the cgroup caps the run's total memory and processes; without one, processes x address space per process
bound it."""

from __future__ import annotations

import math
import os
from dataclasses import dataclass

from robust_sft.sandbox.uids import count_processes

#: without cgroups, the most processes (threads included) of a run; each gets memory_mb / this much
FALLBACK_MAX_PROCESSES = 4


@dataclass(frozen=True)
class Limits:
    timeout: float
    memory_mb: int
    max_file_mb: int
    max_processes: int
    max_open_files: int
    max_tmp_mb: int


def rlimits(limits: Limits, uid: int | None, cgroup: bool) -> dict[str, tuple[int, int]]:
    cpu = max(1, math.ceil(limits.timeout))
    memory, nproc = limits.memory_mb << 20, limits.max_processes
    if uid is None:
        # Without a private uid, RLIMIT_NPROC counts all the runner's processes, so add the current ones.
        nproc = count_processes(os.getuid()) + limits.max_processes
    elif not cgroup:  # fallback: bound the total as processes x address space per process
        nproc = min(nproc, FALLBACK_MAX_PROCESSES)
        memory //= nproc
    return {
        "RLIMIT_CPU": (cpu, cpu + 1),  # SIGXCPU at the soft limit, SIGKILL at the hard one
        "RLIMIT_AS": (memory, memory),
        "RLIMIT_FSIZE": (limits.max_file_mb << 20, limits.max_file_mb << 20),
        "RLIMIT_NPROC": (nproc, nproc),
        "RLIMIT_NOFILE": (limits.max_open_files, limits.max_open_files),
        "RLIMIT_CORE": (0, 0),
    }
