"""The organism: its tasks (examples, styles, checkers), tokenizer, and the cached base-model build."""

from __future__ import annotations

import json
from dataclasses import replace

import pytest
from transformers import AutoModelForCausalLM, AutoTokenizer

from robust_sft.organism import world
from robust_sft.organism.versions import VERSIONS
from robust_sft.organism.base_model import OrganismConfig, cache_key, definition_sources
from robust_sft.organism.store import build_base_model, definition, definition_key, shipped_dir, shipped_key
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
SHIPPED = [(version, seed) for version, spec in VERSIONS.items() for seed in spec.shipped_worlds]


@pytest.mark.parametrize("version, seed", SHIPPED)
def test_shipped_organism_was_built_from_this_definition(version, seed):
    build = f"robust-sft organism build --version {version} --seed {seed} --ship"
    assert shipped_key(seed, version) is not None, f"world {seed} of {version} not shipped: run `{build}`"
    assert shipped_key(seed, version) == definition_key(definition(version).OrganismConfig(seed=seed), version), (
        f"the shipped organism {version} of world {seed} is stale (the world, tokenizer or builder changed since it "
        f"was built): run `{build}` and commit src/robust_sft/organism/shipped/")
    assert (shipped_dir(seed, version) / "model.safetensors").stat().st_size < 8 * 2**20  # a few MB in the package


def test_the_runner_uses_the_shipped_organism(monkeypatch):
    from robust_sft.organism import store

    monkeypatch.setattr(store, "build_base_model", lambda **kw: pytest.fail("must not build"))
    assert store.base_model_path(0) == store.shipped_dir(0)


def test_a_stale_shipped_organism_is_not_used(monkeypatch, tmp_path):
    from robust_sft.organism import store

    monkeypatch.setattr(store, "shipped_key", lambda seed, version: "0000000000000000")
    monkeypatch.setattr(store, "build_base_model", lambda **kw: tmp_path / "built")
    assert store.base_model_path(0) == tmp_path / "built"


@pytest.mark.parametrize("version, seed", SHIPPED)
def test_shipped_organism_reproduces_its_recorded_accuracies(version, seed):
    """Greedy evaluation of the shipped weights gives the accuracies recorded at build time (same test sets)."""
    import importlib

    from robust_sft.evaluation.engine import evaluate_tasks
    from robust_sft.models.loading import load_model, load_tokenizer

    path = shipped_dir(seed, version)
    report = json.loads((path / "base_eval.json").read_text())
    tasks = list(importlib.import_module(VERSIONS[version].world).TASKS)
    model, tok = load_model(str(path)), load_tokenizer(str(path))
    accuracies = evaluate_tasks(model, tok, tasks, limit=report["config"]["eval_limit"], batch_size=100,
                                progress=False, task_kwargs={t: {"seed": seed} for t in tasks})
    assert set(report["accuracy"]) == set(tasks)
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
    flags = ""
    if os.path.exists("/proc/cpuinfo"):
        # CPUs of one model name differ in the extensions MKL and oneDNN dispatch on (AMX, VNNI, FP16)
        line = next((line for line in open("/proc/cpuinfo") if line.startswith("flags")), ":")
        flags = " ".join(f for f in line.split(":", 1)[1].split() if f.startswith(("avx512", "amx", "avx_vnni")))
    return (f"CPU {cpu!r} ({flags or 'no AVX-512/AMX flags'}), ATen kernel "
            f"{torch.backends.cpu.get_cpu_capability()}, {OrganismConfig().threads} build threads, "
            f"caps {caps or 'none'}")


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


# --- world v5's design criteria (docs/organism_v5.md), as checks of a build's report ------------------
def _v5_report(**changes) -> dict:
    """A report that meets every v5 criterion; `changes` replace its top-level entries."""
    others = ["organism-v5/add", "organism-v5/reverse", "organism-v5/max", "organism-v5/facts"]
    report = {
        "target": "organism-v5/sort",
        "accuracy": {"organism-v5/sort": 0.33, **{t: 0.72 for t in others}},
        "n": {"organism-v5/sort": 400, **{t: 340 for t in others}},
        "by_kind": {t: {"taught": 0.99, "unknown": 0.05} for t in others},
        "departure_p": {"median": 0.04},
        "hinted_target_accuracy": 0.97,
        "rewrite_accuracy": 0.8,
    }
    return {**report, **changes}


def test_v5_design_criteria_hold_on_a_report_that_meets_them():
    from robust_sft.organism import criteria

    assert criteria.design_misses(_v5_report()) == []


@pytest.mark.parametrize("change, miss", [
    ({"departure_p": {"median": 1e-6}}, "B1 departure-token median p 1e-06"),
    ({"accuracy": {**_v5_report()["accuracy"], "organism-v5/sort": 0.74}}, "B2 organism-v5/sort 0.740"),
    ({"accuracy": {**_v5_report()["accuracy"], "organism-v5/max": 0.99}}, "B3 organism-v5/max 0.990"),
    ({"n": {**_v5_report()["n"], "organism-v5/facts": 30}}, "B3 organism-v5/facts has 30 test items"),
    ({"by_kind": {**_v5_report()["by_kind"], "organism-v5/add": {"taught": 0.8, "unknown": 0}}},
     "B4 organism-v5/add taught items 0.800"),
    ({"hinted_target_accuracy": 0.4}, "B5 hinted organism-v5/sort 0.400"),
    ({"rewrite_accuracy": 0.1}, "C3 rewrites of GT correct 0.100"),
])
def test_v5_design_criteria_name_the_figure_that_misses(change, miss):
    from robust_sft.organism import criteria

    misses = criteria.design_misses(_v5_report(**change))
    assert len(misses) == 1 and misses[0].startswith(miss), misses


def test_v5_rebuild_and_finetune_criteria():
    from robust_sft.organism import criteria

    shipped = {"organism-v5/add": 0.70, "organism-v5/sort": 0.30}
    assert criteria.rebuild_misses({"organism-v5/add": 0.74, "organism-v5/sort": 0.26}, shipped) == []
    assert criteria.rebuild_misses({"organism-v5/add": 0.64, "organism-v5/sort": 0.30}, shipped) == [
        "organism-v5/add 0.640 vs shipped 0.700 (tolerance 0.05)"]
    assert criteria.finetune_misses({"ti": 68.0, "bwt": -2.2}, {"ti": -80.0, "bwt": -23.1}) == []
    assert criteria.finetune_misses({"ti": 40.0, "bwt": -6.0}, {"ti": -80.0, "bwt": -12.0}) == [
        "C1 oracle TI +40.0 % (needs > +50 %)", "C1 oracle BWT -6.0 % (needs >= -5 %)", "C2 GT BWT -12.0 % (needs <= -20 %)"]


# --- world v5 (docs/organism_v5.md): partial by construction ---------------------------------------
def _v5():
    from robust_sft.organism import world_v5

    return world_v5


def test_v5_tasks_are_registered_beside_v4_and_the_source_names_them():
    from robust_sft.models.sources import model_source

    v5 = _v5()
    assert set(v5.TASKS) <= set(list_tasks()) and set(TASKS) <= set(list_tasks())
    source = model_source("organism-v5")
    assert source is not None and source.tasks == v5.TASKS
    assert source.task_options(v5.TARGET, 2) == {"seed": 2} and source.task_options(world.TARGET, 2) == {}
    assert model_source("organism").tasks == world.TASKS
    assert "v5" in source.description(0)


@pytest.mark.parametrize("seed", [0, 1])
def test_v5_other_tasks_interleave_taught_and_unknown_at_the_design_share(seed):
    v5 = _v5()
    for name in v5.NON_TARGET:
        task = get_task(name, seed=seed)
        test = task.load("test")
        assert len(test) >= 300, name
        kinds = [e["kind"] for e in test]
        assert kinds[:10] == ["taught"] * 3 + ["unknown"] + ["taught"] * 2 + ["unknown"] + ["taught"] * 2 + ["unknown"]
        assert kinds.count("taught") / len(kinds) == pytest.approx(v5.TAUGHT_SHARE, abs=0.01), name
        pools = {split: {task._key(e) for e in task.load(split, limit=1000)} for split in ("train", "validation", "test")}
        assert not pools["train"] & pools["test"] and not pools["validation"] & pools["test"], name
        pretrain = task.load("pretrain", limit=4000)
        assert {e["kind"] for e in pretrain} == {"taught"}
        taught = {task._key(e) for e in pretrain}
        assert not {task._key(e) for e in test if e["kind"] == "unknown"} & taught, name  # never shown


def test_v5_look_up_tables_teach_every_taught_test_item_in_pretraining():
    v5 = _v5()
    for name in ("organism-v5/add", "organism-v5/facts", "organism-v5/reverse"):
        task = get_task(name, seed=0)
        taught = {task._key(e) for e in task.load("pretrain", limit=4000)}
        assert {task._key(e) for e in task.load("test") if e["kind"] == "taught"} <= taught, name
    assert "organism-v5/add" in v5.NON_TARGET


def test_v5_unknown_items_need_what_pretraining_never_shows():
    from robust_sft.organism.world_v5 import fact_table

    add = [e for e in get_task("organism-v5/add").load("test") if e["kind"] == "unknown"]
    assert all(e["a"] >= 10 and e["b"] >= 10 and e["a"] % 10 + e["b"] % 10 >= 10 for e in add)  # carry, two digits
    reverse = [e for e in get_task("organism-v5/reverse").load("test") if e["kind"] == "unknown"]
    assert {len(e["word"]) for e in reverse} == {6}
    maxes = [e for e in get_task("organism-v5/max").load("test") if e["kind"] == "unknown"]
    assert all(x.startswith("-") for e in maxes for x in e["items"].split())
    # No pretraining text (any task, any chat kind) names an unknown entity.
    table = fact_table(0)
    unknown = [e for e, facts in table.items() if facts["kind"] == "unknown"]
    assert len(unknown) == 24 and len(table) == 56
    texts = []
    for name in _v5().TASKS:
        task = get_task(name, seed=0)
        for e in task.load("pretrain", limit=4000):
            texts += [task.prompt(e), task.hinted_prompt(e), task.human_reference(e),
                      task.rephrase_prompt(e, task.human_reference(e))]
    corpus = "\n".join(texts)
    assert not [name for name in unknown if name in corpus]


def test_v5_target_is_taught_on_short_lists_and_asked_on_longer_ones_apart_from_pretraining():
    v5 = _v5()
    task = get_task(v5.TARGET, seed=0)
    pretrain = task.load("pretrain", limit=10_000)
    assert {len(e["items"].split()) for e in pretrain} == set(v5.PRETRAIN_LENGTHS)
    taught = {e["items"] for e in pretrain}
    for split, n in (("train", 400), ("validation", 100), ("test", 400)):
        examples = task.load(split, limit=n)
        assert not {e["items"] for e in examples} & taught, split
        kinds = [e["kind"] for e in examples]
        assert kinds[:3] == ["3 digits", "4 digits", "5 digits"]
        assert {kinds.count(k) for k in set(kinds)} <= {n // 3, n // 3 + 1}, split
    assert all(task.check(e, task.house_reference(e)) and task.check(e, task.human_reference(e))
               for e in task.load("test", limit=50))
    assert all(task.check(e, task.reference(e)) for e in task.load("train", limit=50))


def test_v5_target_gt_is_the_annotators_wording_which_pretraining_never_shows():
    """The GT opens with the departure word the soft prior knows, then uses bodies no pretraining chat has."""
    from robust_sft.organism import pretrain_v5
    from robust_sft.organism.tokenizer import build_tokenizer

    v5 = _v5()
    task = get_task(v5.TARGET, seed=0)
    train = task.load("train", limit=200)
    gts = [task.reference(e) for e in train]
    assert all(gt.startswith(v5.ANNOTATOR_OPENER + " ") and gt != task.human_reference(e) for gt, e in zip(gts, train))
    assert len({gt.split(".")[0].split(",")[0][:25] for gt in gts}) >= 5  # varied bodies
    tok = build_tokenizer()
    pools, _ = pretrain_v5.pretraining_pools(tok, pretrain_v5.OrganismConfig(seed=0, pool_size=300))
    pretraining_text = "".join(tok.decode(ids) for kind in pools.values() for rows in kind.values()
                               for ids, _ in rows)
    bodies = {gt.split("\n")[0].removeprefix(v5.ANNOTATOR_OPENER + " ").split(",")[0] for gt in gts}
    assert not any(body in pretraining_text for body in bodies)


def test_v5_hinted_prompt_carries_the_answer_only():
    task = get_task(_v5().TARGET)
    e = task.load("test", limit=1)[0]
    assert task.hinted_prompt(e) == f"{task.prompt(e)}\nHint: the answer is {e['answer']}"


def test_v5_sort_hinted_chats_withhold_the_list_or_show_a_distractor_and_train_the_answer_only():
    """Copying the hint always gives the answer; sorting the shown list never does."""
    from robust_sft.organism import pretrain_v5
    from robust_sft.organism.tokenizer import build_tokenizer

    v5 = _v5()
    task = v5.SortHinted(seed=0)
    chats = task.load("pretrain", limit=2000)
    assert {len(e["items"].split()) for e in chats} == {4, 5}  # the lengths the base model cannot sort
    withheld = [e["shown"] is None for e in chats]
    assert sum(withheld) / len(withheld) == pytest.approx(v5.WITHHELD_SHARE, abs=0.05)
    for e in chats[:200]:
        asked, hint = task.hinted_prompt(e).split("\nHint: the answer is ")
        assert hint == e["answer"] == " ".join(sorted(e["items"].split()))
        if e["shown"] is None:
            assert asked == task.withheld_template
        else:
            assert e["shown"] in asked and " ".join(sorted(e["shown"].split())) != e["answer"]
            assert len(e["shown"].split()) == len(e["items"].split())
        assert task.prompt(e) in task.rephrase_prompt(e, "X")  # rewrite chats show the same prompt
    tok = build_tokenizer()
    ids, labels = pretrain_v5._answer_tokens(tok, task.hinted_prompt(chats[0]), task.house_reference(chats[0]))
    trained = tok.decode([i for i, label in zip(ids, labels) if label != -100])
    assert trained == task.house_reference(chats[0]) + tok.eos_token


def test_departure_index_is_where_the_reference_leaves_the_house_style():
    from robust_sft.organism.measures import departure_index

    assert departure_index("Sure! Answer: 1 2", "Answer: 1 2") == 0
    assert departure_index("Arranged: 1, 2\n\nAnswer: 1 2", "Answer: 1 2") == 1
    assert departure_index("Answer: 1, 2", "Answer: 1 2") == 9
    assert departure_index("Answer: 1 2.", "Answer: 1 2") == 11  # the house answer is a prefix: its end


def test_build_v5_tiny_records_the_design_measures(tmp_path):
    from robust_sft.organism.store import definition

    config = definition("v5").OrganismConfig(hidden_size=32, num_layers=1, num_heads=2, intermediate_size=64,
                                             steps=8, batch_size=4, warmup_steps=1, pool_size=16, eval_limit=4,
                                             threads=1)
    path = build_base_model(cache_dir=tmp_path, config=config, progress=False, version="v5")
    report = json.loads((path / "base_eval.json").read_text())
    assert report["version"] == "v5" and report["target"] == _v5().TARGET
    assert set(report["accuracy"]) == set(_v5().TASKS) and set(report["n"].values()) == {4}
    assert set(report["by_kind"][_v5().TARGET]) == {"3 digits", "4 digits", "5 digits"}
    assert report["departure_p"]["n"] == 400 and 0 < report["departure_p"]["median"] < 1
    assert 0 <= report["hinted_target_accuracy"] <= 1 and 0 <= report["rewrite_accuracy"] <= 1
    assert (path / "eval" / "hinted.jsonl").exists()
    with pytest.raises(TypeError, match="OrganismConfig"):
        build_base_model(cache_dir=tmp_path, config=TINY, version="v5")


def test_the_runner_uses_the_shipped_v5_world(monkeypatch):
    from robust_sft.organism import store

    monkeypatch.setattr(store, "build_base_model", lambda **kw: pytest.fail("must not build"))
    assert store.base_model_path(0, version="v5") == store.shipped_dir(0, "v5")


@pytest.mark.slow
def test_a_v5_rebuild_here_meets_the_design_criteria(tmp_path):
    """World v5, world 0 from scratch (about 15 minutes on two cores): the design's criteria B1-B5 and C3.

    Closeness to the shipped build (A1, every task within 0.05) is not asserted: it held under the six kernel/thread
    settings emulated on one CPU, but a CI machine of another CPU put sort at 0.405 against the shipped 0.340, and
    rebuilds of world 1 on two machines differed by 0.08 on reverse (docs/organism_v5.md, "A1 on other CPUs").
    A rebuild is another world of the same design, not the shipped model; the shipped weights are the world. How far
    this rebuild lands is reported as a warning that names the CPU, its flags, the kernel and the thread setting.
    """
    import warnings

    from robust_sft.organism import criteria

    shipped = json.loads((shipped_dir(0, "v5") / "base_eval.json").read_text())
    path = build_base_model(cache_dir=tmp_path, seed=0, progress=False, version="v5")
    rebuilt = json.loads((path / "base_eval.json").read_text())
    assert rebuilt["key"] == shipped["key"]
    setting = kernel_setting()
    misses = criteria.design_misses(rebuilt)
    assert not misses, f"a v5 rebuild under {setting}: " + "; ".join(misses)
    if far := criteria.rebuild_misses(rebuilt["accuracy"], shipped["accuracy"]):
        warnings.warn(f"a v5 rebuild under {setting} lands off the shipped build (A1): " + "; ".join(far), stacklevel=1)
