"""Run some settings of a study (its worlds' runs) on another machine, into a copy of the study directory.

    python scripts/study_settings.py study/study_v2.yaml --out runs/study-v2 --worlds 1 2 3 --workers 15 \
        --train_seconds 400 --analyze_seconds 90

Each setting is exactly the run `robust-sft study` makes for it (`StudyConfig.setting_options`), with only the
number of worker processes changed: workers are not part of any stage's key, so the study, resumed afterwards,
finds these units done and does not train them again. Worlds run side by side, each in its own process with its
share of the workers.

For a machine the weights cannot be brought back from: each unit measures its model right after its evaluation
(the settings' `analyze_units`); after `train_seconds` the runs are stopped, units evaluated here but not yet
measured (a unit stopped between the two) get their measures for up to `analyze_seconds`, and every unit not both
evaluated and measured is removed, so the study redoes it whole (units done elsewhere before, which came without
weights, are left as they are). The directory can then
travel without weights (`final/` keeps its small files: the analysis looks for it) and merge by copying.

A mode whose grid has several points takes the study's selection: cached when the copy holds the study's
`select/`, else made here first, as the study makes it.
"""

from __future__ import annotations

import argparse
import logging
import multiprocessing
import shutil
import sys
import time
from concurrent.futures import ProcessPoolExecutor, wait
from pathlib import Path

from robust_sft.analysis.mechanism import base_answer_logs, cached_row, measure_unit, unit_key
from robust_sft.core.rundir import RunDir
from robust_sft.experiment.config import ExperimentConfig
from robust_sft.experiment.runner import Experiment
from robust_sft.experiment.stages import is_done
from robust_sft.study.config import StudyConfig, grid_points, load_study_config
from robust_sft.study.runner import Study

logger = logging.getLogger("study_settings")


def chosen_point(config: StudyConfig, out: str, mode: str) -> dict:
    """The mode's options: its one grid point, or the study's selection (cached in `out`/select, else run)."""
    points = grid_points(config.modes[mode])
    return points[0] if len(points) == 1 else Study(config, out, progress=False).select(mode)["options"]


def setting_experiment(config: StudyConfig, out: str, world: int, mode: str, point: dict,
                       workers: int) -> Experiment:
    options = config.setting_options(world, mode, point)
    options.pop("executor", None)
    options["workers"] = workers
    return Experiment(ExperimentConfig(**options), Path(out) / options["name"], progress=False)


def run_setting(config_path: str, out: str, world: int, mode: str, point: dict, workers: int) -> None:
    logging.basicConfig(level=logging.INFO, format=f"%(asctime)s w{world}-{mode} %(message)s")
    setting_experiment(load_study_config(config_path), out, world, mode, point, workers).run()


def evaluated_units(exp: Experiment) -> tuple[list[tuple[str, int]], list[tuple[str, int]]]:
    """The (variant, seed) units whose evaluation is done for their current key, and the others."""
    exp.resolve_base()
    done, not_done = [], []
    for variant in exp.variants:
        for seed in exp.config.seeds:
            evaluated = is_done(exp.run_dir.eval_dir(variant.name, seed), exp.evaluation_key(variant, seed))
            (done if evaluated else not_done).append((variant.name, seed))
    return done, not_done


def measure(run_root: str, variant: str, seed: int, kl_limit: int | None) -> None:
    """One unit's mechanism measures, cached where and as the study's analyze stage caches them."""
    measure_unit(RunDir(run_root), variant, seed, kl_limit)


def one_thread() -> None:
    import torch

    torch.set_num_threads(1)  # a worker per core


def trained_here(exp: Experiment, variant: str, seed: int) -> bool:
    """Whether this copy holds the unit's weights (a unit done on another machine travelled without them)."""
    return exp.run_dir.final_model_dir(variant, seed).is_dir()


def is_measured(exp: Experiment, variant: str, seed: int, kl_limit: int | None) -> bool:
    run = exp.run_dir
    model_dir = run.model_dir(variant, seed)
    if not (model_dir / "stage_key.json").exists():
        return False
    key = unit_key(model_dir, run.scores_file("gt"), kl_limit, base_answer_logs(run))
    return cached_row(run.analysis_cache_file(variant, seed), key) is not None


def remove_unit(exp: Experiment, variant: str, seed: int) -> None:
    run = exp.run_dir
    shutil.rmtree(run.model_dir(variant, seed), ignore_errors=True)
    shutil.rmtree(run.eval_dir(variant, seed), ignore_errors=True)
    run.analysis_cache_file(variant, seed).unlink(missing_ok=True)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("config")
    parser.add_argument("--out", required=True, help="the study directory (or a copy of it)")
    parser.add_argument("--worlds", type=int, nargs="+", required=True)
    parser.add_argument("--workers", type=int, required=True, help="worker processes in all, shared by the worlds")
    parser.add_argument("--train_seconds", type=float, default=None, help="stop the runs after this long")
    parser.add_argument("--analyze_seconds", type=float, default=None,
                        help="then measure the evaluated units for this long, and remove every unit not measured")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    config = load_study_config(args.config)
    unknown = sorted(set(args.worlds) - set(config.worlds))
    if unknown:
        raise SystemExit(f"worlds {unknown} are not the study's ({config.worlds})")
    chosen = {mode: chosen_point(config, args.out, mode) for mode in config.modes}  # before any setting runs
    settings = [(world, mode) for world in args.worlds for mode in config.modes]
    share = max(1, args.workers // len(settings))
    context = multiprocessing.get_context("spawn")
    processes = [context.Process(target=run_setting, name=f"w{world}-{mode}",
                                 args=(args.config, args.out, world, mode, chosen[mode], share))
                 for world, mode in settings]
    start = time.monotonic()
    for process in processes:
        process.start()
    for process in processes:
        process.join(None if args.train_seconds is None else max(0.0, start + args.train_seconds - time.monotonic()))
    stopped = [p.name for p in processes if p.is_alive()]
    for process in processes:
        if process.is_alive():
            process.kill()  # its unit workers die with it (PR_SET_PDEATHSIG)
            process.join()
    logger.info("runs stopped after %.0f s: %s", time.monotonic() - start, ", ".join(stopped) or "none (all done)")
    if args.analyze_seconds is None:
        failed = [p.name for p in processes if p.exitcode != 0]
        sys.exit(f"settings failed: {', '.join(failed)}" if failed else 0)

    experiments = [setting_experiment(config, args.out, world, mode, chosen[mode], share) for world, mode in settings]
    evaluated = {exp.config.name: evaluated_units(exp) for exp in experiments}
    calls = [(str(exp.dir), variant, seed, config.kl_limit) for exp in experiments
             for variant, seed in evaluated[exp.config.name][0] if trained_here(exp, variant, seed)]
    analyze_start, failures = time.monotonic(), []
    if args.analyze_seconds > 0:
        pool = ProcessPoolExecutor(args.workers, mp_context=context, initializer=one_thread)
        futures = [pool.submit(measure, *call) for call in calls]
        wait(futures, timeout=args.analyze_seconds)
        failures = [f.exception() for f in futures if f.done() and not f.cancelled() and f.exception()]
        for process in list(pool._processes.values()):  # units still measuring: their caches are not written
            process.kill()
        pool.shutdown(wait=False, cancel_futures=True)
    logger.info("measured for %.0f s; %d failures%s", time.monotonic() - analyze_start, len(failures),
                f" (first: {failures[0]!r})" if failures else "")
    for exp in experiments:
        done, not_done = evaluated[exp.config.name]
        here = [(v, s) for v, s in done if trained_here(exp, v, s)]
        kept = [(v, s) for v, s in here if is_measured(exp, v, s, config.kl_limit)]
        removed = set(here) - set(kept) | set(not_done)
        for variant, seed in removed:
            remove_unit(exp, variant, seed)
        logger.info("%s: %d units trained here, evaluated and measured (kept); %d done before (left as they were); "
                    "%d removed", exp.config.name, len(kept), len(done) - len(here), len(removed))


if __name__ == "__main__":
    main()
