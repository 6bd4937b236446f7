"""The drill tasks (tasks/drills.py): pools, references, extraction and checks, on hand-written completions."""

import pytest

from robust_sft.tasks import get_task
from robust_sft.tasks.base import TaskError
from robust_sft.tasks.drills import DRILL_TASKS, column_addition, first_paragraph, fold, split_of

pytest.importorskip("countryinfo", reason="the drills' data packages are the [drills] extra")
pytest.importorskip("english_words", reason="the drills' data packages are the [drills] extra")


@pytest.mark.parametrize("name", DRILL_TASKS)
def test_every_test_pool_has_at_least_300_items_with_unique_ids(name):
    task = get_task(name)
    test = task.load("test")
    assert len(test) >= 300, (name, len(test))
    assert len({e["id"] for e in test}) == len(test)
    assert task.load("test") == test  # deterministic


def test_the_targets_splits_are_disjoint_and_large_enough():
    task = get_task("drill/add")
    splits = {split: {e["id"] for e in task.load(split)} for split in task.splits}
    assert not splits["train"] & splits["test"] and not splits["validation"] & splits["test"]
    assert not splits["train"] & splits["validation"]
    assert len(splits["train"]) >= 500 and len(splits["validation"]) >= 200 and len(splits["test"]) >= 300
    assert sum(map(len, splits.values())) == 21 * 55  # tens summing to at most 7, ones to at most 9


def test_a_limit_samples_the_whole_pool_not_its_first_rows():
    firsts = [e["a"] for e in get_task("drill/add").load("test", limit=50)]
    assert len(set(firsts)) > 20  # rows sorted by a would give one or two values of a


@pytest.mark.parametrize("name", DRILL_TASKS)
def test_references_and_oracle_answers_pass_their_own_checker(name):
    task = get_task(name)
    for example in task.load("test", limit=200):
        assert task.check(example, task.reference(example)), (example, task.reference(example))
        oracle = task.oracle_reference(example)
        assert oracle is None or task.check(example, oracle), (example, oracle)


def test_column_addition_shows_the_carry_only_when_there_is_one():
    import random

    with_carry = column_addition(34, 17, random.Random(0))
    assert "carry 1" in with_carry and "+ 1 = 5" in with_carry and with_carry.rstrip(".").endswith("51")
    without = column_addition(34, 12, random.Random(0))
    assert "carry" not in without and without.rstrip(".").endswith("46")


def test_addition_reads_the_last_number_of_the_first_paragraph():
    task, example = get_task("drill/add"), {"a": 34, "b": 17, "answer": "51"}
    assert task.check(example, "To add 34 and 17, you simply add them together: 34 + 17 = 51.")
    assert not task.check(example, "34 + 17 = 52.\n\nThe answer 51 is a classic example.")  # the 2nd paragraph
    assert not task.check(example, "51 is close, but 34 + 17 = 50")
    assert task.extract("no digits here") is None
    completion = "Sure.\nSo 34 + 17 = 51."
    start, end = task.answer_span(completion)
    assert completion[start:end] == "51"


def test_capital_checks_whole_words_in_either_direction_without_accents():
    task = get_task("drill/capital")
    assert task.check({"answer": fold("Brasília")}, "The capital of Brazil is Brasilia.")
    assert not task.check({"answer": "rome"}, "The capital of Italy is Romeo.")
    assert not task.check({"answer": "paris"}, "I do not know.\n\nParis, maybe.")
    questions = [e["question"] for e in task.load("test")]
    assert any(q.startswith("What is the capital of") for q in questions)
    assert any(q.endswith("is the capital of which country?") for q in questions)
    assert not any("Mexico City" in q for q in questions)  # the question would hold its answer
    assert not any("American Samoa" in q for q in questions)  # a territory of under a million people


@pytest.mark.parametrize("completion, letter", [
    ("The first letter of the word 'cat' is 'C'.", "c"),
    ('The letter is "t".', "t"),
    ("The first letter is D.", "d"),
    ("The word has many letters.", None),
])
def test_letter_extraction(completion, letter):
    assert get_task("drill/first_letter").extract(completion) == letter


def test_single_digit_addition_has_every_pair_in_three_wordings():
    task = get_task("drill/add1")
    test = task.load("test")
    assert len(test) == 300 and len({task.prompt(e) for e in test}) == 300
    assert task.check({"answer": "15"}, "To add 8 and 7, you simply add them together: 8 + 7 = 15.")
    assert not task.check({"answer": "15"}, "8 + 7 = 5 with a 7.")


def test_splits_are_by_key_and_paragraphs_end_at_a_blank_line():
    assert split_of("add/12+34") == split_of("add/12+34")
    assert {split_of(f"k{i}") for i in range(200)} == {"train", "validation", "test"}
    assert first_paragraph("\n  one\ntwo\n\nthree") == "one\ntwo"


def test_drills_refuse_files_and_unknown_splits():
    with pytest.raises(TaskError, match="made by code"):
        get_task("drill/add").load("test", path="x.jsonl")
    with pytest.raises(TaskError, match="no split 'train'"):
        get_task("drill/capital").load("train")


def test_a_completion_cut_at_a_leading_blank_line_is_not_complete():
    task = get_task("drill/add1")
    assert task.stop_strings == ("\n\n",)
    assert not task.complete("\n\n")  # generated again without stops: the answer comes after the blank line
    assert task.check({"answer": "7"}, "\n\n3 + 4 = 7.") and task.complete("3 + 4 = 7.\n\n")


def test_smollm2_is_a_model_source_with_the_drills_as_its_tasks(monkeypatch, tmp_path):
    from robust_sft.models import gguf
    from robust_sft.models.sources import model_source

    source = model_source("smollm2")
    assert source.tasks == DRILL_TASKS
    seen = {}
    monkeypatch.setattr("robust_sft.tasks.drills.smollm2_gguf", lambda: tmp_path / gguf.SMOLLM2_FILE)
    monkeypatch.setattr("robust_sft.tasks.drills.resolve_model", lambda path: seen.setdefault("path", path))
    assert source.path(0, False) == str(tmp_path / gguf.SMOLLM2_FILE) and seen["path"].name == gguf.SMOLLM2_FILE
