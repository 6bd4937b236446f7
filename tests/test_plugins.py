"""Plug-ins: tasks and named models come from entry points; the engine looks them up by name."""

from __future__ import annotations

from importlib.metadata import EntryPoint

import pytest

from robust_sft.core import plugins
from robust_sft.models.sources import ModelSource, model_source, register_model_source
from robust_sft.tasks import list_tasks


def test_the_shipped_plugins_register_the_paper_and_organism_tasks():
    tasks = list_tasks()
    assert {"mbpp", "math", "gsm8k", "arc_challenge"} <= set(tasks)
    assert {"organism/sort", "organism/add", "organism/facts"} <= set(tasks)


def test_the_organism_is_a_named_model_source_whose_world_reaches_its_tasks():
    from robust_sft.organism import SHIPPED_WORLDS, TASKS

    source = model_source("organism")
    assert source is not None and set(source.tasks) == set(TASKS)
    assert source.task_options("organism/add", 2) == {"seed": 2}
    assert source.task_options("mbpp", 2) == {}  # not its task
    assert source.path(SHIPPED_WORLDS[0], False).endswith(f"shipped/seed{SHIPPED_WORLDS[0]}")
    assert "world 1" in source.description(1)


def test_a_hub_name_or_path_is_no_source():
    assert model_source("Qwen/Qwen2.5-0.5B-Instruct") is None
    assert model_source("/models/my-llm") is None


def test_a_source_registered_twice_under_one_name_is_refused():
    toy = ModelSource(path=lambda w, p: "/x", tasks=(), task_options=lambda t, w: {}, description=lambda w: "")
    register_model_source("test/toy", toy)
    register_model_source("test/toy", toy)  # the same object again (a module imported twice) is fine
    with pytest.raises(ValueError, match="registered twice"):
        register_model_source("test/toy", ModelSource(path=toy.path, tasks=(), task_options=toy.task_options,
                                                       description=toy.description))


def test_a_plugin_that_cannot_be_imported_is_named(monkeypatch):
    broken = EntryPoint(name="broken", value="robust_sft_no_such_module", group=plugins.GROUP)
    monkeypatch.setattr(plugins, "entry_points", lambda group: [broken])
    monkeypatch.setattr(plugins, "_loaded", False)
    with pytest.raises(ImportError, match="plug-in 'broken' \\(robust_sft_no_such_module\\)"):
        plugins.load_plugins()


def test_no_plugins_at_all_says_the_package_is_not_installed(monkeypatch):
    monkeypatch.setattr(plugins, "entry_points", lambda group: [])
    monkeypatch.setattr(plugins, "_loaded", False)
    with pytest.raises(RuntimeError, match="not installed"):
        plugins.load_plugins()


def test_the_experiment_takes_model_tasks_and_world_from_any_source(tmp_path, tiny_model_dir):
    """A plug-in's model source, not the organism: the engine resolves it by name alone."""
    import tests.fake_tasks  # noqa: F401  (registers test/* tasks)
    from robust_sft.experiment.config import ExperimentConfig
    from robust_sft.experiment.runner import Experiment

    worlds = []
    register_model_source("test/tiny-source", ModelSource(
        path=lambda world, progress: worlds.append(world) or str(tiny_model_dir),
        tasks=("test/nonempty", "test/even_length", "test/has_space"),
        task_options=lambda task, world: {},
        description=lambda world: f"a tiny source, world {world}"))
    config = ExperimentConfig(model="test/tiny-source", world=4, target="test/even_length", methods=["gt"])
    experiment = Experiment(config, tmp_path / "run", progress=False)
    assert experiment.other_tasks() == ["test/has_space", "test/nonempty"]  # the source's, in name order
    assert experiment.base_model() == str(tiny_model_dir) and worlds == [4]
    assert "a tiny source, world 4" in experiment.describe_plan()
