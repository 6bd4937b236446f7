"""An experiment's config: every option of `robust-sft run CONFIG.yaml`, checked when it is built."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from robust_sft.configs import resolve_config
from robust_sft.core.artifacts import read_text
from robust_sft.core.config_types import (
    ConfigError,
    check_options,
    coerce_fields,
    from_mapping,
    require,
    require_limit,
    require_path_name,
)
from robust_sft.executors import ExecutorConfig
from robust_sft.models.options import Backend
from robust_sft.report.criteria import check_criteria
from robust_sft.training.config import TrainConfig

METHODS = ("gt", "stm", "self_output", "rephrase", "stm_random", "stm_lowest", "dft", "eaft", "oracle", "stm_soft",
           "infosft", "sdft",
           # token policies on GT beside STM (masking/policies.py): tau auto; at control_tau, keeping the answer
           # span (answer_aware) or the tokens a hint explains (hindsight: GT is scored a second time, with hints)
           "stm_auto", "answer_aware", "hindsight",
           # controls: GT on the problems the model already solves (those Self-Output kept), so its answers
           # bring the human style and no content the model lacks; STM at control_tau keeping each answer's
           # departure token (the first where GT leaves the model's greedy answer)
           "style_only", "departure_kept")


# Token-loss baselines the field ships: trained on GT, every token kept, the loss reweighted (training.token_loss).
LOSS_METHODS = ("dft", "eaft", "infosft")


# Training sets, in report order. "oracle" is the positive control: the target's training answers written in
# the model's own style (only tasks that can write one, e.g. the organism's), so correct and low-perplexity.
SOURCES = ("gt", "self_output", "rephrase", "oracle")


@dataclass
class ExperimentConfig:
    """A whole experiment. Defaults follow the paper where it has one."""

    name: str = "experiment"
    # A Hub name, a local path, or a model source a plug-in provides by name (models/sources.py): "organism",
    # the embedded default, is one.
    model: str = "organism"
    # With a directory as `model`, a .gguf file in it to load (a `model` ending in .gguf needs none): dequantized
    # once into the cache (models/gguf.py); plan.json records the file and its SHA-256.
    gguf_file: str | None = None
    world: int = 0  # which world of a model source that has several (the organism's 0-2 ship); passed to its tasks
    target: str = "organism/sort"  # the fine-tuning target; its GT is written in a human style
    others: list[str] = field(default_factory=list)  # default: the model source's other tasks (none for a path)
    methods: list[str] = field(default_factory=lambda: ["gt", "stm", "self_output", "rephrase"])
    taus: list[float] = field(default_factory=lambda: [2.5])  # STM sweep (and the soft STM's, stm_soft)
    soft_temperature: float = 1.0  # stm_soft: each GT token weighted by sigmoid((log tau - nll) / T), T in nats
    control_tau: float = 2.5  # tau whose per-example mask counts the random/lowest controls copy; answer_aware's
                              # and hindsight's tau
    # Learning-rate control: extra runs of these methods at train.learning_rate x each factor (stm at control_tau),
    # e.g. {gt: [0.333, 0.1], stm: [0.333, 0.1]}. A smaller step alone forgets less; claim (f) compares them.
    lr_sweep: dict[str, list[float]] = field(default_factory=dict)
    seeds: list[int] = field(default_factory=lambda: [0], metadata={
        "list_only": "seeds: [1] is the single seed 1; three seeds are [0, 1, 2]"})
    train_limit: int | None = None  # target training problems each run trains on
    # Target training problems the data stages prepare (GT, Self-Output, ... scored once); each seed then trains on
    # its own draw of train_limit of them (data/problems_seed<K>.json), so seeds resample the data, not only the
    # optimizer. None: every seed trains on the same first train_limit problems.
    train_pool: int | None = None
    validation_limit: int | None = None
    eval_limit: int | None = None  # test examples per task
    target_eval_limit: int | None = None  # test examples of the target (default: eval_limit); more = less noisy TI
    select_best_epoch: bool = True
    eval_batch_size: int = 64
    # Measure each fine-tuned model (analysis/mechanism.py) in its own unit, right after its evaluation, while its
    # weights exist: a run whose weights do not outlive the machine that trained them (a cluster's workers, a run
    # kept without weights) keeps its measures in analysis/. Off: `robust-sft analyze RUN_DIR` measures them later.
    analyze_units: bool = False
    # Those measures' KL on the first N GT training examples and N base answers per other task (None: all). On the
    # demo's GT model, 100 of the 400 gave KL 0.768 against 0.765 from all 400, in 1.8 s instead of 4.8 s.
    kl_limit: int | None = 100
    # Where the (variant, seed) units run: a mapping of ExecutorConfig fields (default: local processes), e.g.
    # {executor: ray, ray_address: auto, workers: 0}. `workers: N` alone is executor.workers (local processes).
    executor: ExecutorConfig | None = None  # an ExecutorConfig once built
    workers: int | None = None  # = executor.workers once built
    backend: Backend = "hf"  # generation and evaluation: hf (transformers generate) or vllm (GPU machines)
    task_paths: dict = field(default_factory=dict)  # task name -> local files (offline); Hub otherwise
    train: dict = field(default_factory=dict)  # TrainConfig fields
    generation: dict = field(default_factory=dict)  # synthesis.GenerationSettings fields
    # Pre-registered criteria (report/criteria.py): each claim's variant, quantity and rule, judged from the
    # paired bootstrap intervals of results.json. Commit them before the run.
    criteria: list = field(default_factory=list)
    # `robust-sft run --quick`: these fields replace the config's for a smaller first look (runs/<name>-quick)
    quick: dict = field(default_factory=dict)

    def __post_init__(self) -> None:
        coerce_fields(self)  # YAML's `2e-5` and `1e1` are strings
        require_path_name(self.name, "name")  # the default run directory is runs/<name>
        unknown = sorted(set(self.methods) - set(METHODS))
        if unknown:
            raise ValueError(f"unknown method(s) {unknown}; choose from {', '.join(METHODS)}")
        if not self.seeds:
            raise ValueError("seeds must not be empty")
        for method in ("stm", "stm_soft"):
            if method in self.methods and not self.taus:
                raise ValueError(f"method {method} needs at least one tau in `taus`")
        require(self.soft_temperature > 0, f"soft_temperature must be positive, not {self.soft_temperature}")
        for method, factors in self.lr_sweep.items():
            require(method in ("gt", "stm", *LOSS_METHODS, "oracle"),
                    f"lr_sweep: method {method!r} cannot be swept (gt, stm, {', '.join(LOSS_METHODS)}, oracle can)")
            require(isinstance(factors, list) and all(isinstance(f, (int, float)) and 0 < f for f in factors),
                    f"lr_sweep: {method} needs a list of positive factors, not {factors!r}")
        require(len(set(self.seeds)) == len(self.seeds), f"seeds must be distinct, not {self.seeds}")
        for name in ("train_limit", "train_pool", "validation_limit", "eval_limit", "target_eval_limit"):
            require_limit(name, getattr(self, name))
        if self.train_pool is not None:
            require(self.train_limit is not None and self.train_limit <= self.train_pool,
                    f"train_pool {self.train_pool} needs a train_limit of at most that many problems per seed, "
                    f"not {self.train_limit}")
        require(self.eval_batch_size >= 1, f"eval_batch_size must be at least 1, not {self.eval_batch_size}")
        require(self.kl_limit is None or self.kl_limit >= 1, f"kl_limit must be at least 1 (or null), not {self.kl_limit}")
        require(self.gguf_file is None or self.gguf_file.endswith(".gguf"),
                f"gguf_file must name a .gguf file, not {self.gguf_file!r}")
        self.criteria = check_criteria(self.criteria)
        self.executor = executor_config(self.executor, self.workers)
        self.workers = self.executor.workers
        from robust_sft.data.synthesis import GenerationSettings

        # Set per run by the runner: model, data, output_dir, validation, progress (and seed, from `seeds`).
        self.train = check_options(TrainConfig, self.train, "train",
                                   exclude=("model", "gguf_file", "data", "output_dir", "validation", "seed",
                                            "progress"))
        self.generation = check_options(GenerationSettings, self.generation, "generation")


def executor_config(executor: ExecutorConfig | dict | None, workers: int | None) -> ExecutorConfig:
    """The `executor:` options, with the top-level `workers: N` of configs written before it (both: must agree)."""
    if isinstance(executor, ExecutorConfig):
        require(workers is None or workers == executor.workers,
                f"workers {workers} and executor.workers {executor.workers} disagree: set one of them")
        return executor
    options = check_options(ExecutorConfig, executor or {}, "executor")
    if workers is not None:
        require(options.get("workers", workers) == workers,
                f"workers {workers} and executor.workers {options.get('workers')} disagree: set one of them")
        options["workers"] = workers
    try:
        return ExecutorConfig(**options)
    except ValueError as err:
        raise ConfigError(f"executor: {err}") from None


def load_config(path: str | Path, quick: bool = False) -> ExperimentConfig:
    """Read a YAML config into an ExperimentConfig; unknown keys and bad values are errors naming the file.
    `quick`: its `quick:` fields replace the config's, and the name gets "-quick" (a run directory of its own)."""
    import yaml

    path = resolve_config(path)
    raw = yaml.safe_load(read_text(path)) or {}
    if quick:
        raw = quick_mapping(raw, str(path))
    return from_mapping(ExperimentConfig, raw, str(path))


def quick_mapping(raw: dict, where: str) -> dict:
    """A config mapping with its `quick:` overrides applied (for `run --quick`)."""
    overrides = raw.get("quick") if isinstance(raw, dict) else None
    if not overrides or not isinstance(overrides, dict):
        raise ConfigError(f"{where}: --quick needs a `quick:` mapping of overrides in the config; it has none")
    fields = set(ExperimentConfig.__dataclass_fields__) - {"quick", "name"}
    unknown = sorted(set(overrides) - fields)
    if unknown:
        raise ConfigError(f"{where}: quick: unknown or unchangeable field(s) {unknown}")
    return {**raw, **overrides, "name": f"{raw.get('name', 'experiment')}-quick", "quick": {}}
