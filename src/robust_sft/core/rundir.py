"""The run directory: the one contract between the stages of `robust-sft run` and everything that reads a run.

Every path of a run is named here, and the readers of the files the report, the analysis and the study need:

  config.json                         the experiment's config as the run read it
  plan.json                           the resolved run: base model and its key, tasks, seeds, every variant with
                                      its family, training set, token policy per seed and full train options
  data/<source>.jsonl                 a training set; generated ones have <source>.report.json (with seconds)
  scores/<source>.parquet             its token NLL under the base model; .seconds.json beside it
  data/<source>.hinted.jsonl,         the same answers with the task's hint in each prompt, and their token NLL
  scores/<source>.hinted.parquet      (the hindsight policy's second pass; only when a variant uses it)
  scores/<source>.departure.json      each example's departure token (only when a variant keeps it)
  data/problems_seed<k>.json          with train_pool: the training problems seed k draws
  data/style_only_seed<k>.json        the style_only control's problems in seed k (those Self-Output solved)
  models/<variant>/seed<k>/           a fine-tune: train_summary.json, loss_log.jsonl, final/
  eval/base/, eval/<variant>/seed<k>/ accuracies.json and one sample log per task (<task>.jsonl)
  results.json, report.md, report.html, figures/, inspect.html, inspect/   the report
  analysis.json, analysis/<variant>/seed<k>.json                           `robust-sft analyze`
  locks/<variant>-seed<k>.lock        held while a (variant, seed) unit runs

A run directory is self-contained: copied elsewhere, every reader here gives the same answers.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from robust_sft.core.artifacts import LOCK_NAME, read_text

PLAN_SCHEMA = "robust-sft/plan/v1"
INSPECT_PAGE = "inspect.html"  # every training set side by side at the control tau


class NotARunError(FileNotFoundError):
    """A directory lacks a file every finished run has; the message says which, and how to get it."""


def task_file_name(task_name: str) -> str:
    """A task's name as a file name (organism/sort -> organism__sort): its sample log is <that>.jsonl."""
    return task_name.replace("/", "__")


def gt_inspect_page(tau: float) -> str:
    """The page of the GT set masked at an STM tau other than the control's (relative to the run directory)."""
    return f"inspect/gt_tau{tau:g}.html"


@dataclass(frozen=True)
class RunDir:
    """The paths of one run directory, and readers of what the stages wrote there."""

    root: Path

    def __post_init__(self) -> None:
        object.__setattr__(self, "root", Path(self.root))

    # ------------------------------------------------------------------ paths: inputs and plan

    @property
    def config_file(self) -> Path:
        return self.root / "config.json"

    @property
    def plan_file(self) -> Path:
        return self.root / "plan.json"

    @property
    def lock_file(self) -> Path:
        return self.root / LOCK_NAME

    def unit_lock_file(self, variant: str, seed: int) -> Path:
        return self.root / "locks" / f"{variant}-seed{seed}.lock"

    def data_file(self, source: str) -> Path:
        return self.root / "data" / f"{source}.jsonl"

    def data_report_file(self, source: str) -> Path:
        """What generating a training set did (prompts, kept, seconds): Self-Output and Rephrase only."""
        return self.root / "data" / f"{source}.report.json"

    def seed_problems_file(self, seed: int) -> Path:
        """The ids of the target training problems one seed trains on (with `train_pool`: a draw per seed)."""
        return self.root / "data" / f"problems_seed{seed}.json"

    def departure_file(self, source: str) -> Path:
        """Each example's departure token under the base model (scoring/departure.py), for keep_departure."""
        return self.root / "scores" / f"{source}.departure.json"

    def style_only_ids_file(self, seed: int) -> Path:
        """The ids style_only trains on in one seed: the GT problems Self-Output solved (of that seed's draw)."""
        return self.root / "data" / f"style_only_seed{seed}.json"

    def scores_file(self, source: str) -> Path:
        return self.root / "scores" / f"{source}.parquet"

    def scores_seconds_file(self, source: str) -> Path:
        scores = self.scores_file(source)
        return scores.with_name(scores.name + ".seconds.json")

    def hinted_data_file(self, source: str) -> Path:
        """A training set's rows with a `hint` column: the hindsight policy scores them with the hint in the prompt."""
        return self.root / "data" / f"{source}.hinted.jsonl"

    def hinted_scores_file(self, source: str) -> Path:
        """The token NLL of the same answers with the hint in the prompt (aligned with scores_file's answer tokens)."""
        return self.root / "scores" / f"{source}.hinted.parquet"

    def hinted_scores_seconds_file(self, source: str) -> Path:
        scores = self.hinted_scores_file(source)
        return scores.with_name(scores.name + ".seconds.json")

    # ------------------------------------------------------------------ paths: units

    @property
    def models_dir(self) -> Path:
        return self.root / "models"

    def model_dir(self, variant: str, seed: int) -> Path:
        return self.models_dir / variant / f"seed{seed}"

    def train_summary_file(self, variant: str, seed: int) -> Path:
        return self.model_dir(variant, seed) / "train_summary.json"

    def final_model_dir(self, variant: str, seed: int) -> Path:
        """The model the evaluation uses: the selected epoch's weights (or adapter) and tokenizer."""
        return self.model_dir(variant, seed) / "final"

    @property
    def base_eval_dir(self) -> Path:
        return self.root / "eval" / "base"

    @property
    def base_validation_file(self) -> Path:
        """The base model's target validation accuracy (the study's selection compares against it)."""
        return self.root / "eval" / "base_validation.json"

    def eval_dir(self, variant: str, seed: int) -> Path:
        return self.root / "eval" / variant / f"seed{seed}"

    # ------------------------------------------------------------------ paths: report and analysis

    @property
    def results_file(self) -> Path:
        return self.root / "results.json"

    @property
    def report_md_file(self) -> Path:
        return self.root / "report.md"

    @property
    def report_html_file(self) -> Path:
        return self.root / "report.html"

    @property
    def figures_dir(self) -> Path:
        return self.root / "figures"

    def page(self, relative: str) -> Path:
        """An inspect page named relative to the run directory (as report.html links it)."""
        return self.root / relative

    @property
    def analysis_file(self) -> Path:
        return self.root / "analysis.json"

    def analysis_cache_file(self, variant: str, seed: int) -> Path:
        return self.root / "analysis" / variant / f"seed{seed}.json"

    # ------------------------------------------------------------------ readers

    def read_config(self) -> dict:
        return _read_json(self.config_file)

    def read_plan(self) -> dict:
        """plan.json; a run made before plan.json existed gets an error saying how to write one."""
        if not self.plan_file.exists():
            missing = "config.json" if not self.config_file.exists() else "plan.json"
            raise NotARunError(
                f"{self.root}: not a run directory of this version (no {missing}). A run writes plan.json before its "
                f"first stage: re-run `robust-sft run CONFIG --out {self.root}` with the run's config; every stage "
                "already done is cached, so it only writes plan.json and the report")
        plan = _read_json(self.plan_file)
        schema = plan.get("schema") if isinstance(plan, dict) else f"none (a JSON {type(plan).__name__}, no object)"
        if schema != PLAN_SCHEMA:
            raise NotARunError(f"{self.plan_file}: schema {schema!r}, expected {PLAN_SCHEMA!r}")
        return plan

    def read_results(self) -> dict:
        """results.json, as the report wrote it."""
        if not self.results_file.exists():
            raise NotARunError(f"{self.root}: no results.json (the run has not finished; `robust-sft report "
                               f"{self.root}` writes it once every unit has)")
        return _read_json(self.results_file)

    def read_analysis(self) -> dict:
        """analysis.json, as `robust-sft analyze` wrote it."""
        if not self.analysis_file.exists():
            raise NotARunError(f"{self.root}: no analysis.json (`robust-sft analyze {self.root}` writes it)")
        return _read_json(self.analysis_file)

    def accuracies(self, eval_dir: Path) -> dict[str, float]:
        """Task -> accuracy of one evaluation (eval/base or eval/<variant>/seed<k>)."""
        return {task: entry["accuracy"] for task, entry in _read_json(eval_dir / "accuracies.json").items()}

    def item_correctness(self, eval_dir: Path, task: str) -> dict[str, bool]:
        """Per test item of a task: whether the evaluated model got it right (from the evaluation's sample log)."""
        path = eval_dir / f"{task_file_name(task)}.jsonl"
        rows = [json.loads(line) for line in read_text(path).splitlines() if line.strip()]
        return {row["id"]: bool(row["correct"]) for row in rows}

    def data_ids(self, source: str) -> list[str]:
        """The example ids of a training set (data/<source>.jsonl), in its order."""
        rows = [json.loads(line) for line in read_text(self.data_file(source)).splitlines() if line.strip()]
        return [row["id"] for row in rows]

    def train_summary(self, variant: str, seed: int) -> dict:
        return _read_json(self.train_summary_file(variant, seed))

    def data_report(self, source: str) -> dict | None:
        path = self.data_report_file(source)
        return _read_json(path) if path.exists() else None

    def costs(self, sources: list[str]) -> dict[str, float]:
        """Seconds spent making each training set (<source>) and scoring it (score_<source>), as recorded.

        GT and the oracle are read from the task, so they cost nothing; a source never scored has no score_ entry."""
        costs = {}
        for source in sources:
            report = self.data_report(source)
            costs[source] = report["seconds"] if report else 0.0
            if self.scores_seconds_file(source).exists():
                costs[f"score_{source}"] = _read_json(self.scores_seconds_file(source))["seconds"]
            if self.hinted_scores_seconds_file(source).exists():
                costs[f"score_{source}_hinted"] = _read_json(self.hinted_scores_seconds_file(source))["seconds"]
        return costs


def _read_json(path: Path):
    text = read_text(path)
    try:
        return json.loads(text)
    except json.JSONDecodeError as err:
        raise ValueError(f"{path}:{err.lineno}: not valid JSON ({err.msg})") from None
