"""The committed run directories resume from this checkout: every unit they trained and evaluated is up to date
for the code here, wherever the clone lies (their keys were made in other checkouts). A failure means a change to
the code made a published run stale: rerun it (`robust-sft study --config study/study_v2.yaml --out runs/study-v2
--docs docs/study_v2`; `robust-sft run --config real/smollm2_drills.yaml --out runs/real-smollm2-drills`) or undo
the change to what its keys hash."""

import json
from pathlib import Path

import pytest

from robust_sft.experiment.runner import Experiment, ExperimentConfig
from robust_sft.experiment.stages import is_done

RUNS = Path(__file__).resolve().parents[1] / "runs"
STUDY = RUNS / "study-v2"
SETTINGS = sorted(p.parent.name for p in STUDY.glob("w*-lora/plan.json"))


def test_the_committed_study_has_its_four_worlds():
    assert SETTINGS == ["w0-lora", "w1-lora", "w2-lora", "w3-lora"]


@pytest.mark.parametrize("setting", SETTINGS)
def test_every_unit_of_the_committed_study_is_up_to_date_here(setting):
    from robust_sft.organism.store import definition, definition_key, shipped_key

    run = STUDY / setting
    plan = json.loads((run / "plan.json").read_text())
    config = ExperimentConfig(**json.loads((run / "config.json").read_text()))
    # The study's worlds are the shipped builds; a changed world definition would build another model here
    defined = definition_key(definition("v5").OrganismConfig(seed=config.world), "v5")
    assert shipped_key(config.world, "v5") == defined, f"{setting}: the shipped world is not this code's definition"
    experiment = Experiment(config, run, progress=False)
    experiment.resolve_base()  # reads the keys' record, writes nothing
    assert experiment.base_key == plan["base_model"]["key"], f"{setting}: the base model's key changed"
    untrained, unevaluated = stale_units(experiment)
    assert untrained == [], f"{setting}: {len(untrained)} units would train again: {untrained[:5]}"
    assert unevaluated == [], f"{setting}: {len(unevaluated)} units would be evaluated again: {unevaluated[:5]}"
    assert len(experiment.variants) * len(experiment.config.seeds) == 100


def stale_units(experiment: Experiment) -> tuple[list[str], list[str]]:
    """The units that would train again, and those that would be evaluated again."""
    units = [(variant, seed) for variant in experiment.variants for seed in experiment.config.seeds]
    untrained = [f"{v.name} seed {s}" for v, s in units
                 if not is_done(experiment.run_dir.model_dir(v.name, s), experiment.train_key(v, s))]
    unevaluated = [f"{v.name} seed {s}" for v, s in units
                   if not is_done(experiment.run_dir.eval_dir(v.name, s), experiment.evaluation_key(v, s))]
    return untrained, unevaluated


def test_every_unit_of_the_committed_real_model_run_is_up_to_date_here():
    """SmolLM2's run: its base model is the .gguf file's converted copy in the model cache, made here if missing
    (the copy's files must not depend on the environment that converted it: models/gguf.py)."""
    from robust_sft.models.gguf import smollm2_gguf

    try:
        smollm2_gguf()
    except FileNotFoundError as err:
        pytest.skip(f"SmolLM2 is not installed ({err})")
    run = RUNS / "real-smollm2-drills"
    plan = json.loads((run / "plan.json").read_text())
    experiment = Experiment(ExperimentConfig(**json.loads((run / "config.json").read_text())), run, progress=False)
    experiment.resolve_base()
    assert experiment.base_key == plan["base_model"]["key"], "the base model's key changed"
    untrained, unevaluated = stale_units(experiment)
    assert (untrained, unevaluated) == ([], [])
    assert len(experiment.variants) * len(experiment.config.seeds) == 27
