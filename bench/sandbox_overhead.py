"""Per-run overhead of the code sandbox against a bare interpreter start, in one run.

- bare:    the sandbox's interpreter with its flags (`python -I -S -c <program>`) as a plain subprocess, no
           isolation: the floor for any sandbox that starts a fresh interpreter per program;
- sandbox: `robust_sft.sandbox.runner.run_python(<program>)` with its defaults;
- other:   with `--compare PATH`, `run_python` of another version of `sandbox.py` (e.g. one from an older
           commit, `git show REV:src/robust_sft/tasks/sandbox.py > /tmp/old_sandbox.py`).

All run the same tiny MBPP-like program (a function and three asserts) `--runs` times, interleaved so
that load from elsewhere on the host hits them alike. Median seconds per run; last lines:
`sandbox_over_bare=X` and, with `--compare`, `sandbox_over_other=Y` (ratios of the medians).

    python bench/sandbox_overhead.py [--runs 40] [--compare /tmp/old_sandbox.py]
"""

from __future__ import annotations

import argparse
import importlib.util
import statistics
import subprocess
import sys
import time

PROGRAM = "def add(a, b):\n    return a + b\n\nassert add(1, 2) == 3\nassert add(0, 0) == 0\nassert add(-1, 1) == 0\n"


def load(path: str):
    spec = importlib.util.spec_from_file_location("other_sandbox", path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


def timed(call) -> float:
    start = time.perf_counter()
    call()
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=40)
    parser.add_argument("--compare", help="path of another sandbox.py to time in the same run")
    args = parser.parse_args()

    from robust_sft.sandbox import runner as sandbox

    isolation = sandbox.detect_isolation()
    bare = [isolation.interpreter, *sandbox._PYTHON_FLAGS, "-c", PROGRAM]
    variants = {"bare": lambda: subprocess.run(bare, check=True),
                "sandbox": lambda: sandbox.run_python(PROGRAM).passed or exit("sandbox run failed")}
    if args.compare:
        other = load(args.compare)
        print(f"other_isolation={other.detect_isolation()}")
        variants["other"] = lambda: other.run_python(PROGRAM).passed or exit("other run failed")
    for call in variants.values():  # warm up: detection, caches
        call()
    times = {name: [] for name in variants}
    for _ in range(args.runs):
        for name, call in variants.items():
            times[name].append(timed(call))
    medians = {name: statistics.median(values) for name, values in times.items()}
    print(f"isolation={isolation}")
    print(" ".join(f"{name}_median_s={value:.4f}" for name, value in medians.items()))
    print(f"sandbox_over_bare={medians['sandbox'] / medians['bare']:.2f}")
    if args.compare:
        print(f"sandbox_over_other={medians['sandbox'] / medians['other']:.2f}")


if __name__ == "__main__":
    main()
