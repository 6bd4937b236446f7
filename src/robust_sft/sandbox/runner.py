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
"""

from __future__ import annotations

import errno
import fcntl
import json
import math
import os
import platform
import selectors
import shutil
import signal
import stat
import subprocess
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from functools import lru_cache
from typing import Callable, Iterable

STATUSES = ("passed", "failed", "timeout", "error")
#: exit code the bootstrap uses for an uncaught exception other than AssertionError
EXIT_CRASH = 86
#: first uid/gid of the sandbox uids (mode "root"); far above any ordinary account
UID_BASE = 990_000
#: number of sandbox uids (the most concurrent runs, plus room for uids skipped for leftovers)
UID_POOL_SIZE = 4096
#: the program's home and working directory inside the sandbox (mode "root")
SANDBOX_HOME = "/home/sandbox"
#: a run is killed after WALL_FACTOR * timeout + 30 wall-clock seconds, however little of it was its own
WALL_FACTOR = 10
#: without cgroups, the most processes (threads included) of a run; each gets memory_mb / this much
FALLBACK_MAX_PROCESSES = 4

_SAFE_PATH = "/usr/local/bin:/usr/bin:/bin"
# Isolated mode and no `site`: the standard library only, the same on every host, and no .pth hooks of
# the interpreter's site-packages run in the sandbox (such a hook can cost most of a second per start).
_PYTHON_FLAGS = ("-I", "-S")
_HOST_VIEW = ("/usr", "/etc", "/bin", "/sbin", "/lib", "/lib32", "/lib64", "/libx32")
_SHARED_DIRS = ("/tmp", "/var/tmp", "/dev/shm")  # world-writable host dirs checked for uid leftovers
_LOCK_DIR = "/run/robust-sft-sandbox"
_KEYCTL_SYSCALL = {"x86_64": 250, "aarch64": 219}
_DETECT_LOCK = threading.Lock()
_POLL = 0.02  # seconds between checks of a running program

# The bootstrap runs inside the sandbox. In mode "root" it starts as root and pid 1 of the run's new
# pid, mount, IPC and network namespaces: it builds the run's root filesystem, forks the program (which
# chroots, drops to the sandbox uid and runs the code), reaps orphans and reports the program's wait
# status on `status_fd`. It is passed on the command line, far below the kernel's limit on one argument.
_BOOTSTRAP = r"""
import json, os, sys
cfg = json.loads(sys.argv[1])
with os.fdopen(cfg["code_fd"], "rb") as f:
    source = f.read().decode("utf-8")

def run_program():
    import resource, traceback
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

def contain():
    import ctypes
    libc = ctypes.CDLL(None, use_errno=True)
    RDONLY, NOSUID, NODEV, NOEXEC, REMOUNT, BIND = 1, 2, 4, 8, 32, 4096
    def mount(src, target, fstype, flags, data=None):
        args = [None if a is None else a.encode() for a in (src, target, fstype, data)]
        if libc.mount(args[0], args[1], args[2], ctypes.c_ulong(flags), args[3]) != 0:
            err = ctypes.get_errno()
            raise OSError(err, os.strerror(err), target)
    def write(path, text, required=True):
        try:
            with open(path, "w") as f:
                f.write(text)
        except OSError:
            if required:
                raise
    status = cfg["status_fd"]
    os.write(status, b"pid %s\n" % os.readlink("/proc/self").encode())  # host pid: host /proc still
    for procs in cfg["cgroup_procs"]:
        write(procs, "0")
    write("/proc/self/oom_score_adj", "-1000", False)  # an OOM kill takes the program, not the init
    root, uid = "/tmp", cfg["uid"]  # a tmpfs over /tmp, private to this mount namespace, becomes /
    mount("tmpfs", root, "tmpfs", NOSUID | NODEV, "size=%dk,nr_inodes=%d,mode=755" % tuple(cfg["tmpfs"]))
    for path, link in cfg["view"]:
        if link is not None:
            os.symlink(link, root + path)
            continue
        os.makedirs(root + path)
        mount(path, root + path, None, BIND)
        mount(None, root + path, None, BIND | REMOUNT | RDONLY | NOSUID | NODEV)
    for path in ("/tmp", "/var/tmp", "/dev/shm"):
        os.makedirs(root + path, exist_ok=True)
        os.chmod(root + path, 0o1777)
    for name in ("null", "zero", "full", "random", "urandom"):
        write(root + "/dev/" + name, "")
        mount("/dev/" + name, root + "/dev/" + name, None, BIND)
    for name, link in (("fd", "/proc/self/fd"), ("stdin", "/proc/self/fd/0"),
                       ("stdout", "/proc/self/fd/1"), ("stderr", "/proc/self/fd/2")):
        os.symlink(link, root + "/dev/" + name)
    os.makedirs(root + "/proc")
    mount("proc", root + "/proc", "proc", NOSUID | NODEV | NOEXEC)
    home = root + cfg["home"]
    os.makedirs(home)
    write(home + "/main.py", source)
    os.chmod(home + "/main.py", 0o644)
    os.chown(home, uid, uid)
    os.chmod(home, 0o700)
    child = os.fork()
    if child == 0:
        try:
            os.write(status, b"pid %s\n" % os.readlink("/proc/self").encode())
            os.close(status)
            os.close(cfg["lifeline_fd"])
            if cfg["keyctl"]:  # keyctl(JOIN_SESSION_KEYRING): a new, empty one, not the runner's
                libc.syscall(cfg["keyctl"], 1, None)
            os.chroot(root)
            os.chdir(cfg["home"])
            write("/proc/self/oom_score_adj", "1000")  # first to go (the init may lack the right to -1000)
            os.setgroups([])
            os.setgid(uid)
            os.setuid(uid)
            if libc.prctl(38, 1, 0, 0, 0) != 0:  # PR_SET_NO_NEW_PRIVS
                raise OSError(ctypes.get_errno(), "prctl(PR_SET_NO_NEW_PRIVS)")
        except BaseException as error:
            sys.stderr.write("sandbox: %r\n" % (error,))
            os._exit(cfg["exit_crash"])
        run_program()
        return
    def watch():  # the runner died (nothing holds the lifeline's other end): end the run
        os.read(cfg["lifeline_fd"], 1)
        os._exit(1)
    import threading
    threading.Thread(target=watch, daemon=True).start()
    while True:  # reap orphans until the program ends; the kernel then kills what is left
        pid, wait_status = os.wait()
        if pid == child:
            os.write(status, b"exit %d\n" % wait_status)
            os._exit(0)

if cfg["contain"]:
    try:
        contain()
    except BaseException as error:
        if os.getpid() != 1:
            raise
        import traceback
        where = traceback.extract_tb(error.__traceback__)[-1]
        os.write(cfg["status_fd"], ("setup-error %r at line %d\n" % (error, where.lineno)).encode())
        os._exit(1)
else:
    run_program()
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
    cgroup: str | None = None  # "v2", "v1" or None (fallback limits); mode "root" only


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
    limits = _Limits(timeout, memory_mb, max_file_mb, max_processes, max_open_files, max_tmp_mb)
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
    unshare = shutil.which("unshare", path=_SAFE_PATH)
    modes = []
    if unshare and os.geteuid() == 0:
        modes.append("root")
    if unshare:
        modes.append("userns")
    modes.append("audit")
    backend = _cgroup_backend()
    for mode in modes:
        # Mode "root" without cgroups (fallback limits) is still far stronger than mode "userns".
        cgroups = dict.fromkeys([backend.version if backend else None, None]) if mode == "root" else [None]
        for cgroup in cgroups:
            for interpreter in _interpreter_candidates():
                isolation = Isolation(mode, interpreter, unshare, cgroup)
                if _probe(isolation):
                    return isolation
    raise OSError("no Python interpreter can be started for the sandbox")


def _interpreter_candidates() -> list[str]:
    # In mode "root" the interpreter's prefix is made visible; in the others the runner's interpreter
    # may live where the child cannot read (e.g. under /root), so a system python3 is tried next.
    found = [os.path.realpath(sys.executable), shutil.which("python3", path=_SAFE_PATH)]
    return list(dict.fromkeys(path for path in found if path))


def _probe(isolation: Isolation) -> bool:
    limits = _Limits(30.0, 256, 1, 4, 64, 1)
    return _run(isolation, "pass\n", limits, 4096, time.monotonic()).status == "passed"


# ---- one run ----------------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Limits:
    timeout: float
    memory_mb: int
    max_file_mb: int
    max_processes: int
    max_open_files: int
    max_tmp_mb: int


def _run(isolation: Isolation, code: str, limits: _Limits, max_output_bytes: int,
         start: float) -> SandboxResult:
    if isolation.mode != "root":
        return _run_unprivileged(isolation, code, limits, max_output_bytes, start)
    try:
        lease = _UID_POOL.acquire()
    except OSError as err:
        return SandboxResult("error", None, "", f"sandbox unavailable: {err}", time.monotonic() - start)
    cgroup = None
    try:
        backend = _cgroup_backend() if isolation.cgroup else None
        if backend is not None:
            cgroup = backend.create(f"run-{lease.uid}", limits.memory_mb << 20, limits.max_processes + 1)
        config = {
            "contain": True, "audit": False, "exit_crash": EXIT_CRASH, "uid": lease.uid,
            "limits": _rlimits(limits, lease.uid, cgroup is not None),
            "cgroup_procs": cgroup.procs_files if cgroup else [], "home": SANDBOX_HOME,
            "view": _host_view(isolation.interpreter),
            "tmpfs": (limits.max_tmp_mb << 10, max(1024, limits.max_tmp_mb * 64)),
            "keyctl": _KEYCTL_SYSCALL.get(platform.machine()),
        }
        argv = [isolation.unshare, "--net", "--ipc", "--mount", "--pid", "--fork", "--kill-child",
                "--", isolation.interpreter, *_PYTHON_FLAGS, "-c", _BOOTSTRAP]

        def kill_all() -> None:  # the pid namespace dies with its init; this catches the unexpected
            if cgroup is not None:
                cgroup.kill()

        env = {**_child_env(SANDBOX_HOME), "TMPDIR": "/tmp"}
        return _execute(argv, config, code, "/", env, limits, cgroup, kill_all, max_output_bytes, start)
    except OSError as err:
        return SandboxResult("error", None, "", f"sandbox failed: {err}", time.monotonic() - start)
    finally:
        _kill_uid(lease.uid)
        if cgroup is not None:
            cgroup.remove()
        _UID_POOL.release(lease)


def _run_unprivileged(isolation: Isolation, code: str, limits: _Limits, max_output_bytes: int,
                      start: float) -> SandboxResult:
    workdir = tempfile.mkdtemp(prefix="robust-sft-sandbox-")
    try:
        path = os.path.join(workdir, "main.py")
        with open(path, "w", encoding="utf-8") as f:
            f.write(code)
        config = {"contain": False, "audit": isolation.mode == "audit", "exit_crash": EXIT_CRASH,
                  "limits": _rlimits(limits, None, False)}
        python = [isolation.interpreter, *_PYTHON_FLAGS, "-c", _BOOTSTRAP]
        argv = [isolation.unshare, "--map-root-user", "--net", "--", *python] \
            if isolation.mode == "userns" else python
        return _execute(argv, config, code, workdir, _child_env(workdir), limits, None, lambda: None,
                        max_output_bytes, start)
    finally:
        shutil.rmtree(workdir, ignore_errors=True)


def _rlimits(limits: _Limits, uid: int | None, cgroup: bool) -> dict[str, tuple[int, int]]:
    cpu = max(1, math.ceil(limits.timeout))
    memory, nproc = limits.memory_mb << 20, limits.max_processes
    if uid is None:
        # Without a private uid, RLIMIT_NPROC counts all the runner's processes, so add the current ones.
        nproc = _count_processes(os.getuid()) + limits.max_processes
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


@lru_cache(maxsize=8)
def _host_view(interpreter: str) -> list[tuple[str, str | None]]:
    """(path, symlink target or None for a read-only bind) for the run's root filesystem."""
    view = []
    for path in _HOST_VIEW:
        if os.path.islink(path):
            view.append((path, os.readlink(path)))
        elif os.path.isdir(path):
            view.append((path, None))
    bound = [path for path, link in view if link is None]
    prefix = os.path.dirname(os.path.dirname(os.path.realpath(interpreter)))  # PREFIX/bin/python
    if not any(prefix == path or prefix.startswith(path + "/") for path in bound) and prefix != "/":
        view.append((prefix, None))
    return view


def _child_env(home: str) -> dict[str, str]:
    return {"PATH": _SAFE_PATH, "HOME": home, "TMPDIR": home, "LANG": "C.UTF-8", "LC_ALL": "C.UTF-8"}


def _execute(argv: list[str], config: dict, code: str, cwd: str, env: dict[str, str], limits: _Limits,
             cgroup: _RunCgroup | None, kill_all: Callable[[], None], max_output_bytes: int,
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

    def __init__(self, pid: int, contained: bool, timeout: float, cgroup: _RunCgroup | None,
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


# ---- processes and leftovers of a uid ----------------------------------------------------------------


def _owner_and_state(pid: str) -> tuple[int, str] | None:
    """Real uid and state letter of a process (None if it is gone). Runs for every process on the host
    several times per sandbox run, so it only looks for the two fields it needs."""
    try:
        with open(f"/proc/{pid}/status", encoding="utf-8") as f:
            text = f.read()
        state = text.split("\nState:", 1)[1].split(None, 1)[0]
        return int(text.split("\nUid:", 1)[1].split(None, 1)[0]), state
    except (OSError, IndexError, ValueError):
        return None


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


def _leftovers(uid: int) -> list[str]:
    """What of `uid` remains on the host: processes, System V IPC objects, kernel keys, shared files."""
    found = [f"process {pid}" for pid in _live_pids_of_uid(uid)]
    for kind in ("shm", "msg", "sem"):
        found += [f"System V {kind} {key}" for key in _sysv_objects_of(kind, uid)]
    if uid in _key_users():
        found.append("kernel keys")
    for directory in _SHARED_DIRS:
        try:
            entries = list(os.scandir(directory))
        except OSError:
            continue
        for entry in entries:
            try:
                if entry.stat(follow_symlinks=False).st_uid == uid:
                    found.append(entry.path)
            except OSError:
                pass
    return found


def _sysv_objects_of(kind: str, uid: int) -> list[str]:
    try:
        with open(f"/proc/sysvipc/{kind}", encoding="ascii") as f:
            header, *rows = [line.split() for line in f]
    except (OSError, ValueError):
        return []
    key, owner = header.index("key"), header.index("uid")
    return [row[key] for row in rows if len(row) > owner and int(row[owner]) == uid]


def _key_users() -> set[int]:
    try:
        with open("/proc/key-users", encoding="ascii") as f:
            return {int(line.split(":")[0]) for line in f if ":" in line}
    except (OSError, ValueError):
        return set()


@dataclass(frozen=True)
class _Lease:
    uid: int
    lock_fd: int


class _UidPool:
    """Hands out sandbox uids that no other run holds (flock: also across processes) and of which
    nothing remains; the lowest such uid first."""

    def __init__(self, first: int, size: int) -> None:
        self.first, self.size = first, size
        self._lock = threading.Lock()

    def acquire(self) -> _Lease:
        with self._lock:
            lock_dir = _lock_dir()
            for uid in range(self.first, self.first + self.size):
                fd = os.open(os.path.join(lock_dir, str(uid)), os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
                try:
                    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                except BlockingIOError:
                    os.close(fd)
                    continue
                found = _leftovers(uid)
                if any(item.startswith("process ") for item in found):
                    _kill_uid(uid)  # a crashed runner's processes; the uid's lock is ours now
                    found = _leftovers(uid)
                if not found:
                    return _Lease(uid, fd)
                os.close(fd)
            raise OSError(errno.EAGAIN, f"no free sandbox uid in {self.first}..{self.first + self.size - 1}")

    def release(self, lease: _Lease) -> None:
        os.close(lease.lock_fd)


def _lock_dir() -> str:
    os.makedirs(_LOCK_DIR, mode=0o700, exist_ok=True)
    info = os.lstat(_LOCK_DIR)
    if not stat.S_ISDIR(info.st_mode) or info.st_uid != 0 or info.st_mode & 0o077:
        raise OSError(errno.EPERM, "sandbox lock directory is not a private root directory", _LOCK_DIR)
    return _LOCK_DIR


_UID_POOL = _UidPool(UID_BASE, UID_POOL_SIZE)


# ---- cgroups ----------------------------------------------------------------------------------------


class _RunCgroup:
    """The cgroup(s) of one run: limits set, members killed, removed afterwards."""

    def __init__(self, dirs: list[str], cpu_file: str | None, cpu_scale: float) -> None:
        self.dirs, self.cpu_file, self.cpu_scale = dirs, cpu_file, cpu_scale
        self.procs_files = [os.path.join(d, "cgroup.procs") for d in dirs]

    def cpu_seconds(self) -> float:
        if self.cpu_file is None:
            return 0.0
        try:
            with open(self.cpu_file, encoding="ascii") as f:
                text = f.read()
        except OSError:
            return 0.0
        if "usage_usec" in text:  # v2 cpu.stat
            text = text.split("usage_usec", 1)[1].split()[0]
        return int(text.split()[0]) * self.cpu_scale

    def kill(self) -> None:
        for directory in self.dirs:
            if _write(os.path.join(directory, "cgroup.kill"), "1"):
                continue
            for pid in _read_pids(os.path.join(directory, "cgroup.procs")):
                try:
                    os.kill(pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass

    def remove(self) -> None:
        for directory in self.dirs:
            for _ in range(200):  # processes killed a moment ago may still be exiting
                try:
                    os.rmdir(directory)
                    break
                except FileNotFoundError:
                    break
                except OSError:
                    self.kill()
                    time.sleep(0.005)


class _CgroupBackend:
    """Where to create run cgroups: `bases` (one per hierarchy) with memory and pids control."""

    def __init__(self, version: str, bases: dict[str, str]) -> None:
        self.version, self.bases = version, bases

    def discard(self, name: str) -> None:
        """Kill what is in cgroup `name` and remove it (a leftover of a runner killed mid-run)."""
        dirs = [os.path.join(base, name) for base in self.bases.values()]
        _RunCgroup(list(dict.fromkeys(dirs)), None, 1.0).remove()

    def create(self, name: str, memory_bytes: int, max_tasks: int) -> _RunCgroup:
        self.discard(name)
        dirs = {kind: os.path.join(base, name) for kind, base in self.bases.items()}
        run = _RunCgroup(list(dict.fromkeys(dirs.values())), None, 1.0)
        for directory in run.dirs:
            os.mkdir(directory)
        if self.version == "v2":
            directory = dirs["memory"]
            _write(os.path.join(directory, "memory.swap.max"), "0")
            _require(os.path.join(directory, "memory.max"), str(memory_bytes))
            _require(os.path.join(directory, "pids.max"), str(max_tasks))
            run.cpu_file, run.cpu_scale = os.path.join(directory, "cpu.stat"), 1e-6
        else:
            _require(os.path.join(dirs["memory"], "memory.limit_in_bytes"), str(memory_bytes))
            _write(os.path.join(dirs["memory"], "memory.memsw.limit_in_bytes"), str(memory_bytes))
            _require(os.path.join(dirs["pids"], "pids.max"), str(max_tasks))
            if "cpuacct" in dirs:
                run.cpu_file, run.cpu_scale = os.path.join(dirs["cpuacct"], "cpuacct.usage"), 1e-9
        return run


def _write(path: str, text: str) -> bool:
    try:
        with open(path, "w", encoding="ascii") as f:
            f.write(text)
        return True
    except OSError:
        return False


def _require(path: str, text: str) -> None:
    if not _write(path, text):
        raise OSError(errno.EIO, f"cannot set cgroup limit {path}")


def _read_pids(path: str) -> list[int]:
    try:
        with open(path, encoding="ascii") as f:
            return [int(line) for line in f if line.strip()]
    except OSError:
        return []


@lru_cache(maxsize=1)
def _cgroup_backend() -> _CgroupBackend | None:
    """cgroup v2 with memory and pids delegated, else the v1 memory and pids hierarchies, else None."""
    if os.geteuid() != 0:
        return None
    for make in (_cgroup_v2, _cgroup_v1):
        try:
            backend = make()
        except OSError:
            continue
        if backend is not None and _cgroup_works(backend):
            return backend
    return None


def _own_cgroups() -> dict[str, str]:
    """controller name (or "" for the v2 hierarchy) -> this process's cgroup path."""
    paths = {}
    with open("/proc/self/cgroup", encoding="ascii") as f:
        for line in f:
            _, controllers, path = line.rstrip("\n").split(":", 2)
            for controller in controllers.split(","):
                paths[controller] = path
    return paths


def _cgroup_v2() -> _CgroupBackend | None:
    root = "/sys/fs/cgroup"
    if not os.path.exists(os.path.join(root, "cgroup.controllers")):
        return None
    own = _own_cgroups().get("", "/")
    # A cgroup with processes cannot hand controllers to children, so the runs' parent is created next
    # to this process's cgroup (in its parent, whose only members are cgroups), or at the root.
    parents = [os.path.join(root, os.path.dirname(own).lstrip("/")), root]
    for parent in dict.fromkeys(parents):
        base = os.path.join(parent, "robust-sft-sandbox")
        if _write(os.path.join(parent, "cgroup.subtree_control"), "+memory +pids") or _has_controllers(
                parent, "cgroup.subtree_control"):
            os.makedirs(base, exist_ok=True)
            if _write(os.path.join(base, "cgroup.subtree_control"), "+memory +pids") or _has_controllers(
                    base, "cgroup.subtree_control"):
                return _CgroupBackend("v2", {"memory": base, "pids": base})
    return None


def _has_controllers(directory: str, name: str) -> bool:
    try:
        with open(os.path.join(directory, name), encoding="ascii") as f:
            return {"memory", "pids"} <= set(f.read().split())
    except OSError:
        return False


def _cgroup_v1() -> _CgroupBackend | None:
    own = _own_cgroups()
    bases = {}
    for kind in ("memory", "pids", "cpuacct"):
        mount = os.path.join("/sys/fs/cgroup", kind)
        if kind not in own or not os.path.isdir(mount):
            if kind == "cpuacct":
                continue
            return None
        base = os.path.join(mount, own[kind].lstrip("/"), "robust-sft-sandbox")
        os.makedirs(base, exist_ok=True)
        bases[kind] = base
    return _CgroupBackend("v1", bases)


def _cgroup_works(backend: _CgroupBackend) -> bool:
    try:
        run = backend.create(f"probe-{os.getpid()}", 64 << 20, 4)
    except OSError:
        return False
    run.remove()
    return True
