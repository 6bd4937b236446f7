"""Per-run overhead of the code sandbox against a bare interpreter start, in one run.

- bare:    the sandbox's interpreter with its flags (`python -I -S -c <program>`) as a plain subprocess, no
           isolation: the floor for any sandbox that starts a fresh interpreter per program;
- sandbox: `robust_sft.tasks.sandbox.run_python(<program>)` with its defaults.

Both run the same tiny MBPP-like program (a function and three asserts) `--runs` times, one after the
other, interleaved so that load from elsewhere on the host hits both alike. Median seconds per run; last
line: `sandbox_over_bare=X` (the ratio of the medians). Run it with another `PYTHONPATH` to compare two
versions of the sandbox on the same host.

    python bench/sandbox_overhead.py [--runs 40]
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import time

PROGRAM = "def add(a, b):\n    return a + b\n\nassert add(1, 2) == 3\nassert add(0, 0) == 0\nassert add(-1, 1) == 0\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=40)
    args = parser.parse_args()

    from robust_sft.tasks import sandbox

    isolation = sandbox.detect_isolation()
    assert sandbox.run_python(PROGRAM).passed
    bare, contained = [], []
    for _ in range(args.runs):
        start = time.perf_counter()
        subprocess.run([isolation.interpreter, *sandbox._PYTHON_FLAGS, "-c", PROGRAM], check=True)
        bare.append(time.perf_counter() - start)
        start = time.perf_counter()
        assert sandbox.run_python(PROGRAM).passed
        contained.append(time.perf_counter() - start)
    bare_s, sandbox_s = statistics.median(bare), statistics.median(contained)
    print(f"isolation={isolation}")
    print(f"bare_median_s={bare_s:.4f} sandbox_median_s={sandbox_s:.4f}")
    print(f"sandbox_over_bare={sandbox_s / bare_s:.2f}")


if __name__ == "__main__":
    main()
