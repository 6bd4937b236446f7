"""The `robust-sft` command: thin verbs over the library.

Each verb parses a config dataclass (its fields are the flags, their help is the field documentation)
and calls the library function of the same name, so everything here is also available from Python.
"""

from __future__ import annotations

import json
import logging
import sys
from dataclasses import dataclass, field
from pathlib import Path

VERBS = {
    "score": "Per-token perplexity of SFT data under a model -> a score file (Parquet).",
    "import-scores": "Per-token perplexity/NLL made elsewhere (one value per chat-templated token) -> a score file.",
    "stats": "Perplexity statistics of score files, side by side; histogram; --json.",
    "inspect": "One self-contained HTML page: every answer token coloured by perplexity, what STM would mask.",
    "mask": "Apply a token policy (STM tau, ratio, random, ...) -> pre-tokenized input_ids/attention_mask/labels.",
    "train": "Fine-tune (LoRA, DoRA, full) on a score file + policy, or on a masked dataset.",
    "generate": "Make low-perplexity training data: Self-Output or Rephrase, verified by the task's checker.",
    "evaluate": "Accuracy of a model (+ adapter) on tasks, with per-sample logs.",
    "run": "Run an experiment from a YAML config (cached, resumable stages; --dry_run prints the plan).",
    "demo": "Run the paper's experiment on the embedded model organism (no download needed).",
    "report": "Rebuild report.md, report.html and the figures of a run from its directory alone.",
    "study": "The paper's claims across organism worlds and fine-tuning modes, with controls (study/study.yaml, shipped).",
    "analyze": "Why does it forget? Weight-update norm and effective rank, KL to the base, loss curves vs BWT.",
    "organism": "Build the model organism's base model (`organism build`; --ship puts it in the package).",
}


@dataclass
class StatsConfig:
    """Options of `robust-sft stats SCORES...`."""

    scores: list[str] = field(metadata={"help": "Score files (name=path to label a column), e.g. GT=gt.parquet."})
    taus: list[float] = field(
        default_factory=lambda: [1.5, 2, 2.5, 3, 5, 10, 25, 100, 1000],
        metadata={"help": "Thresholds for the 'percent of tokens with ppl > tau' rows."},
    )
    histogram: str | None = field(default=None, metadata={"help": "Write a PNG histogram of token perplexity here."})
    json: bool = field(default=False, metadata={"help": "Print JSON instead of a Markdown table."})

    def __post_init__(self) -> None:
        from robust_sft.scoring.stats import check_taus

        check_taus(self.taus)


@dataclass
class InspectConfig:
    """Options of `robust-sft inspect SCORES... --out inspect.html`."""

    scores: list[str] = field(
        metadata={"help": "Score files of the same prompts (name=path to label a column), e.g. GT=gt.parquet "
                  "Self-Output=self_output.parquet."})
    out: str = field(default="inspect.html", metadata={"help": "The HTML page to write."})
    tau: float = field(default=2.5, metadata={"help": "STM threshold: tokens with ppl > tau are marked as masked."})
    tokenizer: str | None = field(
        default=None, metadata={"help": "Tokenizer to decode the tokens (default: the scoring model's, from the file)."})
    max_examples: int | None = field(
        default=None, metadata={"help": "Show at most this many prompts (the most surprising); stats cover all."})
    max_tokens: int = field(
        default=2_000_000,
        metadata={"help": "Show the most surprising prompts up to this many answer tokens (~4.2 bytes each in the "
                  "page); 0: no cap. The summary, figures and token list cover every example."})
    evidence: str | None = field(
        default=None, metadata={"help": "results.json of an experiment: its measured perplexity-vs-BWT points."})
    title: str | None = field(default=None, metadata={"help": "Page title."})


@dataclass
class ReportConfig:
    """Options of `robust-sft report RUN_DIR`."""

    run_dir: str = field(metadata={"help": "Directory of a run (`robust-sft run` / `demo`)."})


@dataclass
class AnalyzeConfig:
    """Options of `robust-sft analyze RUN_DIR`."""

    run_dir: str = field(metadata={"help": "Directory of a run (`robust-sft run` / `demo`)."})
    kl_limit: int | None = field(
        default=None, metadata={"help": "KL to the base on the first N GT training examples (default: all)."})
    out: str | None = field(default=None, metadata={"help": "Where to write analysis.json (default: RUN_DIR)."})


@dataclass
class MaskConfig:
    """Options of `robust-sft mask SCORES --tau 2.5 --out F`."""

    scores: str = field(metadata={"help": "Score file from `robust-sft score`."})
    out: str = field(
        metadata={"help": "Output: a .parquet file, or a directory (datasets save_to_disk). Columns input_ids, "
                  "attention_mask, labels: TRL's SFTTrainer and axolotl take it as a pre-tokenized dataset."}
    )
    mask: str = field(default="threshold", metadata={"help": "none, threshold, ratio, lowest, random, dpf, stm_dpf."})
    tau: float = field(default=2.5, metadata={"help": "Tokens with ppl > tau get label -100."})
    ratio: float | None = field(default=None, metadata={"help": "Mask this fraction of answer tokens instead of tau."})
    mask_seed: int = field(default=0, metadata={"help": "Seed of the random policy."})
    dpf_scores: str | None = field(default=None, metadata={"help": "dpf/stm_dpf: scores after a GT fine-tune."})
    dpf_tau: float = field(default=1.5, metadata={"help": "dpf: mask tokens whose ppl fell by more than this factor."})
    keep_id: bool = field(default=False, metadata={"help": "Also write an id column (axolotl wants exactly three)."})

    def __post_init__(self) -> None:
        from robust_sft.masking.policies import MaskPolicy

        _require_suffix("out", self.out, (".parquet", ""), "a .parquet file or a directory (no extension)")
        MaskPolicy(kind=self.mask, tau=self.tau, ratio=self.ratio, seed=self.mask_seed, dpf_tau=self.dpf_tau)


@dataclass
class GenerateConfig:
    """Options of `robust-sft generate`."""

    model: str = field(metadata={"help": "The model that will be fine-tuned (it generates its own data)."})
    task: str = field(metadata={"help": "Task whose train split is used and whose checker verifies (e.g. mbpp)."})
    out: str = field(metadata={"help": "Output .jsonl of {id, prompt, answer} rows (feed it to `score`)."})
    method: str = field(default="self_output", metadata={"help": "self_output or rephrase."})
    split: str = field(default="train", metadata={"help": "Split of the task to generate for."})
    limit: int | None = field(default=None, metadata={"help": "At most this many examples."})
    task_path: str | None = field(default=None, metadata={"help": "Local files of the task (offline)."})
    n: int = field(default=32, metadata={"help": "Self-Output: samples per prompt."})
    temperature: float = field(default=0.7, metadata={"help": "Sampling temperature."})
    top_p: float = field(default=0.95, metadata={"help": "Nucleus sampling top_p."})
    max_new_tokens: int = field(default=512, metadata={"help": "Longest answer generated."})
    batch_size: int = field(default=32, metadata={"help": "Sequences per generate call (hf backend)."})
    seed: int = field(default=0, metadata={"help": "Sampling seed."})
    backend: str = field(default="hf", metadata={"help": "hf (transformers generate) or vllm (GPU, if installed)."})
    dtype: str = field(default="auto", metadata={"help": "auto, float32, bfloat16."})

    def __post_init__(self) -> None:
        from robust_sft.core.config_types import require

        _require_suffix("out", self.out, (".jsonl",), "a .jsonl file")
        require(self.method in ("self_output", "rephrase"), f"method must be self_output or rephrase, not {self.method!r}")
        require(self.backend in ("hf", "vllm"), f"backend must be hf or vllm, not {self.backend!r}")
        require(self.limit is None or self.limit >= 1, f"limit must be at least 1 (or unset), not {self.limit}")
        self.settings()  # sampling options in range

    def settings(self):
        from robust_sft.data.synthesis import GenerationSettings

        return GenerationSettings(n=self.n, temperature=self.temperature, top_p=self.top_p,
                                  max_new_tokens=self.max_new_tokens, batch_size=self.batch_size, seed=self.seed)


@dataclass
class EvaluateConfig:
    """Options of `robust-sft evaluate`."""

    model: str = field(metadata={"help": "Base model (Hub name or local path), or a fully fine-tuned model."})
    tasks: list[str] = field(metadata={"help": "Task names, e.g. gsm8k arc_challenge organism/sort."})
    out: str = field(metadata={"help": "Directory for accuracies.json and per-sample <task>.jsonl logs."})
    adapter: str | None = field(default=None, metadata={"help": "A PEFT adapter (LoRA/DoRA) to evaluate."})
    split: str = field(default="test", metadata={"help": "Split to evaluate."})
    limit: int | None = field(default=None, metadata={"help": "At most this many examples per task."})
    batch_size: int = field(default=32, metadata={"help": "Prompts per generate call."})
    dtype: str = field(default="auto", metadata={"help": "auto, float32, bfloat16."})
    backend: str = field(default="hf", metadata={"help": "hf or vllm (GPU; DoRA adapters are merged first)."})
    harness: str = field(
        default="robust-sft",
        metadata={"help": "robust-sft (our tasks and checkers) or lm-eval (lm-evaluation-harness tasks; optional)."},
    )
    include_path: str | None = field(default=None, metadata={"help": "lm-eval: a directory of task YAMLs."})
    task_paths: list[str] = field(
        default_factory=list, metadata={"help": "Local task data as name=path (offline), e.g. gsm8k=gsm8k.jsonl."}
    )

    def __post_init__(self) -> None:
        from robust_sft.core.config_types import require

        require(self.harness in ("robust-sft", "lm-eval"), f"harness must be robust-sft or lm-eval, not {self.harness!r}")
        require(self.backend in ("hf", "vllm"), f"backend must be hf or vllm, not {self.backend!r}")
        require(self.limit is None or self.limit >= 1, f"limit must be at least 1 (or unset), not {self.limit}")
        require(self.batch_size >= 1, f"batch_size must be at least 1, not {self.batch_size}")
        require(all("=" in item for item in self.task_paths), f"task_paths must be name=path items: {self.task_paths}")


@dataclass
class RunConfig:
    """Options of `robust-sft run CONFIG.yaml`."""

    config: str = field(metadata={"help": "Experiment YAML (src/robust_sft/configs/demo.yaml documents every option)."})
    out: str | None = field(default=None, metadata={"help": "Run directory (default: runs/<name>)."})
    dry_run: bool = field(default=False, metadata={"help": "Validate the config and print the plan; load nothing."})


@dataclass
class StudyCommandConfig:
    """Options of `robust-sft study CONFIG.yaml`."""

    config: str = field(metadata={"help": "Study YAML (study/study.yaml documents every option)."})
    out: str | None = field(default=None, metadata={"help": "Study directory (default: runs/<name>); re-running resumes."})
    docs: str | None = field(default=None, metadata={"help": "Also copy the summary, figures and each run's report, "
                                                             "results and analysis (no models) here."})
    dry_run: bool = field(default=False, metadata={"help": "Validate the config and print the settings; load nothing."})


@dataclass
class DemoConfig:
    """Options of `robust-sft demo`."""

    out: str = field(default="runs/demo", metadata={"help": "Run directory (re-running resumes)."})


def _require_suffix(option: str, path: str, suffixes: tuple[str, ...], what: str) -> None:
    """Refuse an output path whose extension the writer would not honour (e.g. a .jsonl that becomes a directory)."""
    from robust_sft.core.config_types import require

    require(Path(path).suffix in suffixes, f"--{option} {path}: must be {what}")


@dataclass
class OrganismBuildConfig:
    """Options of `robust-sft organism build`."""

    action: str = field(default="build", metadata={"help": "build (the only action)."})
    seed: int = field(default=0, metadata={"help": "The world's seed (the demo's is 0)."})
    force: bool = field(default=False, metadata={"help": "Rebuild even when a cached build exists."})
    ship: bool = field(
        default=False,
        metadata={"help": "Copy the build into the package (src/robust_sft/organism/shipped/seed<k>), where the "
                  "demo takes it from, so every machine fine-tunes the same weights."},
    )


def _parse(config_cls, argv: list[str], verb: str, positional: str | None = None):
    """Parse argv into `config_cls`; leading bare words fill the `positional` field; a lone .yaml is a config."""
    from transformers import HfArgumentParser

    parser = HfArgumentParser(config_cls, prog=f"robust-sft {verb}", description=VERBS[verb])
    # A lone config file holds the verb's options; verbs whose positional is itself a config take it as that.
    if positional is None and len(argv) == 1 and argv[0].endswith((".yaml", ".yml", ".json")) and Path(argv[0]).is_file():
        import yaml

        from robust_sft.core.artifacts import read_text
        from robust_sft.core.config_types import from_mapping

        # Values are converted by the field types (YAML reads 2e-5 as a string); errors name key and file.
        return from_mapping(config_cls, yaml.safe_load(read_text(argv[0])), argv[0])  # JSON is YAML too
    if positional:
        bare = []
        while argv and not argv[0].startswith("-"):
            bare.append(argv.pop(0))
        if bare:
            argv = [f"--{positional}", *bare, *argv]
    return parser.parse_args_into_dataclasses(args=argv)[0]


def cmd_score(argv: list[str]) -> None:
    from robust_sft.scoring.token_nll import ScoreConfig, score

    out = score(_parse(ScoreConfig, argv, "score"))
    print(f"wrote {out}")


def cmd_import_scores(argv: list[str]) -> None:
    from robust_sft.scoring.external import ImportScoresConfig, import_scores

    out = import_scores(_parse(ImportScoresConfig, argv, "import-scores"))
    print(f"wrote {out}")


def cmd_stats(argv: list[str]) -> None:
    from robust_sft.core.artifacts import check_output_file
    from robust_sft.scoring.token_nll import load_scores
    from robust_sft.scoring.stats import format_table, plot_histogram, summarize

    config = _parse(StatsConfig, argv, "stats", positional="scores")
    if config.histogram:
        check_output_file(config.histogram)
    named = {}
    for item in config.scores:
        name, _, path = item.rpartition("=") if "=" in item else (Path(item).stem, "", item)
        named[name] = load_scores(path)
    summaries = {name: summarize(s, config.taus) for name, s in named.items()}
    if config.histogram:
        plot_histogram(named, config.histogram)
    print(json.dumps(summaries, indent=2) if config.json else format_table(summaries))
    if config.histogram and not config.json:
        print(f"\nhistogram: {config.histogram}")


def cmd_inspect(argv: list[str]) -> None:
    from robust_sft.report.inspect import parse_named_scores, write_inspect

    config = _parse(InspectConfig, argv, "inspect", positional="scores")
    out = write_inspect(parse_named_scores(config.scores), config.out, tau=config.tau, tokenizer=config.tokenizer,
                        max_examples=config.max_examples, max_tokens=config.max_tokens, evidence=config.evidence,
                        title=config.title)
    print(f"wrote {out}")


def cmd_report(argv: list[str]) -> None:
    from robust_sft.report.write import write_report

    config = _parse(ReportConfig, argv, "report", positional="run_dir")
    from robust_sft.core.rundir import RunDir

    results = write_report(config.run_dir)
    run = RunDir(config.run_dir)
    print(f"wrote {run.report_md_file}, {run.report_html_file}  ({len(results['methods'])} methods)")


def cmd_analyze(argv: list[str]) -> None:
    from robust_sft.analysis.mechanism import analyze_run

    config = _parse(AnalyzeConfig, argv, "analyze", positional="run_dir")
    analysis = analyze_run(config.run_dir, kl_limit=config.kl_limit, out=config.out)
    units = sum(len(m["seeds"]) for m in analysis["methods"].values())
    print(f"wrote {config.out or Path(config.run_dir) / 'analysis.json'} ({units} units, "
          f"{analysis['computed_units']} computed now) and {Path(config.run_dir) / 'figures'}/")
    for measure, c in analysis["correlations"].items():
        rho = "n/a" if c["rho"] is None else f"{c['rho']:+.2f}"
        print(f"  Spearman rho(BWT, {measure}) = {rho}  (n = {c['n']})")


def cmd_mask(argv: list[str]) -> None:
    from robust_sft.masking.policies import MaskPolicy
    from robust_sft.masking.export import write_masked

    config = _parse(MaskConfig, argv, "mask", positional="scores")
    policy = MaskPolicy(kind=config.mask, tau=config.tau, ratio=config.ratio, seed=config.mask_seed,
                        dpf_tau=config.dpf_tau)
    report = write_masked(config.scores, config.out, policy, dpf_scores=config.dpf_scores, keep_id=config.keep_id)
    print(json.dumps(report, indent=2))
    print(f"wrote {config.out}")


def cmd_train(argv: list[str]) -> None:
    from robust_sft.training.trainer import TrainConfig, train

    final = train(_parse(TrainConfig, argv, "train"))
    print(f"final model: {final}")


def cmd_generate(argv: list[str]) -> None:
    from robust_sft.core.artifacts import check_output_file, write_json, write_jsonl
    from robust_sft.models.loading import load_model, load_tokenizer
    from robust_sft.data.synthesis import rephrase, self_output, vllm_sampler
    from robust_sft.tasks import get_task

    config = _parse(GenerateConfig, argv, "generate")
    check_output_file(config.out)  # before the model generates anything
    task = get_task(config.task)
    examples = task.load(config.split, limit=config.limit, path=config.task_path)
    settings = config.settings()
    model, tokenizer = load_model(config.model, dtype=config.dtype), load_tokenizer(config.model)
    sampler = vllm_sampler(config.model) if config.backend == "vllm" else None
    make = self_output if config.method == "self_output" else rephrase
    rows, report = make(model, tokenizer, task, examples, settings, sampler=sampler)
    write_json(config.out + ".report.json", report)
    if not rows:
        raise ValueError(f"no generated example passed the checker; nothing written to {config.out} "
                         f"(report: {config.out}.report.json)")
    write_jsonl(config.out, rows)
    print(json.dumps(report, indent=2))
    print(f"wrote {config.out}")


def cmd_evaluate(argv: list[str]) -> None:
    from robust_sft.evaluation.engine import evaluate_tasks
    from robust_sft.models.loading import load_model, load_tokenizer

    config = _parse(EvaluateConfig, argv, "evaluate")
    if config.harness == "lm-eval":
        from robust_sft.evaluation.harness import evaluate_with_lm_eval

        accuracies = evaluate_with_lm_eval(config.model, config.tasks, adapter=config.adapter, limit=config.limit,
                                           batch_size=config.batch_size, dtype=config.dtype,
                                           include_path=config.include_path, output_dir=config.out)
        print(json.dumps(accuracies, indent=2))
        return
    task_paths = dict(item.split("=", 1) for item in config.task_paths)
    if config.backend == "vllm":
        from robust_sft.experiment.runner import vllm_model_and_adapter
        from robust_sft.data.synthesis import vllm_sampler

        model_path, adapter = (vllm_model_and_adapter(config.model, Path(config.adapter), config.adapter)
                               if config.adapter else (config.model, None))
        model, sampler = None, vllm_sampler(model_path, adapter_path=adapter)
    else:
        model, sampler = load_model(config.model, dtype=config.dtype, adapter=config.adapter), None
    accuracies = evaluate_tasks(model, load_tokenizer(config.model), config.tasks, split=config.split,
                                limit=config.limit, batch_size=config.batch_size, log_dir=config.out,
                                task_paths=task_paths, sampler=sampler)
    print(json.dumps(accuracies, indent=2))


def cmd_run(argv: list[str]) -> None:
    from robust_sft.experiment.runner import Experiment, load_config

    config = _parse(RunConfig, argv, "run", positional="config")
    experiment_config = load_config(config.config)
    try:  # builds every stage's options, so a bad value fails here (and in --dry_run), not hours later
        experiment = Experiment(experiment_config, config.out or f"runs/{experiment_config.name}")
    except ValueError as err:
        raise ValueError(f"{config.config}: {err}") from err
    if config.dry_run:
        print(experiment.describe_plan())
        return
    results = experiment.run()
    print(experiment.run_dir.report_md_file.read_text())
    print(f"results: {experiment.run_dir.results_file}  ({len(results['methods'])} methods)")


def cmd_study(argv: list[str]) -> None:
    from robust_sft.study.config import load_study_config
    from robust_sft.study.publish import check_publish_target, publish
    from robust_sft.study.runner import describe_study, run_study

    config = _parse(StudyCommandConfig, argv, "study", positional="config")
    try:
        study_config = load_study_config(config.config)
    except ValueError as err:
        raise ValueError(f"{config.config}: {err}") from err
    out = config.out or f"runs/{study_config.name}"
    if config.dry_run:
        print(describe_study(study_config, out))
        return
    if config.docs:
        check_publish_target(config.docs)  # now, not after the study's hours of work
    run_study(study_config, out)
    print((Path(out) / "study.md").read_text())
    if config.docs:
        print(f"published: {publish(out, config.docs)}")


def cmd_demo(argv: list[str]) -> None:
    from robust_sft.experiment.demo import run_demo

    config = _parse(DemoConfig, argv, "demo")
    run_demo(config.out)


def cmd_organism(argv: list[str]) -> None:
    from robust_sft.organism.base_model import build_base_model, ship_base_model

    config = _parse(OrganismBuildConfig, argv, "organism", positional="action")
    if config.action != "build":
        raise ValueError(f"unknown action {config.action!r}; usage: robust-sft organism build [--seed K] [--ship]")
    path = (ship_base_model if config.ship else build_base_model)(seed=config.seed, force=config.force)
    print(f"organism (world {config.seed}): {path}")


COMMANDS = {"score": cmd_score, "import-scores": cmd_import_scores, "stats": cmd_stats, "inspect": cmd_inspect,
            "mask": cmd_mask, "train": cmd_train, "generate": cmd_generate, "evaluate": cmd_evaluate, "run": cmd_run,
            "demo": cmd_demo, "study": cmd_study, "report": cmd_report, "analyze": cmd_analyze, "organism": cmd_organism}


def _usage() -> str:
    width = max(len(v) for v in VERBS)
    lines = ["usage: robust-sft VERB [options]   (robust-sft VERB --help for the options of a verb)", "", "verbs:"]
    lines += [f"  {verb:<{width}}  {text}" for verb, text in VERBS.items()]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] in ("-h", "--help", "help"):
        print(_usage())
        return 0
    if argv[0] in ("-V", "--version"):
        from robust_sft import __version__

        print(__version__)
        return 0
    verb, rest = argv[0], argv[1:]
    if verb not in COMMANDS:
        print(f"robust-sft: unknown verb {verb!r}\n\n{_usage()}", file=sys.stderr)
        return 2
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    from transformers.utils import logging as hf_logging

    hf_logging.set_verbosity_error()
    from robust_sft.core.artifacts import WriteError

    try:
        COMMANDS[verb](rest)
    except (ValueError, FileNotFoundError, RuntimeError, WriteError) as err:  # bad data/options/outputs, a missing package
        print(f"robust-sft {verb}: error: {err}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
