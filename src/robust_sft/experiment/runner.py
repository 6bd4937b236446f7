"""`robust-sft run CONFIG.yaml`: the paper's experiment as stages with cached, resumable artifacts.

Stages, each writing into the run directory:
  base      the model to fine-tune (the organism is built and cached; a Hub/local path is used as is)
  plan      plan.json: the base model and its key, the tasks, every variant's policy and train options
  data      data/<source>.jsonl: GT from the target task; Self-Output and Rephrase generated + verified
  score     scores/<source>.parquet: token NLL of every training set under the base model
  train     models/<variant>/seed<k>/: one trainer for every method, best epoch by target validation accuracy
  evaluate  eval/base/ and eval/<variant>/seed<k>/: accuracies + per-sample logs
  report    results.json, report.md, figures/, report.html: from the run directory alone (robust_sft.report)

The layout of the run directory is robust_sft.core.rundir's. Every artifact has a key (a hash of everything it depends on) stored beside it; a stage whose artifact
exists with the same key is skipped. A killed run therefore resumes where it stopped, and adding a method
or a seed to the config trains only what is new.
"""

from __future__ import annotations

import importlib
import json
import logging
import os
from dataclasses import asdict, dataclass, field
from pathlib import Path

from robust_sft.core.artifacts import WriteError, check_own_dir, dir_lock, write_json
from robust_sft.core.cache import cache_root
from robust_sft.core.hashing import base_model_key
from robust_sft.core.rundir import NotARunError, RunDir
from robust_sft.executors import ExecutorConfig, run_calls
from robust_sft.experiment.config import ExperimentConfig, load_config
from robust_sft.experiment.describe import describe_plan
from robust_sft.experiment.inputs import InputStages
from robust_sft.experiment.plan import Variant, plan_variants, run_plan, sources_needed, variant_plan
from robust_sft.experiment.stages import run_stage
from robust_sft.experiment.units import UnitStages
from robust_sft.models.gguf import gguf_reference
from robust_sft.models.loading import load_model, load_tokenizer
from robust_sft.models.sources import model_source
from robust_sft.report.criteria import check_criteria_variants
from robust_sft.report.write import write_report
from robust_sft.tasks import get_task
from robust_sft.tasks.base import Task, has_answer_span, task_version

__all__ = ["Experiment", "ExperimentConfig", "RunConfig", "Variant", "load_config", "plan_variants", "run",
           "run_experiment", "run_stage"]

logger = logging.getLogger(__name__)


class Experiment(InputStages, UnitStages):
    """A run: its config, the run directory, the resolved base model and tasks; the stages are in inputs.py (data,
    scores, base evaluation) and units.py (one fine-tune and its evaluation)."""

    def __init__(self, config: ExperimentConfig, run_dir: str | Path, progress: bool = True):
        self.config = config
        self.dir = Path(run_dir)
        self.run_dir = RunDir(self.dir)
        self.progress = progress
        self.variants = plan_variants(config)
        self.sources = sources_needed(self.variants)
        self.source = model_source(config.model)  # None: a Hub name or a local path
        self._loaded = None
        self.check_options()

    def check_options(self) -> None:
        """Build every task, training and generation configuration of the run now, so that a value their
        own checks refuse fails before anything is scored or trained (and `--dry_run` catches it)."""
        from robust_sft.data.synthesis import GenerationSettings  # imports torch

        check_criteria_variants(self.config.criteria, [v.name for v in self.variants],
                                gt_rates=sum(v.method == "gt" and v.source == "gt" for v in self.variants))
        for task_name in [self.config.target, *self.config.others]:
            self.get_task(task_name)
        target = self.get_task(self.config.target)
        if "oracle" in self.config.methods and not can_write_oracle(target):
            raise ValueError(f"method oracle: task {self.config.target} cannot write answers in the model's own "
                             "style (only the organism's tasks can); remove oracle from `methods`")
        if "answer_aware" in self.config.methods and not has_answer_span(target):
            raise ValueError(f"method answer_aware: task {self.config.target} does not say where its checker reads "
                             "(it defines no Task.answer_span); remove answer_aware from `methods`")
        if "hindsight" in self.config.methods and type(target).hint is Task.hint:
            raise ValueError(f"method hindsight: task {self.config.target} gives no hint (it defines no Task.hint); "
                             "remove hindsight from `methods`")
        GenerationSettings(**self.config.generation)
        for variant in self.variants:
            for seed in self.config.seeds:
                try:
                    self.train_config(variant, seed, self.config.model)
                except ValueError as err:
                    raise ValueError(f"train options of {variant.name} seed {seed}: {err}") from None

    # ------------------------------------------------------------------ base model and tasks

    def base_model(self) -> str:
        """The model's local path: a named source's (built or shipped), or the config's name or path as is (a
        .gguf file's path with `gguf_file`: every loader takes it)."""
        if self.source is None:
            return gguf_reference(self.config.model, self.config.gguf_file)
        return self.source.path(self.config.world, self.progress)

    def other_tasks(self) -> list[str]:
        """The config's other tasks; by default, in name order, the model source's tasks but the target."""
        if self.config.others:
            return list(self.config.others)
        if self.source is None:
            raise ValueError(f"`others` (the non-target tasks) must be given: model {self.config.model!r} is a "
                             "name or path, not a model source that brings its own tasks")
        return sorted(t for t in self.source.tasks if t != self.config.target)

    def task_kwargs(self, task_name: str) -> dict:
        """A source's own tasks take its world: they must be the world its model learned."""
        return {} if self.source is None else self.source.task_options(task_name, self.config.world)

    def get_task(self, task_name: str):
        return get_task(task_name, **self.task_kwargs(task_name))

    def task_versions(self, task_names: list[str]) -> dict[str, str]:
        """Each task's version (a hash of its prompt and checker code): part of every key that used the task."""
        return {name: task_version(self.get_task(name)) for name in task_names}

    def load_examples(self, task_name: str, split: str, limit: int | None) -> list[dict]:
        return self.get_task(task_name).load(split, limit=limit, path=self.config.task_paths.get(task_name))

    def sampler(self, adapter: str | None = None, full_model: str | None = None):
        """The generation backend: HF generate on the loaded model, or vLLM from the model path."""
        from robust_sft.data.synthesis import vllm_sampler  # imports torch

        if self.config.backend == "vllm":
            return vllm_sampler(full_model or self.base, adapter_path=adapter, progress=self.progress)
        return None  # synthesis/evaluation default: HF generate on the model given

    def loaded_base(self):
        """The base model and tokenizer in memory (generation and evaluation share them)."""
        if self._loaded is None:
            self._loaded = (load_model(self.base), load_tokenizer(self.base))
        return self._loaded

    def eval_limits(self) -> dict[str, int | None]:
        """Test examples per task: the target may get more (its TI is the noisier measure)."""
        limits = {task: self.config.eval_limit for task in self.tasks}
        if self.config.target_eval_limit is not None:
            limits[self.config.target] = self.config.target_eval_limit
        return limits

    def describe_plan(self) -> str:
        return describe_plan(self)

    # ------------------------------------------------------------------ the run

    def run(self) -> dict:
        """Every stage, holding the run directory's lock: a second run on it stops at once, saying so."""
        check_run_dir(self.dir)
        with dir_lock(self.run_dir.lock_file, f"run directory {self.dir}"):
            return self._run()

    def _run(self) -> dict:
        write_json(self.run_dir.config_file, asdict(self.config))
        self.resolve_base()
        self.write_plan()
        self.prepare_data()
        self.score_data()
        self.evaluate_base()
        units = [(variant, seed) for variant in self.variants for seed in self.config.seeds]
        if self.config.executor.executor == "local" and self.config.executor.workers == 1:
            for variant, seed in units:
                self.run_unit(variant, seed)
        else:
            run_units_in_workers(self, units)
        return write_report(self.dir)

    def resolve_base(self) -> None:
        """The base model's path and key, and the evaluated tasks: what every stage after data needs."""
        self.base = self.base_model()
        # The package and the model cache: a base model under one of them moves with it (another clone or home),
        # and a run directory made before the move keeps its keys (core/hashing.py).
        roots = [Path(__file__).resolve().parents[1], cache_root()]
        self.base_key, self.base_keyed_path = base_model_key(self.base, self.recorded_base(), roots)
        if self.base_keyed_path != self.base:
            logger.info("base model %s: the run's keys were made where it lay at %s (same model): kept",
                        self.base, self.base_keyed_path)
        self.tasks = [self.config.target, *self.other_tasks()]

    def recorded_base(self) -> dict | None:
        """plan.json's base_model entry of an earlier run in this directory, if any."""
        plan = self.run_dir.plan_file
        if not plan.exists():
            return None
        try:
            base = self.run_dir.read_plan()["base_model"]
            if not isinstance(base, dict):
                raise TypeError(f"base_model is {base!r}")
        except (ValueError, KeyError, TypeError, NotARunError) as err:
            raise ValueError(f"{plan}: not a readable plan ({err}); remove it to key the run by the base model's "
                             "present path") from None
        return base

    def plan(self) -> dict:
        """plan.json's document: the resolved run, every variant as its units will train it."""
        variants = [variant_plan(v, {seed: self.train_config(v, seed, self.base) for seed in self.config.seeds},
                                 self.dir) for v in self.variants]
        return run_plan(self.config, base=self.base, base_key=self.base_key, keyed_path=self.base_keyed_path,
                        tasks=self.tasks, task_kwargs={t: self.task_kwargs(t) for t in self.tasks},
                        sources=self.sources, variants=variants)

    def write_plan(self) -> None:
        """plan.json, before any unit runs: what the report, the analysis and the study read of the run."""
        write_json(self.run_dir.plan_file, self.plan())


def check_run_dir(path: Path) -> None:
    """A run writes only into a new or empty directory, or one of its own (whose config.json is a run's)."""
    config = RunDir(path).config_file
    check_own_dir(path, config.name, "run directory")
    try:
        ours = not config.exists() or {"name", "methods", "target"} <= set(json.loads(config.read_text()))
    except (ValueError, TypeError):  # not JSON, or JSON that is no mapping
        ours = False
    if not ours:
        raise WriteError(f"{path}: not a run directory (its config.json is not a run's); refusing to write into it: "
                         "choose a new or empty directory")


def can_write_oracle(task) -> bool:
    """Whether a task overrides `Task.oracle_reference` (the organism's do; benchmarks cannot)."""
    return type(task).oracle_reference is not Task.oracle_reference


def run_units_in_workers(exp: Experiment, units: list[tuple[Variant, int]]) -> None:
    """Run (variant, seed) units in worker processes: local ones, or Ray tasks (`exp.config.executor`).

    Locally the machine's cores are split between the workers: tiny models use a second thread poorly, so two
    one-thread processes finish about twice the work of one two-thread process. Each unit reads its inputs from
    the run directory and writes its own keyed stages, so the outcome does not depend on where or in which order
    units run, and a unit rerun after its worker died resumes from what it had written.
    """
    # Tasks registered by the caller's own modules (not only the built-in ones) must exist in the workers too.
    task_modules = sorted({type(exp.get_task(name)).__module__ for name in exp.tasks})
    calls = [(exp.config, str(exp.dir), v.name, seed) for v, seed in units]
    done = run_calls(run_unit_in_worker, calls, exp.config.executor, setup=worker_setup,
                     setup_args=(unit_threads(exp.config.executor), task_modules), progress=exp.progress,
                     desc="fine-tune + evaluate")
    logger.info("[units] done: %s", ", ".join(done))


def unit_threads(executor: ExecutorConfig) -> int:
    """Torch threads of one unit: its share of this machine's cores, or the CPUs Ray reserved for it."""
    if executor.executor == "ray":
        return max(1, int(executor.cpus_per_unit))
    return max(1, len(os.sched_getaffinity(0)) // executor.workers)


def worker_setup(threads: int, task_modules: list[str]) -> None:
    """Run once in each worker process: its threads, and the modules that register its tasks (caller's too)."""
    import torch

    torch.set_num_threads(threads)
    for module in task_modules:
        importlib.import_module(module)


def run_unit_in_worker(config: ExperimentConfig, run_dir: str, variant_name: str, seed: int) -> str:
    """One (variant, seed) unit from the run directory alone: what a worker process (or machine) runs."""
    exp = Experiment(config, run_dir, progress=False)
    exp.resolve_base()
    exp.run_unit(next(v for v in exp.variants if v.name == variant_name), seed)
    return f"{variant_name} seed {seed}"


def run_experiment(config: ExperimentConfig | str | Path, run_dir: str | Path, progress: bool = True) -> dict:
    if not isinstance(config, ExperimentConfig):
        config = load_config(config)
    return Experiment(config, run_dir, progress).run()


@dataclass
class RunConfig:
    """Options of `robust-sft run CONFIG.yaml`."""

    config: str = field(metadata={"help": "Experiment YAML: a file, or a shipped config by name (demo.yaml, "
                                          "paper/gemma-2-2b-it_mbpp.yaml; demo.yaml documents every option)."})
    out: str | None = field(default=None, metadata={"help": "Run directory (default: runs/<name>)."})
    dry_run: bool = field(default=False, metadata={"help": "Validate the config and print the plan; load nothing."})
    quick: bool = field(default=False, metadata={"help": "The config's smaller first look: its `quick:` fields "
                                                         "replace the config's (default run directory "
                                                         "runs/<name>-quick)."})


def run(config: RunConfig) -> tuple[Experiment, dict | None]:
    """`robust-sft run`: the experiment (every stage's options checked now, so a bad value fails here and in
    --dry_run, not hours later) and its results; None for a dry run, which loads nothing."""
    experiment_config = load_config(config.config, quick=config.quick)
    try:
        experiment = Experiment(experiment_config, config.out or f"runs/{experiment_config.name}")
    except ValueError as err:
        raise ValueError(f"{config.config}: {err}") from err
    return experiment, None if config.dry_run else experiment.run()
