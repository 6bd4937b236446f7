"""The isolation modes a sandbox run can use here, strongest first ("root", "userns", "audit"; see runner.py),
and what a mode-"root" run sees of the host: its read-only views and environment."""

from __future__ import annotations

import os
import shutil
import sys
from dataclasses import dataclass
from functools import lru_cache

#: the program's home and working directory inside the sandbox (mode "root")
SANDBOX_HOME = "/home/sandbox"
SAFE_PATH = "/usr/local/bin:/usr/bin:/bin"
# Isolated mode and no `site`: the standard library only, the same on every host, and no .pth hooks of
# the interpreter's site-packages run in the sandbox (such a hook can cost most of a second per start).
PYTHON_FLAGS = ("-I", "-S")
_HOST_VIEW = ("/usr", "/etc", "/bin", "/sbin", "/lib", "/lib32", "/lib64", "/libx32")
KEYCTL_SYSCALL = {"x86_64": 250, "aarch64": 219}


@dataclass(frozen=True)
class Isolation:
    mode: str  # "root", "userns" or "audit"
    interpreter: str
    unshare: str | None
    cgroup: str | None = None  # "v2", "v1" or None (fallback limits); mode "root" only


def candidates(cgroup_version: str | None) -> list[Isolation]:
    """Every (mode, cgroup, interpreter) to try, strongest first; `cgroup_version` is the usable cgroup's, if any."""
    unshare = shutil.which("unshare", path=SAFE_PATH)
    modes = []
    if unshare and os.geteuid() == 0:
        modes.append("root")
    if unshare:
        modes.append("userns")
    modes.append("audit")
    found = []
    for mode in modes:
        # Mode "root" without cgroups (fallback limits) is still far stronger than mode "userns".
        cgroups = dict.fromkeys([cgroup_version, None]) if mode == "root" else [None]
        for cgroup in cgroups:
            found += [Isolation(mode, interpreter, unshare, cgroup) for interpreter in interpreter_candidates()]
    return found


def interpreter_candidates() -> list[str]:
    # In mode "root" the interpreter's prefix is made visible; in the others the runner's interpreter
    # may live where the child cannot read (e.g. under /root), so a system python3 is tried next.
    found = [os.path.realpath(sys.executable), shutil.which("python3", path=SAFE_PATH)]
    return list(dict.fromkeys(path for path in found if path))


@lru_cache(maxsize=8)
def host_view(interpreter: str) -> list[tuple[str, str | None]]:
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


def child_env(home: str) -> dict[str, str]:
    return {"PATH": SAFE_PATH, "HOME": home, "TMPDIR": home, "LANG": "C.UTF-8", "LC_ALL": "C.UTF-8"}
