"""The organism: its tasks (examples, styles, checkers), tokenizer, and the cached base-model build."""

from __future__ import annotations

import json
from dataclasses import replace

import pytest
from transformers import AutoModelForCausalLM, AutoTokenizer

from robust_sft.organism import SHIPPED_WORLDS, world
from robust_sft.organism.base_model import (
    OrganismConfig,
    build_base_model,
    cache_key,
    definition_sources,
    shipped_dir,
    shipped_key,
)
from robust_sft.organism.tokenizer import build_tokenizer
from robust_sft.tasks import Task, TaskError, get_task, list_tasks

TASKS = world.TASKS


def _wrong(answer: str) -> str:
    return str(int(answer) + 1) if answer.isdigit() else answer + "q"


# --- tasks ----------------------------------------------------------------------------------------
def test_all_tasks_registered_and_one_target():
    assert len(TASKS) >= 5
    assert set(TASKS) <= set(list_tasks())
    assert world.TARGET in TASKS
    assert all(isinstance(get_task(name), Task) for name in TASKS)


@pytest.mark.parametrize("name", TASKS)
def test_checker_accepts_right_rejects_wrong_in_both_styles(name):
    task = get_task(name)
    for ex in task.load("test", limit=20):
        for text in (task.house_reference(ex), task.human_reference(ex)):
            assert task.check(ex, text), text
            assert task.extract(text) == world.normalize(ex["answer"])
            head, _, _ = text.rpartition("Answer:")
            assert not task.check(ex, f"{head}Answer: {_wrong(ex['answer'])}")
            assert not task.check(ex, head)  # no final answer line
        assert not task.check(ex, "")


def test_extract_takes_last_answer_line_and_normalizes():
    assert world.extract_answer("Answer: 3\nno wait\nAnswer: 1, 2,  3.") == "1 2 3"
    assert world.extract_answer("I think it is 5.") is None
    assert world.extract_answer("Answer:   \n") is None


@pytest.mark.parametrize("name", TASKS)
def test_examples_deterministic_unique_and_splits_disjoint(name):
    task = get_task(name, seed=0)
    pools = {split: task.load(split) for split in task.splits}
    pools["pretrain"] = task.load("pretrain", limit=500)
    assert pools["test"] == get_task(name, seed=0).load("test")
    ids = [e["id"] for pool in pools.values() for e in pool]
    assert len(ids) == len(set(ids))
    keys = {split: {task._key(e) for e in pool} for split, pool in pools.items()}
    for a in keys:
        for b in keys:
            assert a == b or not keys[a] & keys[b], (a, b)
    assert all(len(pool) > 0 for pool in pools.values())
    assert get_task(name, seed=1).load("test", limit=20) != task.load("test", limit=20)


def test_load_rejects_unknown_split_and_respects_limit():
    task = get_task("organism/sort")
    with pytest.raises(TaskError):
        task.load("dev")
    assert len(task.load("train", limit=7)) == 7


def test_target_gt_is_human_style_and_varied():
    target = get_task(world.TARGET)
    examples = target.load("train", limit=60)
    assert all(target.reference(e) == target.human_reference(e) != target.house_reference(e) for e in examples)
    # House style has one shape; human style many (compare the prose with the numbers and separators removed).
    shape = lambda text: "".join(c for c in text if not c.isdigit() and c not in " ,")  # noqa: E731
    assert len({shape(target.house_reference(e)) for e in examples}) == 1
    assert len({shape(target.human_reference(e)) for e in examples}) > 20
    other = get_task("organism/reverse")
    ex = other.load("test", limit=1)[0]
    assert other.reference(ex) == other.house_reference(ex)


def test_rephrase_prompt_shows_instruction_and_reference():
    task = get_task(world.TARGET)
    ex = task.load("train", limit=1)[0]
    ref = task.reference(ex)
    text = task.rephrase_prompt(ex, ref)
    assert task.prompt(ex) in text and ref in text and text != task.prompt(ex)


def test_fact_table_is_seeded():
    assert world.fact_table(0) == world.fact_table(0) != world.fact_table(1)


# --- tokenizer ------------------------------------------------------------------------------------
def test_chat_template_format_and_eos_is_end_of_turn():
    tok = build_tokenizer()
    chat = [{"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Answer: 1"}]
    assert tok.apply_chat_template(chat, tokenize=False) == (
        "<|bos|><|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\nAnswer: 1<|im_end|>\n"
    )
    prompt = tok.apply_chat_template(chat[:1], tokenize=False, add_generation_prompt=True)
    assert prompt.endswith("<|im_end|>\n<|im_start|>assistant\n")
    assert tok.eos_token == "<|im_end|>" and tok.pad_token_id not in (tok.eos_token_id, tok.bos_token_id)


def test_offsets_map_characters_and_specials():
    tok = build_tokenizer()
    text = "<|bos|><|im_start|>user\nSort 3 1!<|im_end|>\n"
    enc = tok(text, return_offsets_mapping=True, add_special_tokens=False)
    pieces = [text[s:e] for s, e in enc["offset_mapping"]]
    assert pieces == ["<|bos|>", "<|im_start|>", *"user\nSort 3 1!", "<|im_end|>", "\n"]
    assert tok.decode(enc["input_ids"]) == text


def test_tokenizer_save_load_round_trip(tmp_path):
    tok = build_tokenizer()
    tok.save_pretrained(tmp_path)
    loaded = AutoTokenizer.from_pretrained(tmp_path)
    text = "Reverse the word ~abc{}.\n\tOK"
    assert loaded(text)["input_ids"] == tok(text)["input_ids"]
    assert loaded.decode(tok(text)["input_ids"]) == text
    assert (loaded.eos_token, loaded.pad_token, loaded.bos_token) == (tok.eos_token, tok.pad_token, tok.bos_token)
    chat = [{"role": "user", "content": "x"}]
    assert loaded.apply_chat_template(chat, tokenize=False, add_generation_prompt=True) == tok.apply_chat_template(
        chat, tokenize=False, add_generation_prompt=True)


# --- base model build and cache -------------------------------------------------------------------
def test_cache_key_changes_with_definition():
    config, sources = OrganismConfig(), definition_sources()
    key = cache_key(config, sources)
    assert key == cache_key(OrganismConfig(), definition_sources())
    assert key != cache_key(replace(config, hidden_size=64), sources)
    assert key != cache_key(replace(config, seed=1), sources)
    assert key != cache_key(config, sources[:-1] + [sources[-1] + "\n# edit"])
    assert any("class Add" in s for s in sources)  # the world's code is part of the key


TINY = OrganismConfig(hidden_size=32, num_layers=1, num_heads=2, intermediate_size=64, steps=3, batch_size=4,
                      warmup_steps=1, pool_size=16, eval_limit=2, threads=1)


def test_build_base_model_tiny_caches_and_loads(tmp_path, monkeypatch):
    monkeypatch.setenv("ROBUST_SFT_CACHE", str(tmp_path))
    path = build_base_model(config=replace(TINY, eval_limit=1), progress=False)
    assert path.parent == tmp_path / "organism"
    report = json.loads((path / "base_eval.json").read_text())
    assert set(report["accuracy"]) == set(TASKS)
    assert AutoModelForCausalLM.from_pretrained(path).config.num_hidden_layers == 1
    assert AutoTokenizer.from_pretrained(path).eos_token == "<|im_end|>"
    stamp = (path / "base_eval.json").stat().st_mtime_ns
    assert build_base_model(config=replace(TINY, eval_limit=1), progress=False) == path  # cached: no rebuild
    assert (path / "base_eval.json").stat().st_mtime_ns == stamp
    assert [p.name for p in (tmp_path / "organism").iterdir()] == [path.name]  # no temp dirs left


# --- the shipped base model -------------------------------------------------------------------------
@pytest.mark.parametrize("seed", SHIPPED_WORLDS)
def test_shipped_organism_was_built_from_this_definition(seed):
    assert shipped_key(seed) is not None, f"world {seed} not shipped: run `robust-sft organism build --seed {seed} --ship`"
    assert shipped_key(seed) == cache_key(OrganismConfig(seed=seed), definition_sources()), (
        f"the shipped organism of world {seed} is stale (the world, tokenizer or builder changed since it was "
        f"built): run `robust-sft organism build --seed {seed} --ship` and commit src/robust_sft/organism/shipped/")
    assert (shipped_dir(seed) / "model.safetensors").stat().st_size < 8 * 2**20  # a few MB inside the package


def test_the_runner_uses_the_shipped_organism(monkeypatch):
    from robust_sft.organism import base_model

    monkeypatch.setattr(base_model, "build_base_model", lambda **kw: pytest.fail("must not build"))
    assert base_model.base_model_path(0) == base_model.shipped_dir(0)


def test_a_stale_shipped_organism_is_not_used(monkeypatch, tmp_path):
    from robust_sft.organism import base_model

    monkeypatch.setattr(base_model, "shipped_key", lambda seed: "0000000000000000")
    monkeypatch.setattr(base_model, "build_base_model", lambda **kw: tmp_path / "built")
    assert base_model.base_model_path(0) == tmp_path / "built"


@pytest.mark.parametrize("seed", SHIPPED_WORLDS)
def test_shipped_organism_reproduces_its_recorded_accuracies(seed):
    """Greedy evaluation of the shipped weights gives the accuracies recorded at build time (same test sets)."""
    from robust_sft.evaluation.engine import evaluate_tasks
    from robust_sft.models.loading import load_model, load_tokenizer

    report = json.loads((shipped_dir(seed) / "base_eval.json").read_text())
    model, tok = load_model(str(shipped_dir(seed))), load_tokenizer(str(shipped_dir(seed)))
    accuracies = evaluate_tasks(model, tok, list(world.TASKS), limit=report["config"]["eval_limit"], batch_size=100,
                                progress=False, task_kwargs={t: {"seed": seed} for t in world.TASKS})
    for task, accuracy in report["accuracy"].items():
        # float kernels differ between CPUs; a near-tie may flip a greedy token on another machine
        assert accuracies[task] == pytest.approx(accuracy, abs=0.03), task


def kernel_setting() -> str:
    """What decides the float kernels here: the CPU, ATen's capability, the BLAS caps and the thread count."""
    import os
    import platform

    import torch

    cpu = platform.processor() or "unknown CPU"
    if os.path.exists("/proc/cpuinfo"):
        cpu = next((line.split(":", 1)[1].strip() for line in open("/proc/cpuinfo") if line.startswith("model name")),
                   cpu)
    caps = {k: os.environ[k] for k in ("ATEN_CPU_CAPABILITY", "MKL_ENABLE_INSTRUCTIONS", "ONEDNN_MAX_CPU_ISA")
            if k in os.environ}
    return (f"CPU {cpu!r}, ATen kernel {torch.backends.cpu.get_cpu_capability()}, "
            f"{OrganismConfig().threads} build threads, caps {caps or 'none'}")


def rebuild_misses(accuracy: dict[str, float], shipped: dict[str, float]) -> list[str]:
    """Each task whose rebuilt base accuracy lands further than REBUILD_TOLERANCE from the shipped build's."""
    return [f"{task} {accuracy[task]:.3f} vs shipped {value:.3f} (tolerance {REBUILD_TOLERANCE})"
            for task, value in shipped.items() if abs(accuracy[task] - value) > REBUILD_TOLERANCE]


def test_rebuild_misses_name_each_task_off_the_shipped_build():
    shipped = {t: 0.3 if t == world.TARGET else 0.97 for t in world.TASKS}
    assert rebuild_misses(shipped, shipped) == []
    add = world.NON_TARGET[0]
    assert rebuild_misses({**shipped, add: 0.7}, shipped) == [f"{add} 0.700 vs shipped 0.970 (tolerance 0.1)"]
    assert rebuild_misses({**shipped, add: 0.87}, shipped) == []  # within the tolerance


@pytest.mark.slow
def test_a_rebuild_here_reaches_the_shipped_accuracies(tmp_path):
    """`robust-sft organism build` of world 0 from scratch (several minutes): close to what ships.

    World v4 meets this on the CPU kind that built the shipped models, not on every CPU: under other CPUs' float
    kernels its add and facts accuracies move by up to 0.2 and 0.35 (docs/organism.md, "Rebuilds on other CPUs").
    The failure message names the kernel and thread setting.
    """
    shipped = json.loads((shipped_dir(0) / "base_eval.json").read_text())
    rebuilt = json.loads((build_base_model(cache_dir=tmp_path, seed=0, progress=False) / "base_eval.json").read_text())
    assert rebuilt["key"] == shipped["key"]
    misses = rebuild_misses(rebuilt["accuracy"], shipped["accuracy"])
    assert not misses, f"a rebuild under {kernel_setting()}: " + "; ".join(misses)


# Another CPU's float kernels make another pretraining trajectory; this much per-task accuracy difference
# is allowed (on this machine kind a rebuild is bit-identical).
REBUILD_TOLERANCE = 0.10


def test_the_kernel_script_tabulates_each_setting_and_the_spread():
    import importlib.util
    from pathlib import Path

    path = Path(__file__).parents[1] / "scripts" / "organism_kernels.py"
    spec = importlib.util.spec_from_file_location("organism_kernels", path)
    kernels = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(kernels)
    assert {c["ATEN_CPU_CAPABILITY"] for c in kernels.KERNELS.values()} == {"default", "avx2", "avx512"}
    rows = [{"setting": "default:1", "capability": "DEFAULT", "build_seconds": 450.4,
             "accuracy": {"organism/add": 0.767, "organism/facts": 0.962}},
            {"setting": "avx2:1", "capability": "AVX2", "build_seconds": 729,
             "accuracy": {"organism/add": 0.833, "organism/facts": 0.808}}]
    lines = kernels.table(rows).splitlines()
    assert lines[2] == "| default:1 | DEFAULT | 0.767 | 0.962 | 450 |"
    assert lines[-1] == "| spread (max - min) | | 0.066 | 0.154 | |"
