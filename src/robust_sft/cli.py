"""The `robust-sft` command: thin verbs over the library.

Each verb is a config dataclass and a library function, both beside each other in the library (the table
below names them); here a verb's flags are read into its config (field documentation is the help, a
`Literal` field's values are the choices), the function is called, and its result printed. Everything is
therefore also available from Python: `score(ScoreConfig(...))`, `generate(GenerateConfig(...))`, ...
"""

from __future__ import annotations

import importlib
import json
import logging
import sys
from dataclasses import dataclass
from pathlib import Path

from robust_sft import __version__
from robust_sft.core.artifacts import WriteError, read_text
from robust_sft.core.config_types import from_mapping
from robust_sft.core.rundir import RunDir  # the run directory's paths (light: no torch)
from robust_sft.scoring.stats import format_table


@dataclass(frozen=True)
class Verb:
    help: str
    config: str  # "module:ConfigClass"
    function: str  # "module:function"
    positional: str | None = None  # the field that leading bare words fill

    def load(self, ref: str):
        module, name = ref.split(":")
        return getattr(importlib.import_module(f"robust_sft.{module}"), name)


VERBS = {
    "score": Verb("Per-token perplexity of SFT data under a model -> a score file (Parquet).",
                  "scoring.token_nll:ScoreConfig", "scoring.token_nll:score"),
    "import-scores": Verb("Per-token perplexity/NLL made elsewhere (one value per chat-templated token) -> a score "
                          "file.", "scoring.external:ImportScoresConfig", "scoring.external:import_scores"),
    "stats": Verb("Perplexity statistics of score files, side by side; histogram; --json.",
                  "scoring.stats:StatsConfig", "scoring.stats:summarize_files", "scores"),
    "inspect": Verb("One self-contained HTML page: every answer token coloured by perplexity, what STM would mask.",
                    "report.inspect:InspectConfig", "report.inspect:inspect_scores", "scores"),
    "mask": Verb("Apply a token policy (STM tau, ratio, random, ...) -> pre-tokenized input_ids/attention_mask/labels.",
                 "masking.export:MaskConfig", "masking.export:mask", "scores"),
    "train": Verb("Fine-tune (LoRA, DoRA, full) on a score file + policy, or on a masked dataset.",
                  "training.trainer:TrainConfig", "training.trainer:train"),
    "data": Verb("Write a task's ground-truth training conversations ({id, prompt, answer} rows) from its files.",
                 "tasks.gt_data:DataConfig", "tasks.gt_data:write_gt_data"),
    "generate": Verb("Make low-perplexity training data: Self-Output or Rephrase, verified by the task's checker.",
                     "data.synthesis:GenerateConfig", "data.synthesis:generate"),
    "evaluate": Verb("Accuracy of a model (+ adapter) on tasks, with per-sample logs.",
                     "evaluation.model:EvaluateConfig", "evaluation.model:evaluate"),
    "run": Verb("Run an experiment from a YAML config (cached, resumable stages; --dry_run prints the plan).",
                "experiment.runner:RunConfig", "experiment.runner:run", "config"),
    "demo": Verb("Run the paper's experiment on the embedded model organism (no download needed).",
                 "experiment.demo:DemoConfig", "experiment.demo:demo"),
    "report": Verb("Rebuild report.md, report.html and the figures of a run from its directory alone.",
                   "report.write:ReportConfig", "report.write:report", "run_dir"),
    "study": Verb("The paper's claims across organism worlds and fine-tuning modes, with controls (study/study.yaml, "
                  "shipped).", "study.runner:StudyCommandConfig", "study.runner:study", "config"),
    "analyze": Verb("Why does it forget? Weight-update norm and effective rank, KL to the base, loss curves vs BWT.",
                    "analysis.mechanism:AnalyzeConfig", "analysis.mechanism:analyze", "run_dir"),
    "organism": Verb("Build the model organism's base model (`organism build`; --ship puts it in the package).",
                     "organism.build:OrganismBuildConfig", "organism.build:build", "action"),
}


def __getattr__(name: str):
    """The verbs' configs (`from robust_sft.cli import RunConfig`) as before they moved beside their functions."""
    for spec in VERBS.values():
        if spec.config.endswith(f":{name}"):
            return spec.load(spec.config)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def _parse(config_cls, argv: list[str], verb: str, positional: str | None = None):
    """Parse argv into `config_cls`; leading bare words fill the `positional` field; a lone .yaml is a config."""
    from transformers import HfArgumentParser

    parser = HfArgumentParser(config_cls, prog=f"robust-sft {verb}", description=VERBS[verb].help)
    # A lone config file holds the verb's options; verbs whose positional is itself a config take it as that.
    if positional is None and len(argv) == 1 and argv[0].endswith((".yaml", ".yml", ".json")) and Path(argv[0]).is_file():
        import yaml

        # Values are converted by the field types (YAML reads 2e-5 as a string); errors name key and file.
        return from_mapping(config_cls, yaml.safe_load(read_text(argv[0])), argv[0])  # JSON is YAML too
    if positional:
        bare = []
        while argv and not argv[0].startswith("-"):
            bare.append(argv.pop(0))
        if bare:
            argv = [f"--{positional}", *bare, *argv]
    return parser.parse_args_into_dataclasses(args=argv)[0]


# --------------------------------------------------------------------------------------------- what each verb prints


def _print_written(config, out) -> None:
    print(f"wrote {out}")


def _print_stats(config, summaries: dict) -> None:
    print(json.dumps(summaries, indent=2) if config.json else format_table(summaries))
    if config.histogram and not config.json:
        print(f"\nhistogram: {config.histogram}")


def _print_report(config, results: dict) -> None:
    run = RunDir(config.run_dir)
    print(f"wrote {run.report_md_file}, {run.report_html_file}  ({len(results['methods'])} methods)")


def _print_analysis(config, analysis: dict) -> None:
    units = sum(len(m["seeds"]) for m in analysis["methods"].values())
    run = RunDir(config.run_dir)
    print(f"wrote {config.out or run.analysis_file} ({units} units, "
          f"{analysis['computed_units']} computed now) and {run.figures_dir}/")
    for measure, c in analysis["correlations"].items():
        rho = "n/a" if c["rho"] is None else f"{c['rho']:+.2f}"
        within = c.get("within") or {}
        r = "n/a" if within.get("r") is None else f"{within['r']:+.2f}"
        print(f"  Spearman rho(BWT, {measure}) = {rho}  (n = {c['n']}); within each method: r = {r}  "
              f"(n = {within.get('n', 0)}, {within.get('groups', 0)} methods)")


def _print_mask_report(config, report: dict) -> None:
    print(json.dumps(report, indent=2))
    print(f"wrote {config.out}")


def _print_generated(config, report: dict) -> None:
    print(json.dumps(report, indent=2))
    print(f"wrote {config.out}")


def _print_run(config, outcome) -> None:
    experiment, results = outcome
    if results is None:
        print(experiment.describe_plan())
        return
    print(experiment.run_dir.report_md_file.read_text())
    print(f"results: {experiment.run_dir.results_file}  ({len(results['methods'])} methods)")


def _print_study(config, outcome) -> None:
    text, published = outcome
    print(text)
    if published:
        print(f"published: {published}")


PRINT = {
    "score": _print_written, "import-scores": _print_written, "inspect": _print_written, "data": _print_written,
    "stats": _print_stats, "mask": _print_mask_report, "generate": _print_generated,
    "train": lambda config, final: print(f"final model: {final}"),
    "evaluate": lambda config, accuracies: print(json.dumps(accuracies, indent=2)),
    "run": _print_run, "demo": lambda config, results: None,  # the demo prints its report itself
    "report": _print_report, "study": _print_study, "analyze": _print_analysis,
    "organism": lambda config, path: print(f"organism (world {config.seed}): {path}"),
}


def run_verb(verb: str, argv: list[str]) -> None:
    """Parse, call, print."""
    spec = VERBS[verb]
    config = _parse(spec.load(spec.config), argv, verb, spec.positional)
    PRINT[verb](config, spec.load(spec.function)(config))


def _usage() -> str:
    width = max(len(v) for v in VERBS)
    lines = ["usage: robust-sft VERB [options]   (robust-sft VERB --help for the options of a verb)", "", "verbs:"]
    lines += [f"  {verb:<{width}}  {spec.help}" for verb, spec in VERBS.items()]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] in ("-h", "--help", "help"):
        print(_usage())
        return 0
    if argv[0] in ("-V", "--version"):
        print(__version__)
        return 0
    verb, rest = argv[0], argv[1:]
    if verb not in VERBS:
        print(f"robust-sft: unknown verb {verb!r}\n\n{_usage()}", file=sys.stderr)
        return 2
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    from transformers.utils import logging as hf_logging

    hf_logging.set_verbosity_error()

    try:
        run_verb(verb, rest)
    except (ValueError, FileNotFoundError, RuntimeError, WriteError) as err:  # bad data/options/outputs, a missing package
        print(f"robust-sft {verb}: error: {err}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
