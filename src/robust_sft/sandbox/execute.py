"""One program's process: start the bootstrap, watch the run's own time, drain its output (capped), kill it
when its time is up or its main process ended, and classify how it ended."""

from __future__ import annotations

import json
import os
import selectors
import signal
import subprocess
import time
from collections.abc import Callable
from dataclasses import dataclass

from robust_sft.sandbox.cgroups import RunCgroup
from robust_sft.sandbox.limits import Limits

STATUSES = ("passed", "failed", "timeout", "error")
#: exit code the bootstrap uses for an uncaught exception other than AssertionError
EXIT_CRASH = 86
#: a run is killed after WALL_FACTOR * timeout + 30 wall-clock seconds, however little of it was its own
WALL_FACTOR = 10
_POLL = 0.02  # seconds between checks of a running program


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


def execute(argv: list[str], config: dict, code: str, cwd: str, env: dict[str, str], limits: Limits,
             cgroup: RunCgroup | None, kill_all: Callable[[], None], max_output_bytes: int,
             start: float) -> SandboxResult:
    code_fd = os.memfd_create("sandbox-main.py", flags=0)  # the code, read by the bootstrap
    status_read, status_write = os.pipe()
    lifeline_read, lifeline_write = os.pipe()  # the run's init ends the run when the runner dies
    try:
        os.write(code_fd, code.encode("utf-8"))
        os.lseek(code_fd, 0, os.SEEK_SET)
        config = {**config, "code_fd": code_fd, "status_fd": status_write, "lifeline_fd": lifeline_read}
        started = time.monotonic()  # the run's clock starts here, not while it waited for a uid
        proc = subprocess.Popen([*argv, json.dumps(config)], cwd=cwd, env=env, stdin=subprocess.DEVNULL,
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, start_new_session=True,
                                pass_fds=(code_fd, status_write, lifeline_read))
    except OSError as err:
        os.close(status_read)
        os.close(lifeline_write)
        return SandboxResult("error", None, "", f"sandbox could not start: {err}",
                             time.monotonic() - start)
    finally:
        os.close(code_fd)
        os.close(status_write)
        os.close(lifeline_read)

    def kill() -> None:
        _kill_group(proc.pid)
        proc.kill()  # in case it left its process group
        kill_all()

    clock = _RunClock(proc.pid, config["contain"], limits.timeout, cgroup, started)
    try:
        with os.fdopen(status_read, "rb") as status_pipe:
            outputs, timed_out = _collect(proc, status_pipe, clock, max_output_bytes, kill)
        returncode = proc.wait()
    finally:
        os.close(lifeline_write)
    (stdout, out_cut), (stderr, err_cut), (status_text, _) = (out.result() for out in outputs)
    if config["contain"]:
        returncode, stderr = _contained_returncode(status_text, stderr)
    status = "timeout" if timed_out else _classify(returncode)
    return SandboxResult(status, returncode, stdout, stderr, time.monotonic() - start,
                         out_cut or err_cut)


def _contained_returncode(status_text: str, stderr: str) -> tuple[int, str]:
    """The program's return code, as reported by the run's init."""
    for line in status_text.splitlines():
        if line.startswith("exit "):
            return os.waitstatus_to_exitcode(int(line.split()[1])), stderr
        if line.startswith("setup-error "):
            return EXIT_CRASH, stderr + f"sandbox setup failed: {line[len('setup-error '):]}\n"
    return -signal.SIGKILL, stderr  # the init never reported: it was killed


def _classify(returncode: int) -> str:
    if returncode == 0:
        return "passed"
    if returncode == -signal.SIGXCPU:
        return "timeout"
    if returncode < 0 or returncode == EXIT_CRASH:
        return "error"
    return "failed"


class _RunClock:
    """The program's own time (wall-clock since it started, minus its waits for a CPU) and the run's CPU.

    In mode "root" the program starts when the run's init reports its pid (the second "pid" line); the
    setup before (namespaces, mounts) is the sandbox's cost, bounded by the backstop only.
    """

    def __init__(self, pid: int, contained: bool, timeout: float, cgroup: RunCgroup | None,
                 started: float) -> None:
        self.program, self.program_start = (None, None) if contained else (pid, started)
        self.timeout, self.cgroup, self.wait = timeout, cgroup, 0.0
        self.backstop = started + WALL_FACTOR * timeout + 30

    def add_pids(self, status_text: str, now: float) -> None:
        if self.program is None:
            pids = [line.split()[1] for line in status_text.splitlines() if line.startswith("pid ")]
            if len(pids) >= 2:
                self.program, self.program_start = int(pids[1]), now

    def own_time(self, now: float) -> float:
        if self.program is None:
            return 0.0
        wait = _cpu_wait(self.program)
        if wait is not None:  # the last value is kept once the program has exited
            self.wait = wait
        return now - self.program_start - self.wait

    def expired(self, now: float) -> bool:
        if now >= self.backstop or self.own_time(now) >= self.timeout:
            return True
        return self.cgroup is not None and self.cgroup.cpu_seconds() >= self.timeout


def _cpu_wait(pid: int) -> float | None:
    """Seconds `pid` spent runnable but waiting for a CPU (None when unknown)."""
    try:
        with open(f"/proc/{pid}/schedstat", encoding="ascii") as f:
            return int(f.read().split()[1]) / 1e9
    except (OSError, IndexError, ValueError):
        return None


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


def _collect(proc: subprocess.Popen, status_pipe, clock: _RunClock, limit: int,
             kill: Callable[[], None]) -> tuple[list[_Capped], bool]:
    """Drain stdout, stderr and the status pipe until EOF; `kill` everything once the run's time is up
    or its main process ended."""
    outputs = [_Capped(limit), _Capped(limit), _Capped(4096)]
    selector = selectors.DefaultSelector()
    for stream, out in zip((proc.stdout, proc.stderr, status_pipe), outputs):
        os.set_blocking(stream.fileno(), False)
        selector.register(stream, selectors.EVENT_READ, out)
    timed_out, killed_at = False, None
    while True:
        now = time.monotonic()
        if killed_at is None:
            clock.add_pids(outputs[2].data.decode("ascii", errors="replace"), now)
            exited = _exited(proc.pid)
            if exited or clock.expired(now):
                # Also after a normal exit: background children could hold the pipes open forever.
                timed_out = not exited
                kill()
                killed_at = now
        if killed_at is not None and (not selector.get_map() or now > killed_at + 2.0):
            break  # all output read, or pipes held by processes `kill` cannot reach (non-root modes)
        for key, _ in selector.select(timeout=_POLL):
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
