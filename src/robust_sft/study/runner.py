"""`robust-sft study CONFIG`: the paper's claims across organism worlds and fine-tuning modes, with controls.

Stages, each cached and resumable (every run below is a `robust-sft run` directory with keyed stages):
  select      per fine-tuning mode, its free options (LoRA rank + learning rate; full fine-tuning's learning
              rate) chosen once, on the first world, by the oracle's best target validation accuracy over a grid
              fixed in the config; ties go to the earlier grid point (the smaller change)
  settings    one run per (world, mode): every method, the STM tau sweep, the learning-rate sweep, all seeds
  lr_control  the demo's training options with the learning-rate sweep (skipped when a setting already is it)
  analyze     the mechanism measures of every fine-tuned model (robust_sft.analysis.mechanism)
  summary     study.json, study.md and figures/: every claim held in k of n settings with its numbers, sample-wise
              forgetting, and how the mechanism measures relate to forgetting over all runs

The criteria of the claims are robust_sft.report.claims's, the same as a single run's; the study only counts them.
"""

from __future__ import annotations

import itertools
import json
import logging
import shutil
import time
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

from robust_sft.core.artifacts import LOCK_NAME, check_own_dir, dir_lock, read_text, write_json, write_text
from robust_sft.core.hashing import stable_hash
from robust_sft.executors import run_calls
from robust_sft.experiment.config import ExperimentConfig
from robust_sft.experiment.plan import Variant
from robust_sft.experiment.runner import Experiment, unit_threads, worker_setup

logger = logging.getLogger(__name__)


@dataclass
class StudyConfig:
    """A study: one experiment definition run in several organism worlds and fine-tuning modes."""

    name: str = "study"
    worlds: list[int] = field(default_factory=lambda: [0, 1, 2], metadata={  # organism seeds; the first selects
        "list_only": "worlds: [1] is world 1 alone; three worlds are [0, 1, 2]"})
    # ExperimentConfig fields shared by every setting (organism_seed and name are set per setting).
    experiment: dict = field(default_factory=dict)
    # mode name -> {"train": fixed TrainConfig options, "grid": {option: [values]} searched by the oracle}
    modes: dict = field(default_factory=dict)
    # Worlds whose settings run experiment.lr_sweep (None: every world); the others run without it.
    lr_sweep_worlds: list[int] | None = None
    selection_seed: int = 0
    selection_validation_limit: int | None = 200  # more validation prompts than the runs' best-epoch choice uses
    # ExperimentConfig fields that turn `experiment` into the learning-rate control (world = the first world);
    # empty: no separate control run.
    lr_control: dict = field(default_factory=dict)
    # Target training examples the mechanism analysis measures KL on (None: all). On the demo's GT model, 100 of
    # the 400 gave KL 0.768 against 0.765 from all 400, in 1.8 s instead of 4.8 s.
    kl_limit: int | None = 100

    def __post_init__(self) -> None:
        from robust_sft.core.config_types import coerce_fields, require, require_path_name

        coerce_fields(self)
        require_path_name(self.name, "name")  # the default study directory is runs/<name>
        require(bool(self.worlds) and len(set(self.worlds)) == len(self.worlds),
                f"worlds must be distinct organism seeds, not {self.worlds}")
        require(bool(self.modes), "modes must name at least one fine-tuning mode")
        for mode, spec in self.modes.items():
            require_path_name(mode, "mode")  # its runs are w<world>-<mode>/
            unknown = set(spec) - {"train", "grid"}
            require(not unknown, f"modes.{mode}: unknown key(s) {sorted(unknown)} (train, grid)")
            grid = spec.get("grid", {})
            require(all(isinstance(v, list) and v for v in grid.values()),
                    f"modes.{mode}.grid: every option needs a non-empty list of values")
        for key in ("name", "organism_seed"):
            require(key not in self.experiment, f"experiment.{key} is set per setting by the study")
        # Every setting's experiment is built (its tasks and train options checked) now, before anything runs.
        for mode in self.modes:
            for point in grid_points(self.modes[mode]):
                require_path_name(point_name(mode, point), f"modes.{mode} grid point")  # select/models/<point>/
                try:
                    Experiment(ExperimentConfig(**self.setting_options(self.worlds[0], mode, point)), "-",
                               progress=False)
                except ValueError as err:
                    raise ValueError(f"modes.{mode} {point_name(mode, point)}: {err}") from None
        if self.lr_control:
            try:
                Experiment(ExperimentConfig(**self.lr_control_options()), "-", progress=False)
            except ValueError as err:
                raise ValueError(f"lr_control: {err}") from None

    def setting_options(self, world: int, mode: str, chosen: dict) -> dict:
        spec = self.modes[mode]
        train = {**self.experiment.get("train", {}), **spec.get("train", {}), **chosen}
        options = {**self.experiment, "name": f"w{world}-{mode}", "organism_seed": world, "train": train}
        if self.lr_sweep_worlds is not None and world not in self.lr_sweep_worlds:
            options["lr_sweep"] = {}
        return options

    def lr_control_options(self) -> dict:
        train = {**self.experiment.get("train", {}), **self.lr_control.get("train", {})}
        return {**self.experiment, **self.lr_control, "name": "lr_control", "organism_seed": self.worlds[0],
                "train": train}


def load_study_config(path: str | Path) -> StudyConfig:
    import yaml

    from robust_sft.configs import resolve_config
    from robust_sft.core.config_types import from_mapping

    path = resolve_config(path)
    return from_mapping(StudyConfig, yaml.safe_load(read_text(path)) or {}, str(path))


def grid_points(spec: dict) -> list[dict]:
    """The cartesian product of a mode's grid, in config order. LoRA's alpha follows the rank (alpha = 2r, the
    demo's ratio) unless the grid sets it."""
    import typing

    from robust_sft.core.config_types import convert
    from robust_sft.training.trainer import TrainConfig

    grid = spec.get("grid", {})
    hints = typing.get_type_hints(TrainConfig)
    unknown = sorted(set(grid) - set(hints))
    if unknown:
        raise ValueError(f"grid: unknown train option(s) {unknown}")
    typed = {k: [convert(v, hints[k]) for v in values] for k, values in grid.items()}  # YAML's 1e-4 is a string
    points = [dict(zip(typed, values)) for values in itertools.product(*typed.values())] or [{}]
    for point in points:
        if "lora_r" in point and "lora_alpha" not in grid:
            point["lora_alpha"] = 2 * point["lora_r"]
    return points


def point_name(mode: str, point: dict) -> str:
    short = {"learning_rate": "lr", "lora_r": "r", "lora_alpha": "alpha"}
    parts = [f"{short.get(k, k)}{v:.0e}" if k == "learning_rate" else f"{short.get(k, k)}{v}"
             for k, v in point.items() if k != "lora_alpha" or "lora_r" not in point]
    return "-".join([mode, *parts])


# --------------------------------------------------------------------------------------------- the study


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
        analyses = self.analyze([r["dir"] for r in runs.values()] + ([control["dir"]] if control else []))
        timings["analyze"] = time.perf_counter() - start
        return write_summary(self.dir, self.config, chosen, runs, control, analyses, timings)

    # ------------------------------------------------------------------ select

    def selection_experiment(self, mode: str) -> Experiment:
        c = self.config
        options = {**c.setting_options(c.worlds[0], mode, {}), "name": "select", "methods": ["oracle"],
                   "seeds": [c.selection_seed], "validation_limit": c.selection_validation_limit, "lr_sweep": {}}
        return Experiment(ExperimentConfig(**options), self.dir / "select", progress=self.progress)

    def select(self, mode: str) -> dict:
        """The mode's grid point with the oracle's best target validation accuracy (first world, one seed)."""
        exp = self.selection_experiment(mode)
        exp.resolve_base()
        exp.score_data(exp.prepare_data())
        base_accuracy = self.base_validation_accuracy(exp)
        trials = []
        for point in grid_points(self.config.modes[mode]):
            overrides = (("mask", "none"), *sorted(point.items()))
            variant = Variant(point_name(mode, point), "oracle", "oracle", overrides)
            exp.train_variant(variant, self.config.selection_seed)
            summary = json.loads((exp.model_dir(variant, self.config.selection_seed) / "train_summary.json")
                                 .read_text())
            trials.append({"name": variant.name, "options": point, "validation_accuracy": summary["best_metric"],
                           "gain": summary["best_metric"] - base_accuracy})
        best = max(trials, key=lambda t: t["validation_accuracy"])  # max keeps the first of equal values
        logger.info("[select %s] %s: validation accuracy %.3f (base %.3f)", mode, best["name"],
                    best["validation_accuracy"], base_accuracy)
        return {"options": best["options"], "name": best["name"], "base_validation_accuracy": base_accuracy,
                "trials": trials}

    def base_validation_accuracy(self, exp: Experiment) -> float:
        path = exp.dir / "eval" / "base_validation.json"
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
        options = self.config.lr_control_options()
        for name, run in runs.items():
            setting = json.loads((Path(run["dir"]) / "config.json").read_text())
            if {**setting, "name": "lr_control"} == asdict(ExperimentConfig(**options)):
                return {"dir": run["dir"], "same_as": name}
        return {"dir": str(self.dir / "lr_control"), "same_as": None}

    # ------------------------------------------------------------------ analyze

    def analyze(self, run_dirs: list[str]) -> dict[str, dict]:
        """analyze_run on every run, in workers as the runs' units ran (`experiment.executor` / `workers`)."""
        from robust_sft.analysis.mechanism import analyze_run

        executor = ExperimentConfig(**self.config.experiment).executor
        if executor.executor == "local":
            executor = replace(executor, workers=min(executor.workers, len(run_dirs)))
            if executor.workers <= 1:
                return {d: analyze_run(d, kl_limit=self.config.kl_limit, progress=self.progress) for d in run_dirs}
        calls = [(d, self.config.kl_limit, False) for d in run_dirs]
        analyses = run_calls(analyze_run, calls, executor, setup=worker_setup,
                             setup_args=(unit_threads(executor), []), progress=self.progress, desc="analyze")
        return dict(zip(run_dirs, analyses))



# --------------------------------------------------------------------------------------------- summary


def claims_table(results_by_setting: dict[str, dict]) -> list[dict]:
    """Every claim id across settings: its statement and criterion, per setting its status and numbers, and k of n
    (n counts the settings where it was tested)."""
    rows = {}
    for setting, results in results_by_setting.items():
        for claim in results["claims"]:
            row = rows.setdefault(claim["id"], {"id": claim["id"], "claim": claim["claim"],
                                                "criterion": claim["criterion"], "settings": {}})
            row["settings"][setting] = {"status": claim["status"], "evidence": claim["evidence"]}
    for row in rows.values():
        statuses = [s["status"] for s in row["settings"].values()]
        row["held"] = statuses.count("held")
        row["tested"] = sum(s != "not tested" for s in statuses)
    return list(rows.values())


def method_table(results_by_setting: dict[str, dict]) -> dict[str, dict[str, dict]]:
    """Per method (at the config's learning rate), per setting: mean/std TI and BWT, and sample-wise forgetting
    averaged over the other tasks."""
    import numpy as np

    table = {}
    for setting, results in results_by_setting.items():
        for name, m in results["methods"].items():
            if m.get("lr_scale", 1.0) != 1.0:
                continue
            transitions = m.get("transitions", {})
            table.setdefault(name, {})[setting] = {
                "ti": m["mean"]["ti"], "ti_std": m["std"]["ti"], "bwt": m["mean"]["bwt"], "bwt_std": m["std"]["bwt"],
                "lost": float(np.nanmean([t["right_to_wrong"] for t in transitions.values()])) if transitions else None,
                "gained": float(np.nanmean([t["wrong_to_right"] for t in transitions.values()])) if transitions
                else None,
            }
    return table


def write_summary(out: Path, config: StudyConfig, chosen: dict, runs: dict, control: dict | None,
                  analyses: dict[str, dict], timings: dict) -> dict:
    from robust_sft.analysis.mechanism import analysis_units, correlations, plot_mechanism
    from robust_sft.report.figures import plot_lr_control

    results = {name: json.loads((Path(r["dir"]) / "results.json").read_text()) for name, r in runs.items()}
    figures = out / "figures"
    units = []
    for name, run in runs.items():
        methods = results[name]["methods"]
        for unit in analysis_units(analyses[run["dir"]]["methods"]):
            variant = unit["label"]
            family = variant.rsplit("_lr", 1)[0] + " (smaller lr)" if methods[variant].get("lr_scale", 1.0) != 1.0 \
                else variant
            units.append({**unit, "variant": variant, "label": family, "setting": name, "mode": run["mode"]})
    mechanism = {"correlations": correlations(units),
                 "by_mode": {m: correlations([u for u in units if u["mode"] == m]) for m in config.modes},
                 "units": len(units)}
    if units:
        plot_mechanism(units, figures / "mechanism_scatter.png", mechanism["correlations"])
        for mode in config.modes:
            plot_mechanism([u for u in units if u["mode"] == mode], figures / f"mechanism_scatter_{mode}.png",
                           mechanism["by_mode"][mode])
    control_results = json.loads((Path(control["dir"]) / "results.json").read_text()) if control else None
    if control_results:
        plot_lr_control(control_results, figures / "lr_control.png",
                        title="Learning-rate control (world %d, the demo's LoRA options)" % config.worlds[0])
    plot_lr_control_grid(results, figures / "lr_control_by_setting.png")
    plot_claims_grid(claims_table(results), list(results), figures / "claims.png")
    summary = {
        "schema": "robust-sft/study/v1",
        "name": config.name,
        "worlds": config.worlds,
        "modes": {m: {"chosen": chosen[m]["options"], "selection": chosen[m]} for m in config.modes},
        "settings": {name: {**run, "target_base_accuracy": results[name]["base"]["accuracies"][results[name]["target"]],
                            "base_accuracies": results[name]["base"]["accuracies"]} for name, run in runs.items()},
        "claims": claims_table(results),
        "methods": method_table(results),
        "lr_control": ({"same_as": control["same_as"], "claims": [c for c in control_results["claims"]
                                                                  if c["id"] == "f"],
                        "points": {n: {"learning_rate": m.get("learning_rate"), "ti": m["mean"]["ti"],
                                       "ti_std": m["std"]["ti"], "bwt": m["mean"]["bwt"], "bwt_std": m["std"]["bwt"]}
                                   for n, m in control_results["methods"].items()
                                   if m["method"] in ("gt", "stm", "oracle")}}
                       if control_results else None),
        "mechanism": mechanism,
        "seconds": timings,
    }
    write_json(out / "study.json", summary)
    write_text(out / "study.md", render_study(summary))
    return summary


def _status_cell(entry: dict) -> str:
    return {"held": "held", "not held": "**not held**", "not tested": "n/t"}[entry["status"]]


def render_study(summary: dict) -> str:
    settings = list(summary["settings"])
    lines = [f"# {summary['name']}: the paper's claims across worlds and fine-tuning modes", "",
             f"Organism worlds {summary['worlds']} x modes {', '.join(summary['modes'])} = {len(settings)} settings; "
             "every number is a mean over seeds with the sample standard deviation where shown.", "",
             "## Fine-tuning modes (chosen once, on the first world, by the oracle's validation accuracy)", "",
             "| mode | chosen | oracle validation accuracy (base) | grid |", "|---|---|---|---|"]
    for mode, m in summary["modes"].items():
        sel = m["selection"]
        grid = ", ".join(f"{t['name']} {t['validation_accuracy']:.3f}" for t in sel["trials"])
        lines.append(f"| {mode} | {sel['name']} | {max(t['validation_accuracy'] for t in sel['trials']):.3f} "
                     f"({sel['base_validation_accuracy']:.3f}) | {grid} |")
    lines += ["", "## Claims: held in k of n settings", "",
              "| claim | criterion | held | " + " | ".join(settings) + " |", "|---" * (len(settings) + 3) + "|"]
    for row in summary["claims"]:
        cells = [_status_cell(row["settings"][s]) if s in row["settings"] else "-" for s in settings]
        lines.append(f"| ({row['id']}) {row['claim']} | {row['criterion']} | {row['held']} of {row['tested']} | "
                     + " | ".join(cells) + " |")
    lines += ["", "n/t: not tested in that setting (what it needs is named in the setting's report). "
              "Numbers per setting:", ""]
    for row in summary["claims"]:
        lines.append(f"- ({row['id']}) " + "; ".join(f"{s}: {e['evidence']}" for s, e in row["settings"].items()))
    lines += ["", "## TI and BWT per method and setting (%, mean ± std over seeds)", "",
              "| method | " + " | ".join(settings) + " |", "|---" * (len(settings) + 1) + "|"]
    for method, per in summary["methods"].items():
        cells = [f"TI {p['ti']:+.1f} ± {p['ti_std']:.1f}, BWT {p['bwt']:+.1f} ± {p['bwt_std']:.1f}"
                 if (p := per.get(s)) else "-" for s in settings]
        lines.append(f"| {method} | " + " | ".join(cells) + " |")
    lines += ["", "## Sample-wise forgetting (% of base-right items lost / % of base-wrong items gained, mean over "
              "the other tasks and seeds)", "", "| method | " + " | ".join(settings) + " |",
              "|---" * (len(settings) + 1) + "|"]
    for method, per in summary["methods"].items():
        cells = [f"{100 * p['lost']:.1f} / {100 * p['gained']:.1f}" if (p := per.get(s)) and p["lost"] is not None
                 else "-" for s in settings]
        lines.append(f"| {method} | " + " | ".join(cells) + " |")
    control = summary.get("lr_control")
    if control:
        lines += ["", "## Learning-rate control (world %d, the demo's training options%s)" % (
            summary["worlds"][0], f"; the same run as setting {control['same_as']}" if control["same_as"] else ""),
            "", "| variant | learning rate | TI % | BWT % |", "|---|---|---|---|"]
        for name, p in control["points"].items():
            lr = f"{p['learning_rate']:.0e}" if p["learning_rate"] else "-"
            lines.append(f"| {name} | {lr} | {p['ti']:+.1f} ± {p['ti_std']:.1f} | {p['bwt']:+.1f} ± {p['bwt_std']:.1f} |")
        for c in control["claims"]:
            lines.append(f"\n({c['id']}) {c['claim']}: **{c['status']}** ({c['criterion']}). {c['evidence']}")
    mech = summary.get("mechanism") or {}
    if mech.get("correlations"):
        modes = list(mech["by_mode"])
        lines += ["", "## Mechanism: what goes with forgetting (every fine-tuned model of every setting)", "",
                  "Spearman rank correlation of each measure with BWT over all fine-tuned models (n), pooled and per "
                  "fine-tuning mode. A negative rho: the larger the measure, the more the model forgets.", "",
                  "| measure | all | " + " | ".join(modes) + " |", "|---" * (len(modes) + 2) + "|"]

        def cell(c):
            return f"{c['rho']:+.2f} (n {c['n']})" if c["rho"] is not None else f"n/a (n {c['n']})"

        for measure, c in mech["correlations"].items():
            lines.append(f"| {measure} | {cell(c)} | " + " | ".join(cell(mech["by_mode"][m][measure]) for m in modes)
                         + " |")
    lines += ["", "## Time", "", "Wall-clock minutes of the call that wrote this summary, per stage; a stage it found done "
              "(cached by an earlier call) costs next to nothing here.", "", "| stage | minutes |", "|---|---|"]
    lines += [f"| {stage} | {seconds / 60:.1f} |" for stage, seconds in summary["seconds"].items()]
    lines += ["", "Figures: `figures/claims.png`, `figures/lr_control.png`, `figures/lr_control_by_setting.png`, "
              "`figures/mechanism_scatter.png` (+ one per mode); each setting's report, analysis and figures are in its "
              "directory.", ""]
    return "\n".join(lines)


# --------------------------------------------------------------------------------------------- figures


def plot_claims_grid(claims: list[dict], settings: list[str], path: Path) -> None:
    """One cell per (claim, setting): held, not held or not tested."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.colors import ListedColormap

    from robust_sft.core.figures import save_figure

    code = {"held": 2, "not held": 0, "not tested": 1}
    grid = [[code[row["settings"][s]["status"]] if s in row["settings"] else 1 for s in settings] for row in claims]
    fig, ax = plt.subplots(figsize=(1.2 * len(settings) + 3, 0.38 * len(claims) + 1.5))
    ax.imshow(grid, cmap=ListedColormap(["#d9534f", "#dddddd", "#5cb85c"]), vmin=0, vmax=2, aspect="auto")
    ax.set_xticks(range(len(settings)), settings, rotation=30, ha="right")
    ax.set_yticks(range(len(claims)), [f"({r['id']})  {r['held']}/{r['tested']}" for r in claims])
    for i, row in enumerate(grid):
        for j, value in enumerate(row):
            ax.text(j, i, {2: "held", 0: "not held", 1: "n/t"}[value], ha="center", va="center", fontsize=7)
    ax.set_title("The paper's claims per setting (green held, red not held)")
    fig.tight_layout()
    save_figure(fig, path)


def plot_lr_control_grid(results_by_setting: dict[str, dict], path: Path) -> None:
    """The learning-rate control of every setting that swept it: one panel each, TI against BWT."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from robust_sft.core.figures import save_figure
    from robust_sft.report.figures import lr_control_series

    swept = {s: r for s, r in results_by_setting.items() if lr_control_series(r)}
    if not swept:
        return
    cols = min(3, len(swept))
    rows = -(-len(swept) // cols)
    fig, axes = plt.subplots(rows, cols, figsize=(4.6 * cols, 3.8 * rows), squeeze=False)
    for ax, (setting, results) in zip(axes.flat, swept.items()):
        for family, points in lr_control_series(results).items():
            ax.errorbar([p["mean"]["bwt"] for p in points], [p["mean"]["ti"] for p in points],
                        xerr=[p["std"]["bwt"] for p in points], yerr=[p["std"]["ti"] for p in points],
                        fmt="o-", capsize=2, label=family, markersize=4)
        if "oracle" in results["methods"]:
            o = results["methods"]["oracle"]
            ax.plot(o["mean"]["bwt"], o["mean"]["ti"], "k*", markersize=10, label="oracle")
        ax.axhline(0, color="grey", lw=0.6)
        ax.axvline(0, color="grey", lw=0.6)
        f = next((c for c in results["claims"] if c["id"] == "f"), None)
        ax.set_title(f"{setting}: (f) {f['status'] if f else 'n/t'}", fontsize=9)
        ax.set_xlabel("BWT %", fontsize=8)
        ax.set_ylabel("TI %", fontsize=8)
        ax.legend(fontsize=6)
    for ax in list(axes.flat)[len(swept):]:
        ax.axis("off")
    fig.suptitle("Learning-rate control per setting: larger markers to smaller rates along each line", fontsize=9)
    fig.tight_layout()
    save_figure(fig, path)


# --------------------------------------------------------------------------------------------- publish


def check_publish_target(docs: str | Path) -> None:
    """`publish` overwrites files of its own names in `docs`: only into a new, empty or published directory."""
    check_own_dir(docs, "study.json", "published study")


def publish(study_dir: str | Path, docs: str | Path) -> Path:
    """Copy the study's summary, figures and each run's report + results (no models) into `docs`."""
    study_dir, docs = Path(study_dir), Path(docs)
    check_publish_target(docs)
    docs.mkdir(parents=True, exist_ok=True)
    for name in ("study.json", "study.md", "study_config.json"):
        shutil.copy2(study_dir / name, docs / name)
    shutil.copytree(study_dir / "figures", docs / "figures", dirs_exist_ok=True)
    summary = json.loads((study_dir / "study.json").read_text())
    runs = {n: s["dir"] for n, s in summary["settings"].items()}
    if summary.get("lr_control") and not summary["lr_control"]["same_as"]:
        runs["lr_control"] = str(study_dir / "lr_control")
    for name, run_dir in runs.items():
        target = docs / name
        target.mkdir(exist_ok=True)
        for item in ("results.json", "report.md", "analysis.json"):
            if (Path(run_dir) / item).exists():
                shutil.copy2(Path(run_dir) / item, target / item)
        shutil.copytree(Path(run_dir) / "figures", target / "figures", dirs_exist_ok=True)
    return docs


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

    config: str = field(metadata={"help": "Study YAML (study/study.yaml documents every option)."})
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
