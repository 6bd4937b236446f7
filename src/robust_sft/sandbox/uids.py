"""The sandbox uids (mode "root"): a pool of dedicated unprivileged uids, each locked for a whole run (flock,
also across runner processes) and handed out only when nothing of it remains on the host: processes,
System V IPC objects, kernel keys, files in the shared directories."""

from __future__ import annotations

import errno
import fcntl
import os
import signal
import stat
import threading
import time
from dataclasses import dataclass

#: first uid/gid of the sandbox uids (mode "root"); far above any ordinary account
UID_BASE = 990_000
#: number of sandbox uids (the most concurrent runs, plus room for uids skipped for leftovers)
UID_POOL_SIZE = 4096

_SHARED_DIRS = ("/tmp", "/var/tmp", "/dev/shm")  # world-writable host dirs checked for uid leftovers
_LOCK_DIR = "/run/robust-sft-sandbox"


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


def live_pids_of_uid(uid: int) -> list[int]:
    pids = []
    for pid in filter(str.isdigit, os.listdir("/proc")):
        info = _owner_and_state(pid)
        if info and info[0] == uid and info[1] != "Z":  # zombies are harmless and cannot be killed
            pids.append(int(pid))
    return pids


def count_processes(uid: int) -> int:
    return len(live_pids_of_uid(uid))


def kill_uid(uid: int, rounds: int = 100) -> None:
    """SIGKILL every process of the sandbox uid (also those that left the process group)."""
    for _ in range(rounds):
        pids = live_pids_of_uid(uid)
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
    found = [f"process {pid}" for pid in live_pids_of_uid(uid)]
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
class Lease:
    uid: int
    lock_fd: int


class UidPool:
    """Hands out sandbox uids that no other run holds (flock: also across processes) and of which
    nothing remains; the lowest such uid first."""

    def __init__(self, first: int, size: int) -> None:
        self.first, self.size = first, size
        self._lock = threading.Lock()

    def acquire(self) -> Lease:
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
                    kill_uid(uid)  # a crashed runner's processes; the uid's lock is ours now
                    found = _leftovers(uid)
                if not found:
                    return Lease(uid, fd)
                os.close(fd)
            raise OSError(errno.EAGAIN, f"no free sandbox uid in {self.first}..{self.first + self.size - 1}")

    def release(self, lease: Lease) -> None:
        os.close(lease.lock_fd)


def _lock_dir() -> str:
    os.makedirs(_LOCK_DIR, mode=0o700, exist_ok=True)
    info = os.lstat(_LOCK_DIR)
    if not stat.S_ISDIR(info.st_mode) or info.st_uid != 0 or info.st_mode & 0o077:
        raise OSError(errno.EPERM, "sandbox lock directory is not a private root directory", _LOCK_DIR)
    return _LOCK_DIR


UID_POOL = UidPool(UID_BASE, UID_POOL_SIZE)
