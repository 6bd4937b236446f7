"""Run untrusted (model-generated) Python code in a contained child process.

`run_python(code)` writes the code to `main.py` in a fresh temporary directory and runs it with a
fresh `python -I` interpreter through a small bootstrap, which sets resource limits and classifies the
outcome. `run_many(codes)` runs several programs in parallel from a thread pool.

Outcome (`SandboxResult.status`):
  - "passed":  the program exited with code 0.
  - "failed":  it ran and reported failure: an uncaught AssertionError or a non-zero `sys.exit`.
  - "timeout": the wall-clock timeout was reached (the whole process group is killed) or the CPU-time
               limit killed it (SIGXCPU).
  - "error":   it could not run properly: syntax error, any other uncaught exception (NameError,
               MemoryError, ...), death by another signal, or a sandbox failure. A program that itself
               calls `sys.exit(EXIT_CRASH)` is also reported as "error".

What is isolated. Mode "root" (the runner is root and util-linux `unshare` works; this is the mode of
this machine and the one the tests exercise):
  - Network: the child starts in a new, empty network namespace (`unshare --net`): no interface is up,
    not even loopback, so connecting to 127.0.0.1 or any other address fails.
  - User: the child runs as a dedicated unprivileged uid/gid (one per concurrent run, from
    `UID_BASE`, with no supplementary groups). Ordinary file permissions therefore protect files it
    does not own: it cannot write, delete or read anything that is not world-writable/readable, so all
    of root's files (0700 home directories, pytest's tmp dirs, the runner's results) are safe.
  - Processes: its own session/process group; on timeout or exit the group is killed with SIGKILL, and
    then every remaining process of its uid is killed (this also catches children that escaped the
    group with `setsid`). RLIMIT_NPROC caps the uid's processes, so a fork bomb is contained.
  - Resources (setrlimit, soft = hard where it matters): CPU time, address space (`memory_mb`), size of
    any written file, number of processes, open files, no core dumps.
  - Environment: minimal PATH, HOME = TMPDIR = the run's directory, no proxies, no PYTHON* variables
    (`-I` also ignores them and the user site), stdin is /dev/null.
  - The run's directory is removed afterwards; stdout/stderr are read incrementally and truncated to
    `max_output_bytes` each, so huge output cannot exhaust the runner's memory.
Not isolated in mode "root": there is no mount namespace or chroot. The child can read world-readable
files (e.g. /etc, the project's sources), and can create files in world-writable directories
(/tmp, /var/tmp, /dev/shm), each at most the file-size limit; those files outlive the run. It shares
the kernel, /proc (it can list other processes, but not signal or ptrace them) and the IPC namespace.

Fallback modes when the runner is not root: "userns" (`unshare --map-root-user --net`: same network
isolation, but the child keeps the runner's uid, so file permissions do not protect the runner's files,
and processes that escape the process group are not killed) and, when `unshare` cannot be used at all,
"audit": a Python audit hook in the child refuses sockets, subprocesses, exec and ctypes. The audit hook
is a guard against accidents only; native code can bypass it. Only mode "root" is tested here.
"""

from __future__ import annotations

import json
import math
import os
import queue
import selectors
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from functools import lru_cache
from typing import Callable, Iterable, Sequence

STATUSES = ("passed", "failed", "timeout", "error")
#: exit code the bootstrap uses for an uncaught exception other than AssertionError
EXIT_CRASH = 86
#: first uid/gid of the sandbox uids (mode "root"); far above any ordinary account
UID_BASE = 990_000
UID_POOL_SIZE = 64

_SAFE_PATH = "/usr/local/bin:/usr/bin:/bin"
_DETECT_LOCK = threading.Lock()
# Kept short: it is passed on the command line. The user's code runs in its own namespace dict.
_BOOTSTRAP = """
import json, resource, sys, traceback
cfg = json.loads(sys.argv[1])
for name, (soft, hard) in cfg["limits"].items():
    resource.setrlimit(getattr(resource, name), (soft, hard))
if cfg["audit"]:
    blocked = ("socket.", "subprocess.", "os.system", "os.exec", "os.posix_spawn", "os.spawn",
               "os.fork", "ctypes.")
    def guard(event, args):
        if event.startswith(blocked):
            raise PermissionError("sandbox: " + event + " is not allowed")
    sys.addaudithook(guard)
sys.argv = ["main.py"]
def report(error):  # the traceback without this bootstrap's frame
    traceback.print_exception(type(error), error, error.__traceback__.tb_next)
with open("main.py", encoding="utf-8") as f:
    source = f.read()
try:
    exec(compile(source, "main.py", "exec"), {"__name__": "__main__", "__file__": "main.py"})
except AssertionError as error:
    report(error)
    sys.exit(1)
except SystemExit:
    raise
except BaseException as error:
    report(error)
    sys.exit(cfg["exit_crash"])
"""


@dataclass(frozen=True)
class SandboxResult:
    status: str  # one of STATUSES
    returncode: int | None  # negative: killed by that signal; None: never started
    stdout: str
    stderr: str
    duration: float  # wall-clock seconds
    truncated: bool = False  # stdout or stderr was cut at max_output_bytes

    @property
    def passed(self) -> bool:
        return self.status == "passed"


@dataclass(frozen=True)
class Isolation:
    mode: str  # "root", "userns" or "audit"
    interpreter: str
    unshare: str | None


def run_python(
    code: str,
    *,
    timeout: float = 10.0,
    memory_mb: int = 1024,
    max_output_bytes: int = 64 * 1024,
    max_file_mb: int = 16,
    max_processes: int = 32,
    max_open_files: int = 128,
) -> SandboxResult:
    """Run `code` as a Python program in the sandbox and report how it ended (see module doc)."""
    start = time.monotonic()
    try:
        isolation = detect_isolation()
    except OSError as err:
        return SandboxResult("error", None, "", f"sandbox unavailable: {err}", 0.0)
    uid = _UID_POOL.acquire() if isolation.mode == "root" else None
    workdir = tempfile.mkdtemp(prefix="robust-sft-sandbox-")
    try:
        _prepare_workdir(workdir, code, uid)
        limits = _rlimits(timeout, memory_mb, max_file_mb, max_processes, max_open_files, uid)
        config = {"limits": limits, "audit": isolation.mode == "audit", "exit_crash": EXIT_CRASH}
        argv = _command(isolation, uid, ["-c", _BOOTSTRAP, json.dumps(config)])
        return _execute(argv, workdir, uid, timeout, max_output_bytes, start)
    finally:
        if uid is not None:
            _kill_uid(uid)
            _UID_POOL.release(uid)
        shutil.rmtree(workdir, ignore_errors=True)


def run_many(codes: Iterable[str], *, workers: int | None = None, **kwargs) -> list[SandboxResult]:
    """`run_python` over many programs in parallel; results in input order."""
    codes = list(codes)
    workers = workers or min(4, os.cpu_count() or 1)
    with ThreadPoolExecutor(max_workers=max(1, workers)) as pool:
        return list(pool.map(lambda code: run_python(code, **kwargs), codes))


def detect_isolation() -> Isolation:
    """The strongest isolation mode that works here, with an interpreter the child may execute."""
    with _DETECT_LOCK:  # one probe sequence even when many threads start at once
        return _detect_isolation()


@lru_cache(maxsize=1)
def _detect_isolation() -> Isolation:
    unshare = shutil.which("unshare", path=_SAFE_PATH)
    modes = []
    if unshare and os.geteuid() == 0:
        modes.append("root")
    if unshare:
        modes.append("userns")
    modes.append("audit")
    for mode in modes:
        for interpreter in _interpreter_candidates():
            isolation = Isolation(mode, interpreter, unshare)
            if _probe(isolation):
                return isolation
    raise OSError("no Python interpreter can be started for the sandbox")


def _interpreter_candidates() -> list[str]:
    # The runner's interpreter may live where the sandbox uid cannot read (e.g. under /root), so a
    # system python3 is tried next; generated code only needs the standard library.
    found = [os.path.realpath(sys.executable), shutil.which("python3", path=_SAFE_PATH)]
    return list(dict.fromkeys(path for path in found if path))


def _probe(isolation: Isolation) -> bool:
    argv = _command(isolation, UID_BASE, ["-c", "pass"])
    try:
        done = subprocess.run(argv, env=_child_env("/"), stdin=subprocess.DEVNULL,
                              capture_output=True, timeout=30, cwd="/")
    except (OSError, subprocess.SubprocessError):
        return False
    return done.returncode == 0


def _command(isolation: Isolation, uid: int | None, program: list[str]) -> list[str]:
    python = [isolation.interpreter, "-I", *program]
    if isolation.mode == "root":
        return [isolation.unshare, "--net", f"--setuid={uid}", f"--setgid={uid}", "--", *python]
    if isolation.mode == "userns":
        return [isolation.unshare, "--map-root-user", "--net", "--", *python]
    return python


def _rlimits(timeout: float, memory_mb: int, max_file_mb: int, max_processes: int,
             max_open_files: int, uid: int | None) -> dict[str, tuple[int, int]]:
    cpu = max(1, math.ceil(timeout))
    # Without a private uid, RLIMIT_NPROC counts all the runner's processes, so add the current ones.
    nproc = max_processes if uid is not None else _count_processes(os.getuid()) + max_processes
    return {
        "RLIMIT_CPU": (cpu, cpu + 1),  # SIGXCPU at the soft limit, SIGKILL at the hard one
        "RLIMIT_AS": (memory_mb << 20, memory_mb << 20),
        "RLIMIT_FSIZE": (max_file_mb << 20, max_file_mb << 20),
        "RLIMIT_NPROC": (nproc, nproc),
        "RLIMIT_NOFILE": (max_open_files, max_open_files),
        "RLIMIT_CORE": (0, 0),
    }


def _prepare_workdir(workdir: str, code: str, uid: int | None) -> None:
    path = os.path.join(workdir, "main.py")
    with open(path, "w", encoding="utf-8") as f:
        f.write(code)
    os.chmod(path, 0o644)
    if uid is not None:
        os.chown(workdir, uid, uid)  # mkdtemp made it 0700: only the sandbox uid (and root) get in


def _child_env(workdir: str) -> dict[str, str]:
    return {"PATH": _SAFE_PATH, "HOME": workdir, "TMPDIR": workdir, "LANG": "C.UTF-8",
            "LC_ALL": "C.UTF-8"}


def _execute(argv: list[str], workdir: str, uid: int | None, timeout: float,
             max_output_bytes: int, start: float) -> SandboxResult:
    try:
        proc = subprocess.Popen(argv, cwd=workdir, env=_child_env(workdir), stdin=subprocess.DEVNULL,
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, start_new_session=True)
    except OSError as err:
        return SandboxResult("error", None, "", f"sandbox could not start: {err}",
                             time.monotonic() - start)
    def kill() -> None:
        _kill_group(proc.pid)
        proc.kill()  # in case it left its process group
        if uid is not None:
            _kill_uid(uid)

    outputs, timed_out = _collect(proc, start + timeout, max_output_bytes, kill)
    returncode = proc.wait()
    status = "timeout" if timed_out else _classify(returncode)
    (stdout, out_cut), (stderr, err_cut) = (out.result() for out in outputs)
    return SandboxResult(status, returncode, stdout, stderr, time.monotonic() - start,
                         out_cut or err_cut)


def _classify(returncode: int) -> str:
    if returncode == 0:
        return "passed"
    if returncode == -signal.SIGXCPU:
        return "timeout"
    if returncode < 0 or returncode == EXIT_CRASH:
        return "error"
    return "failed"


class _Capped:
    """Keeps the first `limit` bytes of a stream and counts the rest."""

    def __init__(self, limit: int) -> None:
        self.limit, self.data, self.dropped = limit, bytearray(), 0

    def add(self, chunk: bytes) -> None:
        room = max(0, self.limit - len(self.data))
        self.data += chunk[:room]
        self.dropped += max(0, len(chunk) - room)

    def result(self) -> tuple[str, bool]:
        return self.data.decode("utf-8", errors="replace"), self.dropped > 0


def _collect(proc: subprocess.Popen, deadline: float, limit: int,
             kill: Callable[[], None]) -> tuple[list[_Capped], bool]:
    """Drain stdout/stderr until EOF; `kill` everything at the deadline or once the main process ended."""
    outputs = [_Capped(limit), _Capped(limit)]
    selector = selectors.DefaultSelector()
    for stream, out in zip((proc.stdout, proc.stderr), outputs):
        os.set_blocking(stream.fileno(), False)
        selector.register(stream, selectors.EVENT_READ, out)
    timed_out, killed_at = False, None
    while True:
        now = time.monotonic()
        if killed_at is None:
            exited = _exited(proc.pid)
            if exited or now >= deadline:
                # Also after a normal exit: background children could hold the pipes open forever.
                timed_out = not exited
                kill()
                killed_at = now
        if killed_at is not None and (not selector.get_map() or now > killed_at + 2.0):
            break  # all output read, or pipes held by processes `kill` cannot reach (non-root modes)
        wait = 0.05 if killed_at is not None else max(0.0, min(deadline - now, 0.05))
        for key, _ in selector.select(timeout=wait):
            chunk = os.read(key.fd, 65536)
            if chunk:
                key.data.add(chunk)
            else:
                selector.unregister(key.fileobj)
    selector.close()
    proc.stdout.close()
    proc.stderr.close()
    return outputs, timed_out


def _exited(pid: int) -> bool:
    # WNOWAIT: look without reaping, so the pid (= process group id) cannot be reused before killpg.
    try:
        return os.waitid(os.P_PID, pid, os.WEXITED | os.WNOHANG | os.WNOWAIT) is not None
    except ChildProcessError:
        return True


def _kill_group(pgid: int) -> None:
    try:
        os.killpg(pgid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass


def _owner_and_state(pid: str) -> tuple[int, str] | None:
    try:
        with open(f"/proc/{pid}/status", encoding="utf-8") as f:
            fields = dict(line.split(":", 1) for line in f if ":" in line)
    except OSError:
        return None
    return int(fields["Uid"].split()[0]), fields["State"].strip()[:1]


def _live_pids_of_uid(uid: int) -> list[int]:
    pids = []
    for pid in filter(str.isdigit, os.listdir("/proc")):
        info = _owner_and_state(pid)
        if info and info[0] == uid and info[1] != "Z":  # zombies are harmless and cannot be killed
            pids.append(int(pid))
    return pids


def _count_processes(uid: int) -> int:
    return len(_live_pids_of_uid(uid))


def _kill_uid(uid: int, rounds: int = 100) -> None:
    """SIGKILL every process of the sandbox uid (also those that left the process group)."""
    for _ in range(rounds):
        pids = _live_pids_of_uid(uid)
        if not pids:
            return
        for pid in pids:
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        time.sleep(0.01)


class _UidPool:
    """Hands out distinct sandbox uids, so concurrent runs cannot signal or exhaust each other."""

    def __init__(self, uids: Sequence[int]) -> None:
        self._free: queue.Queue[int] = queue.Queue()
        for uid in uids:
            self._free.put(uid)

    def acquire(self) -> int:
        return self._free.get()

    def release(self, uid: int) -> None:
        self._free.put(uid)


_UID_POOL = _UidPool(range(UID_BASE, UID_BASE + UID_POOL_SIZE))
