"""Run untrusted (model-generated) Python code in a contained child process.

`run_python(code)` runs `code` as `main.py` with a fresh `python -I -S` interpreter (the standard library
only: no site-packages) through a small bootstrap, which contains the run, sets resource limits and
classifies the outcome. `run_many(codes)` runs several
programs in parallel from a thread pool (by default as many at once as the runner may use CPU cores).

Outcome (`SandboxResult.status`):
  - "passed":  the program exited with code 0.
  - "failed":  it ran and reported failure: an uncaught AssertionError or a non-zero `sys.exit`.
  - "timeout": the run used up its time (see "Time" below; everything of it is then killed) or the
               CPU-time limit of one of its processes killed it (SIGXCPU).
  - "error":   it could not run properly: syntax error, any other uncaught exception (NameError,
               MemoryError, ...), death by another signal (e.g. the memory limit's OOM kill), or a
               sandbox failure. A program that itself calls `sys.exit(EXIT_CRASH)` is also "error".

Time. `timeout` bounds the program's own time: wall-clock time since its main process started, minus
the time that process spent waiting for a CPU (from `/proc/PID/schedstat`), so a busy host or many
parallel runs do not turn slow programs into timeouts, while sleeping or blocking still counts. The
sandbox's setup before it (namespaces, mounts: slower when many runs start at once) does not count.
The run's processes together may also use at most `timeout` CPU seconds (summed by its cgroup, where
there is one), each process at most that (RLIMIT_CPU), and a run is killed after
`WALL_FACTOR * timeout + 30` wall-clock seconds whatever the cause. Without `/proc/PID/schedstat` the
own time is the wall-clock time.

What is isolated. Mode "root" (the runner is root with the rights to create namespaces and mounts, and
util-linux `unshare` works; this is the mode of this machine and the one the tests exercise). Each run
gets, and loses when it ends:
  - Network: a new, empty network namespace: no interface is up, not even loopback, so connecting to
    127.0.0.1 or any other address fails, and abstract unix sockets of the host are out of reach.
  - Filesystem: a new mount namespace whose root is a fresh tmpfs holding only read-only, nosuid views
    of the host's /usr, /etc, /bin, /sbin, /lib* and the interpreter's installation prefix, a new /proc
    (of its own pid namespace), /dev with only null, zero, full, random, urandom and the fd/std* links,
and writable
    /tmp, /var/tmp, /dev/shm and the home directory (`SANDBOX_HOME`, the working directory, where
    `main.py` lies). Those four live in that tmpfs: at most `max_tmp_mb` in all, counted in the run's
    memory, gone with the run. Nothing else of the host is visible: no /run, /home, /root, /work, host
    /tmp, so no filesystem unix socket outside the read-only views can be reached (one placed inside
    /usr, /etc or the interpreter's prefix could be, if its permissions allowed).
  - IPC: a new IPC namespace: System V shared memory, semaphores and message queues (and POSIX message
    queues) are private to the run and destroyed with it.
  - Processes: a new pid namespace; the run's init (root, outside the program's reach) starts the
    program, reaps orphans and reports how the program ended; when it ends, the kernel kills every
    process left in the namespace, including ones that escaped with `setsid`. The init also ends the
    run when the runner dies (a pipe whose other end only the runner holds), so a killed runner leaves
    no program behind. The program sees only its own processes.
  - User: the program runs as a dedicated unprivileged uid/gid with no supplementary groups,
    `no_new_privs` and a new, empty session keyring (not the runner's), from a range of
    `UID_POOL_SIZE` uids at `UID_BASE`. A uid is locked (flock, so also across runner processes) for
    the whole run and handed out only when nothing of it remains: its leftover processes (of a runner
    killed mid-run) are killed first, and a uid that still has a System V IPC object in the host's
    namespace, a kernel key (`/proc/key-users`) or a file directly in the host's /tmp, /var/tmp or
    /dev/shm is skipped.
  - Memory and processes of the whole run: a cgroup per run (cgroup v2 where the host delegates the
    memory and pids controllers, else the cgroup v1 memory and pids hierarchies) caps the total memory
    of all its processes and of its tmpfs at `memory_mb` (swap included where swap is accounted;
    exceeding it gets an OOM kill, which takes the program's processes first) and their number at
    `max_processes` (plus the run's init, which is in the cgroup too). Each process also has
    RLIMIT_AS = `memory_mb`, so a single huge allocation fails with MemoryError. Without usable cgroups
    (fallback, `Isolation.cgroup` is None), RLIMIT_NPROC allows at most `FALLBACK_MAX_PROCESSES`
    processes (threads count) of the uid, each with RLIMIT_AS = `memory_mb / FALLBACK_MAX_PROCESSES`, so
    the total address space stays within `memory_mb` (plus at most `max_tmp_mb` of tmpfs).
  - Other resource limits (setrlimit): CPU time, size of any written file (`max_file_mb`), open files,
    no core dumps.
  - Environment: minimal PATH, HOME = working directory, TMPDIR=/tmp, no proxies, no PYTHON* variables
    (`-I` also ignores them and the user site), stdin is /dev/null. stdout/stderr are read
    incrementally and truncated to `max_output_bytes` each, so huge output cannot exhaust the runner.
Not isolated in mode "root": the kernel (a kernel exploit escapes everything; the program cannot
create user namespaces, which the kernel refuses inside a chroot, but other system calls are not
filtered); world-readable
files in the read-only views (e.g. /etc/passwd); the kernel keyrings of its uid (keys stored there
persist, so a uid with keys is never reused, see above); the host's kernel figures and settings in
/proc and the clock (/proc/meminfo, /proc/cpuinfo, /proc/sys, read-only); the cgroup caps when the host
offers no usable cgroups (then the fallback above). Only the cgroup v1 path runs on the machines the
tests run on; the v2 path follows the kernel's documented interface (memory.max, pids.max, cpu.stat,
cgroup.kill).

Fallback modes when the runner is not root: "userns" (`unshare --map-root-user --net`: same network
isolation, but no mount, IPC or pid namespace, no cgroup, the child keeps the runner's uid, so file
permissions do not protect the runner's files, and processes that escape the process group are not
killed) and, when `unshare` cannot be used at all, "audit": a Python audit hook in the child refuses
sockets, subprocesses, exec and ctypes. The audit hook is a guard against accidents only; native code
can bypass it. Only mode "root" is tested here.

The package's modules, one concern each: isolation.py (the modes and what a run sees of the host), limits.py
(resource limits), uids.py (the sandbox uids and their leftovers), cgroups.py (a run's cgroup), bootstrap.py (the
program that contains the run inside the sandbox), execute.py (one program's process, its time, output and
outcome); this module composes them into a run in each mode and runs many.
"""

from __future__ import annotations

import os
import platform
import shutil
import tempfile
import threading
import time
from collections.abc import Iterable
from concurrent.futures import ThreadPoolExecutor
from functools import lru_cache

# bootstrap and cgroups as modules: tasks.base.task_modules follows module references (a checker's version
# covers the sandbox's code); cgroups' backend is also what a test replaces.
from robust_sft.sandbox import bootstrap, cgroups
from robust_sft.sandbox.execute import EXIT_CRASH, STATUSES, WALL_FACTOR, SandboxResult, execute
from robust_sft.sandbox.isolation import (
    KEYCTL_SYSCALL,
    PYTHON_FLAGS,
    SANDBOX_HOME,
    Isolation,
    candidates,
    child_env,
    host_view,
)
from robust_sft.sandbox.limits import FALLBACK_MAX_PROCESSES, Limits, rlimits
from robust_sft.sandbox.uids import UID_BASE, UID_POOL, UID_POOL_SIZE, kill_uid

__all__ = ["EXIT_CRASH", "FALLBACK_MAX_PROCESSES", "SANDBOX_HOME", "STATUSES", "UID_BASE", "UID_POOL_SIZE",
           "WALL_FACTOR", "Isolation", "SandboxResult", "detect_isolation", "run_many", "run_python", "usable_cores"]

_DETECT_LOCK = threading.Lock()


def run_python(
    code: str,
    *,
    timeout: float = 10.0,
    memory_mb: int = 1024,
    max_output_bytes: int = 64 * 1024,
    max_file_mb: int = 16,
    max_processes: int = 32,
    max_open_files: int = 128,
    max_tmp_mb: int = 64,
) -> SandboxResult:
    """Run `code` as a Python program in the sandbox and report how it ended (see module doc).

    `memory_mb` and `max_processes` bound the whole run (all its processes), `max_tmp_mb` its
    /tmp, /var/tmp, /dev/shm and home together, `timeout` its own time (module doc, "Time").
    """
    start = time.monotonic()
    try:
        isolation = detect_isolation()
    except OSError as err:
        return SandboxResult("error", None, "", f"sandbox unavailable: {err}", 0.0)
    limits = Limits(timeout, memory_mb, max_file_mb, max_processes, max_open_files, max_tmp_mb)
    return _run(isolation, code, limits, max_output_bytes, start)


def run_many(codes: Iterable[str], *, workers: int | None = None, **kwargs) -> list[SandboxResult]:
    """`run_python` over many programs in parallel; results in input order.

    `workers` defaults to the number of CPU cores this process may use, so that runs do not queue
    for a CPU (their time limit does not count that wait anyway, but the batch would not finish sooner).
    """
    codes = list(codes)
    workers = workers or usable_cores()
    with ThreadPoolExecutor(max_workers=max(1, workers)) as pool:
        return list(pool.map(lambda code: run_python(code, **kwargs), codes))


def usable_cores() -> int:
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except (AttributeError, OSError):
        return os.cpu_count() or 1


def detect_isolation() -> Isolation:
    """The strongest isolation mode that works here, with an interpreter the child may execute."""
    with _DETECT_LOCK:  # one probe sequence even when many threads start at once
        return _detect_isolation()


@lru_cache(maxsize=1)
def _detect_isolation() -> Isolation:
    backend = cgroups.cgroup_backend()
    for isolation in candidates(backend.version if backend else None):
        if _probe(isolation):
            return isolation
    raise OSError("no Python interpreter can be started for the sandbox")


def _probe(isolation: Isolation) -> bool:
    limits = Limits(30.0, 256, 1, 4, 64, 1)
    return _run(isolation, "pass\n", limits, 4096, time.monotonic()).status == "passed"


# ---- one run in each mode --------------------------------------------------------------------------


def _run(isolation: Isolation, code: str, limits: Limits, max_output_bytes: int,
         start: float) -> SandboxResult:
    if isolation.mode != "root":
        return _run_unprivileged(isolation, code, limits, max_output_bytes, start)
    try:
        lease = UID_POOL.acquire()
    except OSError as err:
        return SandboxResult("error", None, "", f"sandbox unavailable: {err}", time.monotonic() - start)
    cgroup = None
    try:
        backend = cgroups.cgroup_backend() if isolation.cgroup else None
        if backend is not None:
            cgroup = backend.create(f"run-{lease.uid}", limits.memory_mb << 20, limits.max_processes + 1)
        config = {
            "contain": True, "audit": False, "exit_crash": EXIT_CRASH, "uid": lease.uid,
            "limits": rlimits(limits, lease.uid, cgroup is not None),
            "cgroup_procs": cgroup.procs_files if cgroup else [], "home": SANDBOX_HOME,
            "view": host_view(isolation.interpreter),
            "tmpfs": (limits.max_tmp_mb << 10, max(1024, limits.max_tmp_mb * 64)),
            "keyctl": KEYCTL_SYSCALL.get(platform.machine()),
        }
        argv = [isolation.unshare, "--net", "--ipc", "--mount", "--pid", "--fork", "--kill-child",
                "--", isolation.interpreter, *PYTHON_FLAGS, "-c", bootstrap.BOOTSTRAP]

        def kill_all() -> None:  # the pid namespace dies with its init; this catches the unexpected
            if cgroup is not None:
                cgroup.kill()

        env = {**child_env(SANDBOX_HOME), "TMPDIR": "/tmp"}
        return execute(argv, config, code, "/", env, limits, cgroup, kill_all, max_output_bytes, start)
    except OSError as err:
        return SandboxResult("error", None, "", f"sandbox failed: {err}", time.monotonic() - start)
    finally:
        kill_uid(lease.uid)
        if cgroup is not None:
            cgroup.remove()
        UID_POOL.release(lease)


def _run_unprivileged(isolation: Isolation, code: str, limits: Limits, max_output_bytes: int,
                      start: float) -> SandboxResult:
    workdir = tempfile.mkdtemp(prefix="robust-sft-sandbox-")
    try:
        path = os.path.join(workdir, "main.py")
        with open(path, "w", encoding="utf-8") as f:
            f.write(code)
        config = {"contain": False, "audit": isolation.mode == "audit", "exit_crash": EXIT_CRASH,
                  "limits": rlimits(limits, None, False)}
        python = [isolation.interpreter, *PYTHON_FLAGS, "-c", bootstrap.BOOTSTRAP]
        argv = [isolation.unshare, "--map-root-user", "--net", "--", *python] \
            if isolation.mode == "userns" else python
        return execute(argv, config, code, workdir, child_env(workdir), limits, None, lambda: None,
                       max_output_bytes, start)
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
