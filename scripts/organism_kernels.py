"""Rebuild an organism world under several CPU kernel / thread settings and tabulate its base accuracies.

Another CPU model runs other float kernels (ATen's vectorised loops, MKL's GEMMs, oneDNN's primitives); these
environment variables make this CPU run the ones another would, so a world's sensitivity to them can be measured
on one machine:

    python scripts/organism_kernels.py --seed 0 --out runs/kernels            # all six settings
    python scripts/organism_kernels.py --seed 0 --out runs/kernels --settings default:1 avx2:2
    python scripts/organism_kernels.py --version v5 --seed 0 --out runs/kernels-v5   # + v5's design criteria

Each setting builds into its own cache folder under --out (a finished build is reused), then the table of
per-task base accuracies, and their spread, is printed and written to --out/kernels_seed<K>.{json,md}; for v5,
each setting's misses of the design criteria (organism/criteria.py) and of the shipped build's accuracies.
One-thread settings run two at a time on a two-core machine. The builds import the package when they start and
again while they evaluate: run this from a checkout that does not change meanwhile (e.g. a `git worktree`).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

# ATen capability -> the MKL / oneDNN instruction caps of a CPU of that generation.
KERNELS = {
    "default": {"ATEN_CPU_CAPABILITY": "default", "MKL_ENABLE_INSTRUCTIONS": "SSE4_2", "ONEDNN_MAX_CPU_ISA": "SSE41"},
    "avx2": {"ATEN_CPU_CAPABILITY": "avx2", "MKL_ENABLE_INSTRUCTIONS": "AVX2", "ONEDNN_MAX_CPU_ISA": "AVX2"},
    "avx512": {"ATEN_CPU_CAPABILITY": "avx512", "MKL_ENABLE_INSTRUCTIONS": "AVX512",
               "ONEDNN_MAX_CPU_ISA": "AVX512_CORE"},
}
ALL_SETTINGS = ["default:1", "default:2", "avx2:1", "avx2:2", "avx512:1", "avx512:2"]

BUILD = """
import json, sys
from dataclasses import replace
import torch
from robust_sft.organism.store import build_base_model, definition

seed, threads, cache, overrides, version = (int(sys.argv[1]), int(sys.argv[2]), sys.argv[3], json.loads(sys.argv[4]),
                                            sys.argv[5])
config = replace(definition(version).OrganismConfig(seed=seed), threads=threads, **overrides)
path = build_base_model(cache_dir=cache, config=config, progress=False, version=version)
print(json.dumps({"path": str(path), "capability": torch.backends.cpu.get_cpu_capability()}))
"""


def build(seed: int, setting: str, out: Path, overrides: dict, version: str = "v4") -> dict:
    kernel, threads = setting.split(":")
    # Passive OpenMP waits: on a shared machine spinning threads slow a 2-thread build tenfold (the sums are the same)
    env = {**os.environ, **KERNELS[kernel], "OMP_NUM_THREADS": threads, "OMP_WAIT_POLICY": "PASSIVE"}
    cache = out / f"seed{seed}-{kernel}-t{threads}"  # one folder per setting; the key names the design
    cache.mkdir(parents=True, exist_ok=True)
    with open(cache / "build.log", "w") as log:  # the build's own errors, kept beside it
        done = subprocess.run([sys.executable, "-c", BUILD, str(seed), threads, str(cache), json.dumps(overrides),
                               version],
                              env=env, stdout=subprocess.PIPE, stderr=log, text=True)
    if done.returncode:
        raise RuntimeError(f"the build under {setting} failed: see {cache / 'build.log'}")
    built = json.loads(done.stdout.strip().splitlines()[-1])  # the build itself is left as it was written
    report = json.loads((Path(built["path"]) / "base_eval.json").read_text())
    return {"setting": setting, "capability": built["capability"], **report}


def table(rows: list[dict]) -> str:
    tasks = list(rows[0]["accuracy"])
    lines = ["| setting | ATen kernel | " + " | ".join(tasks) + " | build s |",
             "|---" * (len(tasks) + 3) + "|"]
    for r in rows:
        lines.append(f"| {r['setting']} | {r.get('capability', '?')} | "
                     + " | ".join(f"{r['accuracy'][t]:.3f}" for t in tasks) + f" | {r['build_seconds']:.0f} |")
    spread = [max(r["accuracy"][t] for r in rows) - min(r["accuracy"][t] for r in rows) for t in tasks]
    lines.append("| spread (max - min) | | " + " | ".join(f"{s:.3f}" for s in spread) + " | |")
    return "\n".join(lines)


def criteria_lines(rows: list[dict], shipped: dict | None) -> list[str]:
    """Per setting, the v5 design criteria it misses and (when a shipped build of this definition exists) the
    tasks further than the tolerance from the shipped build."""
    from robust_sft.organism.criteria import design_misses, rebuild_misses

    lines = []
    for r in rows:
        misses = design_misses(r) + (rebuild_misses(r["accuracy"], shipped["accuracy"]) if shipped else [])
        lines.append(f"- {r['setting']}: " + ("; ".join(misses) if misses else "every criterion holds"))
    if shipped is None:
        lines.append("- (no shipped build of this definition: A1 not checked against it)")
    return lines


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seed", type=int, default=0, help="organism world")
    parser.add_argument("--version", default="v4", help="organism world version (organism/versions.py)")
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--settings", nargs="+", default=ALL_SETTINGS, help="KERNEL:THREADS, kernel in "
                        + ", ".join(KERNELS))
    parser.add_argument("--set", nargs="*", default=[], metavar="FIELD=VALUE",
                        help="OrganismConfig fields to change (a design probe; the shipped definition is the default)")
    args = parser.parse_args()
    overrides = {k: json.loads(v) for k, v in (item.split("=", 1) for item in args.set)}
    args.out.mkdir(parents=True, exist_ok=True)
    one = [s for s in args.settings if s.endswith(":1")]
    rest = [s for s in args.settings if s not in one]
    with ThreadPoolExecutor(os.cpu_count() or 2) as pool:  # one-thread builds side by side, one per core
        rows = list(pool.map(lambda s: build(args.seed, s, args.out, overrides, args.version), one))
    rows += [build(args.seed, s, args.out, overrides, args.version) for s in rest]
    rows.sort(key=lambda r: args.settings.index(r["setting"]))
    text = table(rows)
    if args.version != "v4":
        from robust_sft.organism.store import shipped_report

        shipped = shipped_report(args.seed, args.version)
        text += "\n\n" + "\n".join(criteria_lines(rows, shipped if shipped and shipped["key"] == rows[0]["key"] else None))
    print(text)
    name = f"kernels_{args.version}_seed{args.seed}" + "".join(f"_{k}{v}" for k, v in overrides.items())
    name = "".join(c if c.isalnum() or c in "._=-" else "-" for c in name)  # a file name, whatever the values
    (args.out / f"{name}.md").write_text(text + "\n")
    (args.out / f"{name}.json").write_text(json.dumps(rows, indent=2))


if __name__ == "__main__":
    main()
