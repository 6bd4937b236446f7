"""The code sandbox: outcomes, limits and isolation against hostile programs."""

from __future__ import annotations

import os
import socket
import textwrap
import time

import pytest

from robust_sft.tasks import sandbox
from robust_sft.tasks.sandbox import run_many, run_python

ROOT_MODE = sandbox.detect_isolation().mode == "root"
needs_root_mode = pytest.mark.skipif(not ROOT_MODE, reason="uid isolation needs the runner to be root")


def code(text: str) -> str:
    return textwrap.dedent(text).strip() + "\n"


def alive(pid: int) -> bool:
    """Running (zombies count as dead: they hold no resources and run no code)."""
    try:
        with open(f"/proc/{pid}/status", encoding="utf-8") as f:
            state = next(line for line in f if line.startswith("State:"))
    except (FileNotFoundError, ProcessLookupError):
        return False
    return "Z" not in state.split()[1]


def live_processes_of(uid: int) -> list[int]:
    pids = []
    for entry in filter(str.isdigit, os.listdir("/proc")):
        try:
            with open(f"/proc/{entry}/status", encoding="utf-8") as f:
                fields = dict(line.split(":", 1) for line in f if ":" in line)
        except OSError:
            continue
        if int(fields["Uid"].split()[0]) == uid and not fields["State"].strip().startswith("Z"):
            pids.append(int(entry))
    return pids


# ---- outcomes ----------------------------------------------------------------------------------


def test_passing_program_captures_output():
    result = run_python("import sys\nprint('hello')\nprint('oops', file=sys.stderr)\n")
    assert (result.status, result.returncode) == ("passed", 0)
    assert result.stdout == "hello\n" and result.stderr == "oops\n"
    assert not result.truncated and 0 < result.duration < 5


def test_failing_assert_is_failed_with_traceback():
    result = run_python("def f(x):\n    return x + 1\nassert f(1) == 3\n")
    assert result.status == "failed" and result.returncode == 1
    assert "AssertionError" in result.stderr and 'File "main.py", line 3' in result.stderr


def test_nonzero_exit_is_failed():
    assert run_python("import sys\nsys.exit(3)\n").status == "failed"


@pytest.mark.parametrize("source", ["def f(:\n", "undefined_name + 1\n", "raise RuntimeError('x')\n"])
def test_crash_is_error(source):
    result = run_python(source)
    assert result.status == "error" and result.returncode == sandbox.EXIT_CRASH
    assert result.stderr.strip()


# ---- hostile programs -------------------------------------------------------------------------


def test_infinite_loop_times_out():
    start = time.monotonic()
    result = run_python("while True:\n    pass\n", timeout=1)
    assert result.status == "timeout"
    assert time.monotonic() - start < 4


def test_sleeping_program_times_out_on_wall_clock():
    result = run_python("import time\ntime.sleep(60)\n", timeout=1)
    assert result.status == "timeout" and result.duration < 4


def test_program_that_closes_its_output_still_times_out():
    result = run_python("import os, time\nos.close(1)\nos.close(2)\ntime.sleep(60)\n", timeout=1)
    assert result.status == "timeout" and result.duration < 4


@pytest.mark.parametrize("bomb", ["x = bytearray(8 * 1024 ** 3)\n",
                                  "chunks = []\nwhile True:\n    chunks.append(bytearray(50 * 1024 ** 2))\n"])
def test_memory_bomb_is_contained(bomb):
    result = run_python(bomb, memory_mb=256, timeout=10)
    assert result.status in ("error", "failed")
    assert "MemoryError" in result.stderr
    assert run_python("print(1)").passed  # the runner is still fine


def test_huge_output_is_truncated():
    result = run_python("import sys\nfor _ in range(200):\n    sys.stdout.write('x' * 100_000)\n",
                        max_output_bytes=10_000)
    assert result.status == "passed" and result.truncated
    assert result.stdout == "x" * 10_000


@needs_root_mode
def test_fork_bomb_is_contained_and_leaves_no_process():
    bomb = code("""
        import os, sys
        print(os.getuid(), flush=True)
        while True:
            try:
                os.fork()
            except OSError:
                pass
    """)
    start = time.monotonic()
    results = run_many([bomb, "print('ok')\n", "print('ok')\n", "print('ok')\n"], workers=2, timeout=2)
    assert time.monotonic() - start < 8
    assert results[0].status in ("timeout", "error", "failed")
    # Each concurrent run has its own uid and process limit: the bomb does not starve the others.
    assert [r.status for r in results[1:]] == ["passed"] * 3
    assert live_processes_of(int(results[0].stdout.split()[0])) == []


@needs_root_mode
def test_process_escaping_the_group_is_killed():
    escape = code("""
        import os, time
        if os.fork() == 0:
            os.setsid()
            print(os.getpid(), flush=True)
            time.sleep(60)
        time.sleep(0.2)
    """)
    result = run_python(escape, timeout=5)
    assert result.status == "passed" and result.duration < 4
    assert not alive(int(result.stdout.split()[0]))


@needs_root_mode
def test_files_outside_the_run_directory_are_protected(tmp_path):
    canary = tmp_path / "canary.txt"
    canary.write_text("precious")
    attack = code(f"""
        import os
        target = {str(canary)!r}
        attempts = [
            lambda: open(target, "w").write("overwritten"),
            lambda: open(target, "a").write("appended"),
            lambda: os.remove(target),
            lambda: os.rename(target, target + ".moved"),
            lambda: open(os.path.join(os.path.dirname(target), "new.txt"), "w").write("x"),
            lambda: os.chmod(target, 0o777),
        ]
        succeeded = []
        for i, attempt in enumerate(attempts):
            try:
                attempt()
                succeeded.append(i)
            except OSError:
                pass
        print(succeeded)
    """)
    result = run_python(attack)
    assert result.stdout.strip() == "[]"
    assert canary.read_text() == "precious"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["canary.txt"]


def test_network_is_unreachable_even_on_loopback():
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen()
    server.setblocking(False)
    port = server.getsockname()[1]
    try:
        result = run_python(f"import socket\nsocket.create_connection(('127.0.0.1', {port}), timeout=2)\n")
        assert result.status == "error" and "Error" in result.stderr
        with pytest.raises(BlockingIOError):
            server.accept()  # nothing ever connected
    finally:
        server.close()


def test_environment_is_scrubbed_and_directory_removed():
    probe = code("""
        import os, sys
        print(os.getcwd())
        print(sorted(os.environ))
        print(os.environ["HOME"] == os.getcwd(), os.getuid())
        print(sys.flags.isolated)
    """)
    result = run_python(probe)
    workdir, names, home_and_uid, isolated = result.stdout.splitlines()
    assert not any("proxy" in name.lower() or name.startswith("PYTHON") for name in eval(names))
    assert home_and_uid.split()[0] == "True" and isolated == "1"
    if ROOT_MODE:
        assert int(home_and_uid.split()[1]) != 0
    assert not os.path.exists(workdir)


def test_run_many_keeps_order():
    programs = ["print(1)\n", "assert False\n", "print(3)\n", "raise ValueError\n", "print(5)\n"]
    results = run_many(programs, workers=2)
    assert [r.status for r in results] == ["passed", "failed", "passed", "error", "passed"]
    assert [r.stdout for r in results[::2]] == ["1\n", "3\n", "5\n"]
