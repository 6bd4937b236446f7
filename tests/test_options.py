"""Every verb: a config dataclass beside its library function; every option declared once; choices checked and shown."""

import dataclasses
import inspect
import json

import pytest

import tests.fake_tasks  # noqa: F401  (registers the test tasks)
from robust_sft.cli import VERBS, main

# Names that several verbs use for different things: each verb declares its own, with its own help and default.
PER_VERB = {
    "model": "the model a verb scores with, trains, samples from or evaluates",
    "data": "SFT data (train: a score file or a masked dataset; import-scores: rows with a score column)",
    "out": "each verb's output (a score file, a masked dataset, a page, a run directory, ...)",
    "scores": "one score file (mask) or several (stats, inspect)",
    "config": "an experiment's or a study's YAML",
    "run_dir": "the run a verb reads",
    "dry_run": "run: print the plan; study: print the settings",
    "split": "a Hub dataset's split (train by default) or a task's (train to generate, test to evaluate)",
    "seed": "training's initialisation, generation's sampling, the organism's world",
    "max_length": "score: the longest conversation; generation: the longest sample scored",
    "tokenizer": "import-scores: the ids' tokenizer (required); inspect: the decoding one (optional)",
}


def verb_configs() -> dict[str, type]:
    return {verb: spec.load(spec.config) for verb, spec in VERBS.items()}


def declaring_class(config: type, name: str) -> type:
    """The class whose own annotations declare field `name` (a verb's config, or a group it inherits)."""
    return next(cls for cls in config.__mro__ if name in cls.__dict__.get("__annotations__", {}))


def duplicate_declarations(configs: dict[str, type], per_verb=()) -> dict[str, set[str]]:
    """Options that several classes declare: {name: the declaring classes}."""
    by_name: dict[str, set[type]] = {}
    for config in configs.values():
        for f in dataclasses.fields(config):
            by_name.setdefault(f.name, set()).add(declaring_class(config, f.name))
    return {name: {c.__qualname__ for c in classes} for name, classes in by_name.items()
            if len(classes) > 1 and name not in per_verb}


def test_every_verb_has_a_config_beside_its_library_function():
    for verb, spec in VERBS.items():
        config, function = spec.load(spec.config), spec.load(spec.function)
        assert dataclasses.is_dataclass(config), verb
        # Beside it: the same module, or the same package as TRL's sft_config.py / sft_trainer.py pair.
        assert config.__module__.rsplit(".", 1)[0] == function.__module__.rsplit(".", 1)[0], (
            f"{verb}: {config.__module__} vs {function.__module__}")
        assert not config.__module__.startswith("robust_sft.cli")
        first, *rest = inspect.signature(function).parameters.values()  # called with the config alone
        assert first.annotation in (config, config.__name__), verb
        assert all(p.default is not inspect.Parameter.empty for p in rest), verb


def test_every_option_is_declared_once_with_help():
    configs = verb_configs()
    assert duplicate_declarations(configs, PER_VERB) == {}
    for verb, config in configs.items():
        for f in dataclasses.fields(config):
            assert f.metadata.get("help", "").strip(), f"{verb} --{f.name} has no help"
    # the shared groups really are shared (a group no verb inherits would be a second declaration in waiting)
    assert declaring_class(configs["train"], "tau") is declaring_class(configs["mask"], "tau") \
        is declaring_class(configs["inspect"], "tau")
    assert declaring_class(configs["score"], "on_error") is declaring_class(configs["import-scores"], "on_error")
    assert declaring_class(configs["generate"], "backend") is declaring_class(configs["evaluate"], "backend")
    assert declaring_class(configs["generate"], "limit") is declaring_class(configs["evaluate"], "limit")


def test_the_duplicate_check_finds_an_option_declared_twice():
    @dataclasses.dataclass
    class A:
        tau: float = dataclasses.field(default=2.5, metadata={"help": "x"})

    @dataclasses.dataclass
    class B:
        tau: float = dataclasses.field(default=2.5, metadata={"help": "x"})

    @dataclasses.dataclass
    class C(A):
        other: int = 0

    assert duplicate_declarations({"a": A, "b": B}) == {"tau": {"test_the_duplicate_check_finds_an_option_declared_twice."
                                                                 "<locals>.A", "test_the_duplicate_check_finds_an_option_"
                                                                 "declared_twice.<locals>.B"}}
    assert duplicate_declarations({"a": A, "c": C}) == {}
    assert duplicate_declarations({"a": A, "b": B}, per_verb={"tau"}) == {}


@pytest.mark.parametrize("verb, choices", [
    ("train", ["{none,threshold,ratio,lowest,random,dpf,stm_dpf,answer_aware,hindsight,keep_departure}",
               "{lora,dora,full}", "{nll,dft,eaft,infosft,sdft}",
               "{auto,float32,bfloat16,float16}"]),
    ("mask", ["{none,threshold,ratio,lowest,random,dpf,stm_dpf,answer_aware,hindsight,keep_departure}"]),
    ("score", ["{raise,skip}", "{right,left}"]),
    ("import-scores", ["{raise,skip}", "{perplexity,nll}"]),
    ("generate", ["{self_output,rephrase}", "{hf,vllm}"]),
    ("evaluate", ["{hf,vllm}", "{robust-sft,lm-eval}"]),
])
def test_help_shows_the_choices(capsys, verb, choices):
    with pytest.raises(SystemExit) as exit_info:
        main([verb, "--help"])
    assert exit_info.value.code == 0
    out = capsys.readouterr().out
    assert all(choice in out for choice in choices), out


def test_a_value_outside_the_choices_is_refused_on_the_command_line_and_in_python(tmp_path, capsys):
    from robust_sft.core.config_types import ConfigError, from_mapping
    from robust_sft.data.synthesis import GenerateConfig
    from robust_sft.experiment.config import ExperimentConfig
    from robust_sft.training.config import TrainConfig

    with pytest.raises(SystemExit):
        main(["train", "--model", "m", "--data", "d", "--output_dir", "o", "--finetuning", "qlora"])
    assert "invalid choice: 'qlora'" in capsys.readouterr().err
    with pytest.raises(ConfigError, match="finetuning must be one of lora, dora, full, not 'qlora'"):
        TrainConfig(model="m", data="d", output_dir="o", finetuning="qlora")
    with pytest.raises(ConfigError, match="x.yaml: mask must be one of none, threshold"):
        from_mapping(TrainConfig, {"model": "m", "data": "d", "output_dir": "o", "mask": "magic"}, "x.yaml")
    with pytest.raises(ConfigError, match="backend must be one of hf, vllm, not 'tpu'"):
        GenerateConfig(model="m", task="t", out="x.jsonl", backend="tpu")
    with pytest.raises(ConfigError, match="backend must be one of hf, vllm"):
        ExperimentConfig(backend="tpu")
    assert TrainConfig(model="m", data="d", output_dir="o", dtype="bfloat16").dtype == "bfloat16"


def test_library_functions_check_their_choices_too():
    from robust_sft.core.config_types import ConfigError, convert
    from robust_sft.data.examples import read_examples
    from robust_sft.models.loading import resolve_dtype

    with pytest.raises(ConfigError, match="on_error must be one of raise, skip, not 'ignore'"):
        read_examples("nowhere.jsonl", on_error="ignore")
    with pytest.raises(ConfigError, match="dtype must be one of auto, float32"):
        resolve_dtype("float8", "cpu")
    from typing import Literal

    assert convert("2", Literal[1, 2]) == 2  # converted to the choices' type


def test_mask_options_are_one_policy():
    from robust_sft.masking.export import MaskConfig
    from robust_sft.masking.policies import MaskPolicy
    from robust_sft.training.config import TrainConfig

    options = {"mask": "random", "tau": 3.0, "ratio": 0.2, "mask_seed": 7, "dpf_tau": 2.0}
    expected = MaskPolicy(kind="random", tau=3.0, ratio=0.2, seed=7, dpf_tau=2.0)
    assert MaskConfig(scores="s", out="o.parquet", **options).policy() == expected
    assert TrainConfig(model="m", data="d", output_dir="o", **options).policy() == expected
    with pytest.raises(ValueError, match="the ratio policy needs `ratio`"):
        MaskConfig(scores="s", out="o.parquet", mask="ratio")


# --------------------------------------------------------------------------------------------- CLI = Python


def test_stats_and_mask_from_the_command_line_equal_their_functions(tmp_path, scores_path, capsys):
    from robust_sft.masking.export import MaskConfig, mask
    from robust_sft.scoring.stats import StatsConfig, summarize_files

    assert main(["stats", f"GT={scores_path}", "--json", "--taus", "2", "3"]) == 0
    assert json.loads(capsys.readouterr().out) == json.loads(json.dumps(
        summarize_files(StatsConfig(scores=[f"GT={scores_path}"], taus=[2.0, 3.0]))))
    assert main(["mask", scores_path, "--mask", "random", "--ratio", "0.2", "--out", str(tmp_path / "a.parquet")]) == 0
    printed = json.loads(capsys.readouterr().out.rsplit("wrote", 1)[0])
    assert printed == mask(MaskConfig(scores=scores_path, mask="random", ratio=0.2, out=str(tmp_path / "b.parquet")))
    assert (tmp_path / "a.parquet").read_bytes() != b"" and (tmp_path / "b.parquet").exists()


def test_generate_from_the_command_line_equals_the_function(tmp_path, tiny_model_dir, capsys):
    from robust_sft.data.synthesis import GenerateConfig, generate

    options = {"model": tiny_model_dir, "task": "test/nonempty", "limit": 3, "n": 2, "max_new_tokens": 6,
               "batch_size": 4}
    argv = [x for k, v in options.items() for x in (f"--{k}", str(v))]
    assert main(["generate", *argv, "--out", str(tmp_path / "cli.jsonl")]) == 0
    report = generate(GenerateConfig(**options, out=str(tmp_path / "py.jsonl")))
    assert (tmp_path / "cli.jsonl").read_text() == (tmp_path / "py.jsonl").read_text()
    cli_report = json.loads((tmp_path / "cli.report.json").read_text())  # the run directory's naming
    assert {k: v for k, v in cli_report.items() if k != "seconds"} == {k: v for k, v in report.items()
                                                                        if k != "seconds"}
    assert report["kept"] >= 1


def test_generated_data_with_no_verified_example_is_an_error_with_its_report(tmp_path, tiny_model_dir):
    from robust_sft.data.synthesis import GenerationSettings, write_generated_data
    from robust_sft.models.loading import load_model, load_tokenizer
    from robust_sft.tasks import get_task

    task = get_task("test/nonempty")
    out = tmp_path / "so.jsonl"
    with pytest.raises(ValueError, match="self_output: no generated example passed the checker"):
        write_generated_data("self_output", load_model(tiny_model_dir), load_tokenizer(tiny_model_dir), task,
                             task.load("train", limit=2), GenerationSettings(n=2),
                             out, sampler=lambda conversations, config: [[" "] * 2 for _ in conversations])
    assert not out.exists() and json.loads((tmp_path / "so.report.json").read_text())["kept"] == 0


def test_evaluate_from_the_command_line_equals_the_function(tmp_path, tiny_model_dir, capsys):
    from robust_sft.evaluation.model import EvaluateConfig, evaluate

    tasks = ["test/nonempty", "test/has_space"]
    assert main(["evaluate", "--model", tiny_model_dir, "--tasks", *tasks, "--limit", "4",
                 "--out", str(tmp_path / "cli")]) == 0
    printed = json.loads(capsys.readouterr().out)
    assert printed == evaluate(EvaluateConfig(model=tiny_model_dir, tasks=tasks, limit=4, out=str(tmp_path / "py")))
    assert (tmp_path / "cli" / "accuracies.json").read_text() == (tmp_path / "py" / "accuracies.json").read_text()


def test_what_to_load_for_a_trained_model_directory(tmp_path):
    from robust_sft.models.loading import is_adapter, trained_model_parts, vllm_model_parts

    full, adapter = tmp_path / "full", tmp_path / "lora"
    full.mkdir()
    adapter.mkdir()
    (adapter / "adapter_config.json").write_text(json.dumps({"r": 8, "use_dora": False}))
    assert not is_adapter(full) and is_adapter(adapter)
    assert trained_model_parts("base", full) == (str(full), None)
    assert trained_model_parts("base", adapter) == ("base", str(adapter))
    assert vllm_model_parts("base", adapter) == ("base", str(adapter))  # LoRA: served as an adapter
    assert vllm_model_parts("base", full) == (str(full), None)


def test_models_is_the_only_caller_of_from_pretrained():
    from pathlib import Path

    import robust_sft

    package = Path(robust_sft.__file__).parent
    callers = sorted(str(p.relative_to(package)) for p in package.rglob("*.py")
                     if ".from_pretrained(" in p.read_text() and p.parent.name != "models")
    assert callers == []


def test_each_verbs_function_is_importable_from_its_package():
    import importlib

    for verb, spec in VERBS.items():
        module, name = spec.function.split(":")
        package = importlib.import_module(f"robust_sft.{module.split('.')[0]}")
        importlib.import_module(f"robust_sft.{module}")  # a submodule of the same name would now shadow it
        if name in getattr(package, "__all__", ()):
            assert getattr(package, name) is spec.load(spec.function), verb
    from robust_sft.data import generate
    from robust_sft.evaluation import evaluate
    from robust_sft.scoring import summarize_files

    assert callable(generate) and callable(evaluate) and callable(summarize_files)
