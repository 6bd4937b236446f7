"""The committed study run directory resumes from this checkout: every unit it trained and evaluated is up to
date for the code here, wherever the clone lies (its keys were made in another checkout). A failure means a
change to the code made the published study stale: rerun it (`robust-sft study --config study/study_v2.yaml
--out runs/study-v2 --docs docs/study_v2`) or undo the change to what its keys hash."""

import json
from pathlib import Path

import pytest

from robust_sft.experiment.runner import Experiment, ExperimentConfig
from robust_sft.experiment.stages import is_done

STUDY = Path(__file__).resolve().parents[1] / "runs" / "study-v2"
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
    units = [(variant, seed) for variant in experiment.variants for seed in experiment.config.seeds]
    untrained = [f"{v.name} seed {s}" for v, s in units
                 if not is_done(experiment.run_dir.model_dir(v.name, s), experiment.train_key(v, s))]
    unevaluated = [f"{v.name} seed {s}" for v, s in units
                   if not is_done(experiment.run_dir.eval_dir(v.name, s), experiment.evaluation_key(v, s))]
    assert untrained == [], f"{setting}: {len(untrained)} units would train again: {untrained[:5]}"
    assert unevaluated == [], f"{setting}: {len(unevaluated)} units would be evaluated again: {unevaluated[:5]}"
    assert len(units) == 100
