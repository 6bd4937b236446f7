"""`robust-sft run CONFIG.yaml`: the paper's experiment as stages with cached, resumable artifacts.

Stages, each writing into the run directory:
  base      the model to fine-tune (the organism is built and cached; a Hub/local path is used as is)
  data      data/<source>.jsonl: GT from the target task; Self-Output and Rephrase generated + verified
  score     scores/<source>.parquet: token NLL of every training set under the base model
  train     models/<variant>/seed<k>/: one trainer for every method, best epoch by target validation accuracy
  evaluate  eval/base/ and eval/<variant>/seed<k>/: accuracies + per-sample logs
  report    results.json, report.md, figures/

Every artifact has a key (a hash of everything it depends on) stored beside it; a stage whose artifact
exists with the same key is skipped. A killed run therefore resumes where it stopped, and adding a method
or a seed to the config trains only what is new.
"""

from __future__ import annotations

import importlib
import json
import logging
import os
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

from robust_sft.core.artifacts import LOCK_NAME, WriteError, check_own_dir, dir_lock, write_json, write_jsonl
from robust_sft.core.hashing import file_hash, model_fingerprint, stable_hash
from robust_sft.executors import ExecutorConfig, run_calls
from robust_sft.experiment.config import ORGANISM, ExperimentConfig, load_config
from robust_sft.experiment.plan import Variant, plan_variants, sources_needed
from robust_sft.experiment.stages import run_stage

logger = logging.getLogger(__name__)


# --------------------------------------------------------------------------------------------- variants


# --------------------------------------------------------------------------------------------- caching


# --------------------------------------------------------------------------------------------- the runner


class Experiment:
    def __init__(self, config: ExperimentConfig, run_dir: str | Path, progress: bool = True):
        self.config = config
        self.dir = Path(run_dir)
        self.progress = progress
        self.variants = plan_variants(config)
        self.sources = sources_needed(self.variants)
        self._loaded = None
        self.check_options()

    def check_options(self) -> None:
        """Build every task, training and generation configuration of the run now, so that a value their
        own checks refuse fails before anything is scored or trained (and `--dry_run` catches it)."""
        from robust_sft.data.synthesis import GenerationSettings

        for task_name in [self.config.target, *self.config.others]:
            self.get_task(task_name)
        if "oracle" in self.config.methods and not can_write_oracle(self.get_task(self.config.target)):
            raise ValueError(f"method oracle: task {self.config.target} cannot write answers in the model's own "
                             "style (only the organism's tasks can); remove oracle from `methods`")
        GenerationSettings(**self.config.generation)
        for variant in self.variants:
            for seed in self.config.seeds:
                try:
                    self.train_config(variant, seed, self.config.model)
                except ValueError as err:
                    raise ValueError(f"train options of {variant.name} seed {seed}: {err}") from None

    # ------------------------------------------------------------------ base model and tasks

    def base_model(self) -> str:
        if self.config.model != ORGANISM:
            return self.config.model
        from robust_sft.organism.base_model import base_model_path

        return str(base_model_path(seed=self.config.organism_seed, progress=self.progress))

    def other_tasks(self) -> list[str]:
        if self.config.others:
            return list(self.config.others)
        if self.config.model != ORGANISM:
            raise ValueError("`others` (the non-target tasks) must be given for a model other than the organism")
        from robust_sft.tasks import list_tasks

        return [t for t in list_tasks() if t.startswith("organism/") and t != self.config.target]

    def task_kwargs(self, task_name: str) -> dict:
        """Organism tasks take the organism's seed: their world must be the one the base model learned."""
        return {"seed": self.config.organism_seed} if task_name.startswith("organism/") else {}

    def get_task(self, task_name: str):
        from robust_sft.tasks import get_task

        return get_task(task_name, **self.task_kwargs(task_name))

    def task_versions(self, task_names: list[str]) -> dict[str, str]:
        """Each task's version (a hash of its prompt and checker code): part of every key that used the task."""
        from robust_sft.tasks.base import task_version

        return {name: task_version(self.get_task(name)) for name in task_names}

    def load_examples(self, task_name: str, split: str, limit: int | None) -> list[dict]:
        return self.get_task(task_name).load(split, limit=limit, path=self.config.task_paths.get(task_name))

    def sampler(self, adapter: str | None = None, full_model: str | None = None):
        """The generation backend: HF generate on the loaded model, or vLLM from the model path."""
        from robust_sft.data.synthesis import vllm_sampler

        if self.config.backend == "vllm":
            return vllm_sampler(full_model or self.base, adapter_path=adapter, progress=self.progress)
        return None  # synthesis/evaluation default: HF generate on the model given

    def loaded_base(self):
        """The base model and tokenizer in memory (generation and evaluation share them)."""
        if self._loaded is None:
            from robust_sft.models.loading import load_model, load_tokenizer

            self._loaded = (load_model(self.base), load_tokenizer(self.base))
        return self._loaded

    def describe_plan(self) -> str:
        """The stages and artifacts this config would produce, with example counts where knowable; loads no model."""
        c = self.config
        tasks = [c.target, *self.other_tasks()]
        lines = [f"experiment {c.name!r} in {self.dir}",
                 f"  model: {c.model}" + (f" (world {c.organism_seed}: shipped with the package, or built and cached "
                                           "on first use)" if c.model == ORGANISM else ""),
                 f"  target: {c.target}; other tasks: {', '.join(tasks[1:])}",
                 f"  seeds: {c.seeds}; epoch selection: "
                 + ("best target validation accuracy" if c.select_best_epoch else "last epoch"),
                 f"  (variant, seed) units run {c.executor.describe()}"]
        try:
            n_train = len(self.load_examples(c.target, "train", c.train_limit))
            lines.append(f"  target train examples: {n_train}")
        except Exception as err:  # e.g. a Hub dataset while offline: the plan is still valid
            lines.append(f"  target train examples: unknown here ({type(err).__name__}: {str(err)[:120]})")
        lines.append("stages:")
        for source in self.sources:
            made = {"gt": "from the target's references", "oracle": "the target's answers in the model's own style"
                    }.get(source, f"generated ({source}), verified")
            lines.append(f"  data      {self.data_path(source)}  [{made}]")
        for source in self.sources:
            lines.append(f"  score     {self.scores_path(source)}")
        lines.append(f"  evaluate  {self.dir / 'eval' / 'base'}  [{len(tasks)} tasks]")
        for v in self.variants:
            overrides = ", ".join(f"{k}={val}" for k, val in v.train_overrides)
            for seed in c.seeds:
                lines.append(f"  train     {self.model_dir(v, seed)}  [{v.source}; {overrides}]")
                lines.append(f"  evaluate  {self.eval_dir(v, seed)}")
        lines.append(f"  report    {self.dir / 'results.json'}, {self.dir / 'report.md'}, {self.dir / 'figures'}/")
        lines.append(f"{len(self.variants)} variants x {len(c.seeds)} seeds = "
                     f"{len(self.variants) * len(c.seeds)} fine-tuning runs")
        return "\n".join(lines)

    # ------------------------------------------------------------------ stages

    def run(self) -> dict:
        """Every stage, holding the run directory's lock: a second run on it stops at once, saying so."""
        check_run_dir(self.dir)
        with dir_lock(self.dir / LOCK_NAME, f"run directory {self.dir}"):
            return self._run()

    def _run(self) -> dict:
        from robust_sft.report.write import write_report

        write_json(self.dir / "config.json", asdict(self.config))
        self.resolve_base()
        costs = self.prepare_data()
        self.score_data(costs)
        self.evaluate_base()
        units = [(variant, seed) for variant in self.variants for seed in self.config.seeds]
        if self.config.executor.executor == "local" and self.config.executor.workers == 1:
            for variant, seed in units:
                self.run_unit(variant, seed)
        else:
            run_units_in_workers(self, units)
        return write_report(self, costs)

    def resolve_base(self) -> None:
        """The base model's path and key, and the evaluated tasks: what every stage after data needs."""
        self.base = self.base_model()
        self.base_key = stable_hash([self.base, model_fingerprint(self.base)])
        self.tasks = [self.config.target, *self.other_tasks()]

    def run_unit(self, variant: Variant, seed: int) -> None:
        """One fine-tuning run and its evaluation: independent of every other unit once data is scored.

        Each unit holds its own lock, so no two processes ever train into the same model directory."""
        with dir_lock(self.dir / "locks" / f"{variant.name}-seed{seed}.lock", f"{variant.name} seed {seed}"):
            self.train_variant(variant, seed)
            self.evaluate_variant(variant, seed)

    def eval_limits(self) -> dict[str, int | None]:
        """Test examples per task: the target may get more (its TI is the noisier measure)."""
        limits = {task: self.config.eval_limit for task in self.tasks}
        if self.config.target_eval_limit is not None:
            limits[self.config.target] = self.config.target_eval_limit
        return limits

    def data_path(self, source: str) -> Path:
        return self.dir / "data" / f"{source}.jsonl"

    def scores_path(self, source: str) -> Path:
        return self.dir / "scores" / f"{source}.parquet"

    def prepare_data(self) -> dict[str, float]:
        """GT rows from the target task, and generated Self-Output / Rephrase rows; returns seconds per source."""
        from robust_sft.data.synthesis import MAKERS, GenerationSettings, report_path, write_generated_data

        task = self.get_task(self.config.target)
        examples = self.load_examples(self.config.target, "train", self.config.train_limit)
        gt_key = stable_hash([self.base_key, self.config.target, self.config.train_limit, self.config.task_paths,
                              self.task_versions([self.config.target])])
        run_stage("data gt", self.data_path("gt"), gt_key, lambda: write_jsonl(self.data_path("gt"), [
            {"id": e["id"], "prompt": task.prompt(e), "answer": task.reference(e)} for e in examples]))
        costs = {"gt": 0.0}
        if "oracle" in self.sources:
            rows = [{"id": e["id"], "prompt": task.prompt(e), "answer": task.oracle_reference(e)} for e in examples]
            missing = [r["id"] for r in rows if r["answer"] is None]
            if missing:
                raise ValueError(f"method oracle: task {self.config.target} wrote no answer in the model's own "
                                 f"style for {len(missing)} example(s), e.g. {missing[0]}")
            run_stage("data oracle", self.data_path("oracle"), stable_hash([gt_key, "oracle"]),
                      lambda: write_jsonl(self.data_path("oracle"), rows))
            costs["oracle"] = 0.0
        settings = GenerationSettings(**self.config.generation)
        for source in self.sources:
            if source not in MAKERS:
                continue
            path = self.data_path(source)

            def produce(source=source, path=path):
                model, tokenizer = self.loaded_base()
                write_generated_data(source, model, tokenizer, task, examples, settings, path, sampler=self.sampler())

            run_stage(f"data {source}", path, stable_hash([gt_key, source, asdict(settings)]), produce)
            costs[source] = json.loads(report_path(path).read_text())["seconds"]
        return costs

    def score_data(self, costs: dict[str, float]) -> None:
        from robust_sft.scoring.token_nll import ScoreConfig, score

        for source in self.sources:
            out = self.scores_path(source)
            key = stable_hash([self.base_key, file_hash(self.data_path(source))])

            def produce(source=source, out=out):
                start = time.perf_counter()
                score(ScoreConfig(model=self.base, data=str(self.data_path(source)), out=str(out),
                                  progress=self.progress))
                write_json(out.with_name(out.name + ".seconds.json"), {"seconds": time.perf_counter() - start})

            run_stage(f"score {source}", out, key, produce)
            costs[f"score_{source}"] = json.loads(out.with_name(out.name + ".seconds.json").read_text())["seconds"]

    def evaluate_base(self) -> None:
        out = self.dir / "eval" / "base"
        key = stable_hash([self.base_key, self.tasks, self.eval_limits(), self.config.task_paths,
                           self.config.backend, self.task_versions(self.tasks)])

        def produce():
            from robust_sft.evaluation.engine import evaluate_tasks
            from robust_sft.models.loading import load_tokenizer

            # With vLLM the transformers model is not needed here, and would take GPU memory from vLLM.
            model = self.loaded_base()[0] if self.config.backend == "hf" else None
            evaluate_tasks(model, load_tokenizer(self.base), self.tasks, limit=self.eval_limits(),
                           batch_size=self.config.eval_batch_size, log_dir=out, progress=self.progress,
                           task_paths=self.config.task_paths, sampler=self.sampler(),
                           task_kwargs={t: self.task_kwargs(t) for t in self.tasks})

        run_stage("evaluate base", out, key, produce)

    def model_dir(self, variant: Variant, seed: int) -> Path:
        return self.dir / "models" / variant.name / f"seed{seed}"

    def train_options(self, variant: Variant, seed: int) -> dict:
        """TrainConfig options of one run: the config's, the variant's, and per-seed ones."""
        options = {**self.config.train, **dict(variant.train_overrides)}
        if variant.method == "stm_random":
            options["mask_seed"] = seed  # a new random mask per seed: the spread includes the mask's
        return options

    def train_key(self, variant: Variant, seed: int) -> str:
        # The target's checker picks the best epoch, so its version is part of the trained model's key.
        return stable_hash([self.base_key, file_hash(self.scores_path(variant.source)), variant.name, seed,
                            self.train_options(variant, seed), self.config.select_best_epoch,
                            self.config.validation_limit, self.config.task_paths,
                            self.task_versions([self.config.target])])

    def train_config(self, variant: Variant, seed: int, base: str):
        from robust_sft.training.trainer import TrainConfig

        return TrainConfig(model=base, data=str(self.scores_path(variant.source)),
                           output_dir=str(self.model_dir(variant, seed)), seed=seed, progress=self.progress,
                           **self.train_options(variant, seed))

    def train_variant(self, variant: Variant, seed: int) -> None:
        from robust_sft.training.trainer import train

        out = self.model_dir(variant, seed)

        def produce():
            config = self.train_config(variant, seed, self.base)
            if any(out.glob("checkpoint-*")):
                config.resume_from_checkpoint = "latest"  # this stage was killed after saving an epoch
            if not self.config.select_best_epoch:
                train(config)
                return
            train(config, eval_fn=self.validation_accuracy_fn(), best_metric="accuracy", greater_is_better=True)

        run_stage(f"train {variant.name} seed {seed}", out, self.train_key(variant, seed), produce)

    def validation_accuracy_fn(self):
        """Target-task validation accuracy (greedy), evaluated at each epoch end to pick the best epoch."""
        from robust_sft.evaluation.engine import evaluate_task
        from robust_sft.models.loading import load_tokenizer

        task = self.get_task(self.config.target)
        examples = self.load_examples(self.config.target, "validation", self.config.validation_limit)
        tokenizer = load_tokenizer(self.base)

        def accuracy(model) -> dict:
            was_training = model.training
            model.eval()
            score = evaluate_task(model, tokenizer, task, examples, batch_size=self.config.eval_batch_size,
                                  progress=False)
            model.train(was_training)
            return {"accuracy": score.accuracy}

        return accuracy

    def eval_dir(self, variant: Variant, seed: int) -> Path:
        return self.dir / "eval" / variant.name / f"seed{seed}"

    def evaluate_variant(self, variant: Variant, seed: int) -> None:
        out = self.eval_dir(variant, seed)
        key = stable_hash([self.train_key(variant, seed), self.tasks, self.eval_limits(),
                           self.config.task_paths, self.config.backend, self.task_versions(self.tasks)])

        def produce():
            from robust_sft.evaluation.model import evaluate_model
            from robust_sft.models.loading import trained_model_parts

            model, adapter = trained_model_parts(self.base, self.model_dir(variant, seed) / "final")
            evaluate_model(model, self.tasks, adapter=adapter, tokenizer=self.base, backend=self.config.backend,
                           merge=True, progress=self.progress, limit=self.eval_limits(),
                           batch_size=self.config.eval_batch_size, log_dir=out, task_paths=self.config.task_paths,
                           task_kwargs={t: self.task_kwargs(t) for t in self.tasks})

        run_stage(f"evaluate {variant.name} seed {seed}", out, key, produce)


def check_run_dir(path: Path) -> None:
    """A run writes only into a new or empty directory, or one of its own (whose config.json is a run's)."""
    check_own_dir(path, "config.json", "run directory")
    config = path / "config.json"
    try:
        ours = not config.exists() or {"name", "methods", "target"} <= set(json.loads(config.read_text()))
    except (ValueError, TypeError):  # not JSON, or JSON that is no mapping
        ours = False
    if not ours:
        raise WriteError(f"{path}: not a run directory (its config.json is not a run's); refusing to write into it: "
                         "choose a new or empty directory")


def can_write_oracle(task) -> bool:
    """Whether a task overrides `Task.oracle_reference` (the organism's do; benchmarks cannot)."""
    from robust_sft.tasks.base import Task

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

    config: str = field(metadata={"help": "Experiment YAML (src/robust_sft/configs/demo.yaml documents every option)."})
    out: str | None = field(default=None, metadata={"help": "Run directory (default: runs/<name>)."})
    dry_run: bool = field(default=False, metadata={"help": "Validate the config and print the plan; load nothing."})


def run(config: RunConfig) -> tuple[Experiment, dict | None]:
    """`robust-sft run`: the experiment (every stage's options checked now, so a bad value fails here and in
    --dry_run, not hours later) and its results; None for a dry run, which loads nothing."""
    experiment_config = load_config(config.config)
    try:
        experiment = Experiment(experiment_config, config.out or f"runs/{experiment_config.name}")
    except ValueError as err:
        raise ValueError(f"{config.config}: {err}") from err
    return experiment, None if config.dry_run else experiment.run()
