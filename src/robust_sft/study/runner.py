"""`robust-sft study CONFIG`: the paper's claims across organism worlds and fine-tuning modes, with controls.

Stages, each cached and resumable (every run below is a `robust-sft run` directory with keyed stages):
  select      per fine-tuning mode, its free options (LoRA rank + learning rate; full fine-tuning's learning
              rate) chosen once, on the first world, by the oracle's best target validation accuracy over a grid
              fixed in the config; ties go to the earlier grid point (the smaller change)
  settings    one run per (world, mode): every method, the STM tau sweep, the learning-rate sweep, all seeds
  lr_control  the demo's training options with the learning-rate sweep (skipped when a setting already is it)
  analyze     each run's analysis.json from the mechanism measures (robust_sft.analysis.mechanism) that every
              unit made of its model right after its evaluation (experiment `analyze_units`), so the weights need
              not outlive the session or machine that trained them; a unit never measured is measured here
  summary     study.json, study.md and figures/: every claim held in k of n settings with its numbers, sample-wise
              forgetting, and how the mechanism measures relate to forgetting over all runs

The criteria of the claims are robust_sft.report.claims's, the same as a single run's; the study only counts them.
"""

from __future__ import annotations

import json
import logging
import time
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

from robust_sft.analysis.mechanism import analyze_run
from robust_sft.core.artifacts import LOCK_NAME, check_own_dir, dir_lock, write_json
from robust_sft.core.hashing import stable_hash
from robust_sft.core.rundir import RunDir
from robust_sft.executors import run_calls
from robust_sft.experiment.config import ExperimentConfig
from robust_sft.experiment.plan import Variant
from robust_sft.experiment.runner import Experiment, unit_threads, worker_setup
from robust_sft.experiment.stages import is_done
from robust_sft.models.loading import load_model, trained_model_parts
from robust_sft.study.config import StudyConfig, grid_points, load_study_config, point_name
from robust_sft.study.publish import check_publish_target, publish
from robust_sft.study.summary import write_summary

logger = logging.getLogger(__name__)


class Study:
    def __init__(self, config: StudyConfig, out: str | Path, progress: bool = True):
        self.config = config
        self.dir = Path(out)
        self.progress = progress

    def run(self) -> dict:
        """Every stage, holding the study directory's lock (a second study on it stops at once, saying so)."""
        check_own_dir(self.dir, "study_config.json", "study directory")
        with dir_lock(self.dir / LOCK_NAME, f"study directory {self.dir}"):
            return self._run()

    def _run(self) -> dict:
        write_json(self.dir / "study_config.json", asdict(self.config))
        timings = {}
        start = time.perf_counter()
        chosen = {mode: self.select(mode) for mode in self.config.modes}
        timings["select"] = time.perf_counter() - start
        runs, control = {}, None
        for world in self.config.worlds:
            for mode in self.config.modes:
                name = f"w{world}-{mode}"
                start = time.perf_counter()
                options = self.config.setting_options(world, mode, chosen[mode]["options"])
                self.run_setting(name, options)
                runs[name] = {"world": world, "mode": mode, "dir": str(self.dir / name)}
                timings[name] = time.perf_counter() - start
            if world == self.config.worlds[0]:  # the control right after its world: the other worlds come last
                control = self.lr_control_run(runs)
                if control:
                    start = time.perf_counter()
                    if control["dir"] == str(self.dir / "lr_control"):
                        self.run_setting("lr_control", self.config.lr_control_options())
                    timings["lr_control"] = time.perf_counter() - start
        start = time.perf_counter()
        self.analyze([r["dir"] for r in runs.values()] + ([control["dir"]] if control else []))
        timings["analyze"] = time.perf_counter() - start
        return write_summary(self.dir, self.config, chosen, runs, control, timings)

    # ------------------------------------------------------------------ select

    def selection_experiment(self, mode: str) -> Experiment:
        c = self.config
        options = {**c.setting_options(c.worlds[0], mode, {}), "name": "select", "methods": ["oracle"],
                   "seeds": [c.selection_seed], "validation_limit": c.selection_validation_limit, "lr_sweep": {},
                   "criteria": []}  # the oracle alone: the study's criteria are judged in its settings
        return Experiment(ExperimentConfig(**options), self.dir / "select", progress=self.progress)

    def select(self, mode: str) -> dict:
        """The mode's grid point with the oracle's best target validation accuracy (first world, one seed)."""
        exp = self.selection_experiment(mode)
        exp.resolve_base()
        exp.write_plan()  # its base model's key and where it was made: the selection resumes in another clone
        exp.prepare_data()
        exp.score_data()
        base_accuracy = self.base_validation_accuracy(exp)
        trials = []
        for point in grid_points(self.config.modes[mode]):
            overrides = (("mask", "none"), *sorted(point.items()))
            variant = Variant(point_name(mode, point), "oracle", "oracle", overrides)
            accuracy = self.recorded_validation_accuracy(exp, variant, self.config.selection_seed)
            if accuracy is None:  # a trial measured for its key needs no weights: nothing is trained again
                exp.train_variant(variant, self.config.selection_seed)
                accuracy = self.trained_validation_accuracy(exp, variant, self.config.selection_seed)
            trials.append({"name": variant.name, "options": point, "validation_accuracy": accuracy,
                           "gain": accuracy - base_accuracy})
        best = max(trials, key=lambda t: t["validation_accuracy"])  # max keeps the first of equal values
        logger.info("[select %s] %s: validation accuracy %.3f (base %.3f)", mode, best["name"],
                    best["validation_accuracy"], base_accuracy)
        return {"options": best["options"], "name": best["name"], "base_validation_accuracy": base_accuracy,
                "trials": trials}

    def recorded_validation_accuracy(self, exp: Experiment, variant: Variant, seed: int) -> float | None:
        """A trial's validation accuracy as recorded for its current training key (the train summary's selected
        epoch, or the last epoch's cached measure), read without its weights; None when not recorded."""
        if not is_done(exp.run_dir.model_dir(variant.name, seed), exp.train_key(variant, seed)):
            return None
        summary = exp.run_dir.train_summary(variant.name, seed)
        if summary["best_metric"] is not None:
            return summary["best_metric"]
        path, key = self.validation_cache(exp, variant, seed)
        if path.exists() and json.loads(path.read_text())["key"] == key:
            return json.loads(path.read_text())["accuracy"]
        return None

    @staticmethod
    def validation_cache(exp: Experiment, variant: Variant, seed: int) -> tuple[Path, str]:
        """Where a trial's last-epoch validation accuracy is cached (beside its model), and the key it is valid for."""
        key = stable_hash([exp.train_key(variant, seed), exp.config.validation_limit,
                           exp.task_versions([exp.config.target])])
        return exp.run_dir.model_dir(variant.name, seed) / "validation_accuracy.json", key

    def trained_validation_accuracy(self, exp: Experiment, variant: Variant, seed: int) -> float:
        """A trial's target validation accuracy at the study's endpoint: the selected epoch's when the experiment
        selects one (measured during training), else the last epoch's, measured once and cached beside the model."""
        recorded = self.recorded_validation_accuracy(exp, variant, seed)
        if recorded is not None:
            return recorded
        path, key = self.validation_cache(exp, variant, seed)
        base, adapter = trained_model_parts(exp.base, exp.run_dir.final_model_dir(variant.name, seed))
        accuracy = exp.validation_accuracy_fn()(load_model(base, adapter=adapter, merge=True))["accuracy"]
        write_json(path, {"key": key, "accuracy": accuracy})
        return accuracy

    def base_validation_accuracy(self, exp: Experiment) -> float:
        path = exp.run_dir.base_validation_file
        key = stable_hash([exp.base_key, exp.config.target, exp.config.validation_limit,
                           exp.task_versions([exp.config.target])])
        if path.exists() and json.loads(path.read_text())["key"] == key:
            return json.loads(path.read_text())["accuracy"]
        accuracy = exp.validation_accuracy_fn()(exp.loaded_base()[0])["accuracy"]
        write_json(path, {"key": key, "accuracy": accuracy})
        return accuracy

    # ------------------------------------------------------------------ settings

    def run_setting(self, name: str, options: dict) -> dict:
        logger.info("[study] setting %s", name)
        return Experiment(ExperimentConfig(**options), self.dir / name, progress=self.progress).run()

    def lr_control_run(self, runs: dict) -> dict | None:
        """The learning-rate control's run: its own, or the setting whose options it equals."""
        if not self.config.lr_control:
            return None
        # the criteria only judge a run's numbers: a setting that differs in them alone is the same run
        control = {**asdict(ExperimentConfig(**self.config.lr_control_options())), "criteria": []}
        for name, run in runs.items():
            setting = RunDir(run["dir"]).read_config()
            if {**setting, "name": "lr_control", "criteria": []} == control:
                return {"dir": run["dir"], "same_as": name}
        return {"dir": str(self.dir / "lr_control"), "same_as": None}

    # ------------------------------------------------------------------ analyze

    def analyze(self, run_dirs: list[str]) -> dict[str, dict]:
        """analyze_run on every run, in workers as the runs' units ran (`experiment.executor` / `workers`); each
        writes its run's analysis.json, which the summary reads."""
        executor = ExperimentConfig(**self.config.experiment).executor
        if executor.executor == "local":
            executor = replace(executor, workers=min(executor.workers, len(run_dirs)))
            if executor.workers <= 1:
                return {d: analyze_run(d, kl_limit=self.config.kl_limit, progress=self.progress) for d in run_dirs}
        calls = [(d, self.config.kl_limit, False) for d in run_dirs]
        analyses = run_calls(analyze_run, calls, executor, setup=worker_setup,
                             setup_args=(unit_threads(executor), []), progress=self.progress, desc="analyze")
        return dict(zip(run_dirs, analyses))


def describe_study(config: StudyConfig, out: str | Path) -> str:
    """The study's stages and runs, without loading any model."""
    lines = [f"study {config.name!r} in {out}", f"  worlds {config.worlds}; modes {', '.join(config.modes)}",
             "stages:"]
    for mode, spec in config.modes.items():
        points = [point_name(mode, p) for p in grid_points(spec)]
        lines.append(f"  select    {mode}: {len(points)} oracle fine-tunes on world {config.worlds[0]} "
                     f"({', '.join(points)}), best validation accuracy wins")
    units = 0
    for world in config.worlds:
        for mode in config.modes:
            options = config.setting_options(world, mode, grid_points(config.modes[mode])[0])
            exp = Experiment(ExperimentConfig(**options), Path(out) / f"w{world}-{mode}", progress=False)
            n = len(exp.variants) * len(exp.config.seeds)
            units += n
            lines.append(f"  run       {exp.dir}  [{len(exp.variants)} variants x {len(exp.config.seeds)} seeds]")
    if config.lr_control:
        exp = Experiment(ExperimentConfig(**config.lr_control_options()), Path(out) / "lr_control", progress=False)
        lines.append(f"  run       {exp.dir}  [{', '.join(v.name for v in exp.variants)}; unless a setting is the same]")
        units += len(exp.variants) * len(exp.config.seeds)
    lines += ["  analyze   every run's fine-tuned models", f"  summary   {Path(out) / 'study.json'}, study.md, figures/",
              f"about {units} fine-tunes + evaluations, plus the selection"]
    return "\n".join(lines)


def run_study(config: StudyConfig | str | Path, out: str | Path, progress: bool = True) -> dict:
    if not isinstance(config, StudyConfig):
        config = load_study_config(config)
    return Study(config, out, progress).run()


@dataclass
class StudyCommandConfig:
    """Options of `robust-sft study CONFIG.yaml`."""

    config: str = field(metadata={"help": "Study YAML: a file, or the shipped study/study.yaml (it documents every option)."})
    out: str | None = field(default=None, metadata={"help": "Study directory (default: runs/<name>); re-running resumes."})
    docs: str | None = field(default=None, metadata={"help": "Also copy the summary, figures and each run's report, "
                                                             "results and analysis (no models) here."})
    dry_run: bool = field(default=False, metadata={"help": "Validate the config and print the settings; load nothing."})


def study(config: StudyCommandConfig) -> tuple[str, Path | None]:
    """`robust-sft study`: run (or, with dry_run, describe) the study; returns the text to show (study.md, or the
    settings) and where it was published (`docs`), if asked."""
    try:
        study_config = load_study_config(config.config)
    except ValueError as err:
        raise ValueError(f"{config.config}: {err}") from err
    out = config.out or f"runs/{study_config.name}"
    if config.dry_run:
        return describe_study(study_config, out), None
    if config.docs:
        check_publish_target(config.docs)  # now, not after the study's hours of work
    run_study(study_config, out)
    summary = (Path(out) / "study.md").read_text()
    return summary, publish(out, config.docs) if config.docs else None
