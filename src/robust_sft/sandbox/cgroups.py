"""The cgroup of one run: its memory and process caps over all its processes, its CPU time, killing what is
in it. cgroup v2 where the host delegates the memory and pids controllers, else the v1 hierarchies, else
none (the runner then falls back to per-process limits, see limits.py)."""

from __future__ import annotations

import errno
import os
import signal
import time
from functools import lru_cache


class RunCgroup:
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


class CgroupBackend:
    """Where to create run cgroups: `bases` (one per hierarchy) with memory and pids control."""

    def __init__(self, version: str, bases: dict[str, str]) -> None:
        self.version, self.bases = version, bases

    def discard(self, name: str) -> None:
        """Kill what is in cgroup `name` and remove it (a leftover of a runner killed mid-run)."""
        dirs = [os.path.join(base, name) for base in self.bases.values()]
        RunCgroup(list(dict.fromkeys(dirs)), None, 1.0).remove()

    def create(self, name: str, memory_bytes: int, max_tasks: int) -> RunCgroup:
        self.discard(name)
        dirs = {kind: os.path.join(base, name) for kind, base in self.bases.items()}
        run = RunCgroup(list(dict.fromkeys(dirs.values())), None, 1.0)
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
def cgroup_backend() -> CgroupBackend | None:
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


def _cgroup_v2() -> CgroupBackend | None:
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
                return CgroupBackend("v2", {"memory": base, "pids": base})
    return None


def _has_controllers(directory: str, name: str) -> bool:
    try:
        with open(os.path.join(directory, name), encoding="ascii") as f:
            return {"memory", "pids"} <= set(f.read().split())
    except OSError:
        return False


def _cgroup_v1() -> CgroupBackend | None:
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
    return CgroupBackend("v1", bases)


def _cgroup_works(backend: CgroupBackend) -> bool:
    try:
        run = backend.create(f"probe-{os.getpid()}", 64 << 20, 4)
    except OSError:
        return False
    run.remove()
    return True
