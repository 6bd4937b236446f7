"""Every shipped experiment config loads and dry-runs here: no model is loaded and nothing is downloaded."""

from __future__ import annotations

import re
import socket
from itertools import product
from pathlib import Path

import pytest

from robust_sft.cli import main
from robust_sft.data.synthesis import GenerationSettings
from robust_sft.experiment.runner import load_config, plan_variants
from robust_sft.training.config import TrainConfig

ROOT = Path(__file__).resolve().parent.parent
CONFIGS = ROOT / "src" / "robust_sft" / "configs"
PAPER = sorted((CONFIGS / "paper").glob("*.yaml"))
# Every experiment config the package ships (the study's has its own schema: tests/test_study.py).
SHIPPED = sorted(CONFIGS.glob("*.yaml")) + PAPER + sorted((CONFIGS / "organism").glob("*.yaml")) + sorted(
    (CONFIGS / "real").glob("*.yaml"))
MODELS = ("google/gemma-2-2b-it", "meta-llama/Meta-Llama-3-8B-Instruct", "mistralai/Mistral-7B-Instruct-v0.3")
TASKS = ("mbpp", "math", "gsm8k", "arc_challenge")


@pytest.fixture()
def offline_and_no_model(monkeypatch):
    """Loading a model or tokenizer fails the test; a network connection is recorded and refused."""
    import transformers

    connections = []

    def refuse(self, address, *args, **kwargs):
        connections.append(address)
        raise OSError(f"network access in a dry run: {address}")

    def no_model(*args, **kwargs):
        raise AssertionError("a dry run must not load a model or tokenizer")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    for name in ("AutoModelForCausalLM", "AutoTokenizer"):
        monkeypatch.setattr(getattr(transformers, name), "from_pretrained", no_model)
    return connections


def test_the_paper_grid_is_complete():
    cells = {(load_config(p).model, load_config(p).target) for p in PAPER}
    assert cells == set(product(MODELS, ("mbpp", "math")))
    assert len(PAPER) == 6


@pytest.mark.parametrize("path", SHIPPED, ids=lambda p: str(p.relative_to(ROOT)))
def test_config_dry_runs_offline(path, tmp_path, capsys, offline_and_no_model):
    config = load_config(path)
    assert main(["run", str(path), "--dry_run", "--out", str(tmp_path / "run")]) == 0
    plan = capsys.readouterr().out
    n_runs = len(plan_variants(config)) * len(config.seeds)
    assert plan.splitlines()[-1].endswith(f"= {n_runs} fine-tuning runs")
    assert re.search(r"target train examples: (\d+|unknown here)", plan)
    assert plan.count("  train     ") == n_runs
    assert offline_and_no_model == []
    assert not (tmp_path / "run").exists()  # a dry run writes nothing
    if config.quick:  # the config's first look dry-runs too
        assert main(["run", str(path), "--quick", "--dry_run", "--out", str(tmp_path / "quick")]) == 0
        assert f"experiment '{config.name}-quick'" in capsys.readouterr().out
    for criterion in config.criteria:  # every pre-registered criterion is listed in the plan
        assert f"criterion ({criterion['id']}) {criterion['method']}" in plan


@pytest.mark.parametrize("path", PAPER, ids=lambda p: p.name)
def test_paper_config_follows_the_paper(path, tmp_path, capsys, offline_and_no_model):
    config = load_config(path)
    mistral = config.model.startswith("mistralai/")
    assert set(config.others) == set(TASKS) - {config.target} and len(config.others) == 3
    assert config.methods == ["gt", "self_output", "rephrase", "stm"]
    assert config.taus == ([2, 2.5, 3] if mistral else [2.5])
    assert config.seeds == [0, 1, 2] and config.select_best_epoch and config.backend == "vllm"

    train = TrainConfig(model=config.model, data="unused", output_dir="unused", **config.train)
    assert (train.finetuning, train.lora_r, train.lora_alpha, train.target_modules) == ("lora", 16, 32, "all-linear")
    assert isinstance(train.learning_rate, float) and train.learning_rate == pytest.approx(2e-5)
    assert (train.lr_scheduler_type, train.num_train_epochs, train.dtype) == ("cosine", 3, "bfloat16")
    assert train.per_device_train_batch_size * train.gradient_accumulation_steps == 16

    generation = GenerationSettings(**config.generation)
    assert (generation.n, generation.temperature, generation.top_p) == (32, 0.7, 0.95)
    assert generation.max_new_tokens == (1024 if config.target == "math" else 512)

    assert main(["run", str(path), "--dry_run", "--out", str(tmp_path / "run")]) == 0
    plan = capsys.readouterr().out
    n_runs = 18 if mistral else 12
    assert f"{n_runs // 3} variants x 3 seeds = {n_runs} fine-tuning runs" in plan
    for name in ["gt", "self_output", "rephrase"] + [f"stm@{tau:g}" for tau in config.taus]:
        assert all(f"models/{name}/seed{seed}" in plan for seed in (0, 1, 2)), name
    assert "[4 tasks]" in plan and f"target: {config.target}; other tasks: {', '.join(config.others)}" in plan


@pytest.mark.parametrize("path", PAPER, ids=lambda p: p.name)
def test_paper_config_header_says_how_to_run_it(path):
    header = []
    for line in path.read_text().splitlines():
        if not line.startswith("#"):
            break
        header.append(line)
    text = "\n".join(header)
    assert f"robust-sft run paper/{path.name}" in text
    assert "accelerate launch" in text and "variants x 3 seeds" in text


def test_the_shipped_study_config_loads_by_name_and_dry_runs(offline_and_no_model, capsys):
    from robust_sft.study.config import load_study_config

    config = load_study_config("study/study.yaml")  # a shipped config, named relative to the package's configs
    assert config.worlds and config.modes
    assert main(["study", "study/study.yaml", "--out", "runs/never-made", "--dry_run"]) == 0
    assert "world" in capsys.readouterr().out


def test_a_config_name_that_is_neither_a_file_nor_shipped_lists_the_shipped_ones():
    with pytest.raises(FileNotFoundError, match="paper/gemma-2-2b-it_mbpp.yaml"):
        load_config("paper/no-such-config.yaml")
