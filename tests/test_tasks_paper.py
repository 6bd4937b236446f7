"""The paper's tasks on small hand-written fixtures: loading, prompts, extraction and checkers."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from robust_sft.tasks import TaskError, get_task, list_tasks
from robust_sft.tasks.math_equiv import equivalent, last_boxed

FIXTURES = Path(__file__).parent / "fixtures"


def by_id(examples: list[dict]) -> dict[str, dict]:
    return {example["id"]: example for example in examples}


# ---- registry and loading ---------------------------------------------------------------------


def test_paper_tasks_are_registered():
    assert {"mbpp", "math", "gsm8k", "arc_challenge"} <= set(list_tasks())
    assert get_task("gsm8k").name == "gsm8k"


@pytest.mark.parametrize("name, directory, split, count", [
    ("gsm8k", "gsm8k", "test", 4), ("arc_challenge", "arc", "test", 4), ("math", "math", "test", 6),
    ("mbpp", "mbpp", "test", 3), ("mbpp", "mbpp", "validation", 1),
])
def test_fixtures_load_with_unique_ids_and_references_that_check(name, directory, split, count):
    task = get_task(name)
    examples = task.load(split, path=str(FIXTURES / directory))
    assert len(examples) == count
    assert len({e["id"] for e in examples}) == count and all(isinstance(e["id"], str) for e in examples)
    for example in examples:
        assert task.prompt(example).strip()
        assert task.check(example, task.reference(example)), example["id"]


def test_ids_are_stable_and_limit_applies():
    first = get_task("gsm8k").load("test", path=str(FIXTURES / "gsm8k"), limit=2)
    assert [e["id"] for e in first] == ["gsm8k/test/0", "gsm8k/test/1"]
    assert get_task("gsm8k").load("test", path=str(FIXTURES / "gsm8k"), limit=0) == []
    assert "mbpp/9001" in by_id(get_task("mbpp").load("test", path=str(FIXTURES / "mbpp")))
    assert "arc_challenge/fixture-numeric-4" in by_id(get_task("arc_challenge").load(
        "test", path=str(FIXTURES / "arc")))


def test_single_file_json_and_parquet_and_saved_dataset(tmp_path):
    task = get_task("math")
    from_json = task.load("test", path=str(FIXTURES / "math" / "math500.json"))
    assert [e["id"] for e in from_json] == [
        "math/test/prealgebra/fixture-1.json", "math/test/algebra/fixture-2.json"]
    assert from_json[0]["answer"] == "3,345"  # the explicit answer field wins over \boxed

    import datasets
    import pyarrow as pa
    import pyarrow.parquet as pq

    rows = [json.loads(line) for line in (FIXTURES / "gsm8k" / "test.jsonl").read_text().splitlines()]
    pq.write_table(pa.Table.from_pylist(rows), tmp_path / "test-00000-of-00001.parquet")
    assert len(get_task("gsm8k").load("test", path=str(tmp_path))) == 4
    datasets.DatasetDict({"test": datasets.Dataset.from_list(rows)}).save_to_disk(str(tmp_path / "saved"))
    assert get_task("gsm8k").load("test", path=str(tmp_path / "saved"))[3]["target"] == "2.5"


def test_errors_name_the_file_and_line(tmp_path):
    bad = tmp_path / "test.jsonl"
    bad.write_text('{"question": "q", "answer": "#### 1"}\n{not json}\n')
    with pytest.raises(TaskError, match=r"test\.jsonl:2: malformed JSON"):
        get_task("gsm8k").load("test", path=str(bad))
    bad.write_text('{"question": "q", "answer": "#### 1"}\n\n{"question": "q"}\n')
    with pytest.raises(TaskError, match=r"test\.jsonl:3: missing field 'answer'"):
        get_task("gsm8k").load("test", path=str(bad))
    bad.write_text('{"question": "q", "answer": "no final number"}\n')
    with pytest.raises(TaskError, match=r"test\.jsonl:1: answer does not end"):
        get_task("gsm8k").load("test", path=str(bad))
    bad.write_text('{"question": "q", "choices": {"text": ["a", "b"], "label": ["A", "B"]}, '
                   '"answerKey": "C"}\n')
    with pytest.raises(TaskError, match=r"test\.jsonl:1: answerKey 'C'"):
        get_task("arc_challenge").load("test", path=str(bad))
    bad.write_text('{"task_id": 1, "text": "t", "code": "c", "test_list": []}\n')
    with pytest.raises(TaskError, match=r"test\.jsonl:1: test_list"):
        get_task("mbpp").load("test", path=str(bad))
    bad.write_text('{"id": "x", "question": "q", "answer": "#### 1"}\n'
                   '{"id": "x", "question": "q", "answer": "#### 2"}\n')
    with pytest.raises(TaskError, match=r"test\.jsonl:2: duplicate id 'x'"):
        get_task("gsm8k").load("test", path=str(bad))


def test_bad_split_and_missing_path():
    with pytest.raises(TaskError, match="no split 'validation'"):
        get_task("gsm8k").load("validation", path=str(FIXTURES / "gsm8k"))
    with pytest.raises(TaskError, match="no data for split 'train'"):
        get_task("gsm8k").load("train", path=str(FIXTURES / "gsm8k"))
    with pytest.raises(TaskError, match="no such file"):
        get_task("gsm8k").load("test", path=str(FIXTURES / "missing"))


def test_unreachable_hub_gives_a_clear_error(monkeypatch):
    import datasets

    def offline(*args, **kwargs):
        raise ConnectionError("no network")

    monkeypatch.setattr(datasets, "load_dataset", offline)
    with pytest.raises(TaskError, match=r"openai/gsm8k \(main\) split 'test'.*no network.*path="):
        get_task("gsm8k").load("test")


# ---- GSM8K -------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def gsm8k():
    task = get_task("gsm8k")
    return task, by_id(task.load("test", path=str(FIXTURES / "gsm8k")))


@pytest.mark.parametrize("completion, expected", [
    ("3*4 = 12, plus 6 is 18.\n#### 18", True),
    ("#### 18.0", True),
    ("#### $18.00", True),
    ("####18 dollars.", True),
    ("She spends $18 in total. The answer is $18.", True),
    ("First guess #### 17\nActually, recomputing:\n#### 18", True),
    ("#### 17", False),
    ("#### 18\nWait, no.\n#### 17", False),
    ("She spends 18 dollars.", False),
    ("#### eighteen", False),
])
def test_gsm8k_check(gsm8k, completion, expected):
    task, examples = gsm8k
    assert task.check(examples["gsm8k/test/0"], completion) is expected


def test_gsm8k_numbers_thousands_negative_decimal(gsm8k):
    task, examples = gsm8k
    assert task.check(examples["gsm8k/test/1"], "1,200 - 300\n#### 900")
    assert task.extract("#### 1,234,567.50") == "1234567.5"
    negative = examples["gsm8k/test/2"]
    assert task.check(negative, "#### -5") and not task.check(negative, "#### 5")
    assert task.check(examples["gsm8k/test/3"], "The answer is 2.50 metres.")
    assert not task.check(examples["gsm8k/test/3"], "#### 2")
    assert task.extract("no answer here") is None
    assert "####" in task.prompt(examples["gsm8k/test/0"]) and "Mia" in task.prompt(examples["gsm8k/test/0"])


# ---- ARC ---------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def arc():
    task = get_task("arc_challenge")
    return task, by_id(task.load("test", path=str(FIXTURES / "arc")))


@pytest.mark.parametrize("completion, expected", [
    ("Plants use carbon dioxide.\nAnswer: B", True),
    ("Answer: (B)", True),
    ("**Answer:** B", True),
    ("The answer is B.", True),
    ("I think (A) is wrong, so the correct option is (B)", True),
    ("Answer: B. carbon dioxide", True),
    ("Answer: A", False),
    ("Answer: A\nOn reflection:\nAnswer: B", True),
    ("Answer: 2", False),  # letters were shown; a digit means nothing here
    ("carbon dioxide", False),
])
def test_arc_check_letter_item(arc, completion, expected):
    task, examples = arc
    assert task.check(examples["arc_challenge/fixture-letters-4"], completion) is expected


def test_arc_numeric_labels_and_option_counts(arc):
    task, examples = arc
    numeric = examples["arc_challenge/fixture-numeric-4"]
    assert numeric["answer"] == "C"
    prompt = task.prompt(numeric)
    assert "A. a ruler" in prompt and "C. a balance" in prompt and "1." not in prompt
    assert task.check(numeric, "Answer: C") and task.check(numeric, "Answer: 3")
    assert not task.check(numeric, "Answer: 1") and not task.check(numeric, "Answer: 9")
    three, five = examples["arc_challenge/fixture-letters-3"], examples["arc_challenge/fixture-letters-5"]
    assert "C. gas" in task.prompt(three) and "D." not in task.prompt(three)
    assert task.check(five, "Answer: E") and "E. wind" in task.prompt(five)
    assert not task.check(three, "Answer: B")


# ---- MATH --------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def math_examples():
    task = get_task("math")
    examples = task.load("test", path=str(FIXTURES / "math"))
    return task, examples


def math_example(math_examples, index):
    task, examples = math_examples
    return task, examples[index]


def test_math_gold_answers_are_last_boxed(math_examples):
    _, examples = math_examples
    assert [e["answer"] for e in examples] == [
        "\\frac{1}{2}", "4\\sqrt{3}", "[1,5)", "9\\text{ cm}", "70^\\circ", "\\$625"]


def test_math_extraction():
    task = get_task("math")
    assert task.extract("So x = 2.\nAnswer: $\\frac{1}{2}$.") == "\\frac{1}{2}"
    assert task.extract("Answer: 3\nAnswer: 4") == "4"
    assert task.extract("**Final Answer:** $\\boxed{7}$") == "7"
    assert task.extract("thus \\boxed{\\frac{1}{\\sqrt{2}}} and done") == "\\frac{1}{\\sqrt{2}}"
    assert task.extract("Answer:\nno answer line, but \\boxed{5}") == "5"
    assert task.extract("nothing to see") is None
    assert last_boxed("\\boxed{a} then \\fbox{b{c}d}") == "b{c}d"
    assert last_boxed("\\boxed{unclosed") is None


MATH_CASES = [  # (fixture index, completion answer, accepted)
    (0, "0.5", True), (0, "$\\dfrac{1}{2}$", True), (0, "1/2", True), (0, "\\frac12", True),
    (0, "\\frac{2}{4}", True),
    (0, "\\frac{1}{3}", False), (0, "2", False),
    (1, "4\\sqrt3", True), (1, "\\sqrt{48}", True), (1, "4 \\sqrt{3}", True), (1, "3\\sqrt{4}", False),
    (2, "[1, 5)", True), (2, "\\left[1,5\\right)", True), (2, "(1,5)", False), (2, "[1,5]", False),
    (3, "9", True), (3, "9 \\text{cm}", True), (3, "\\text{9 cm}", True), (3, "8", False),
    (4, "70", True), (4, "70^{\\circ}", True), (4, "70°", True), (4, "110^\\circ", False),
    (5, "625", True), (5, "\\$625.00", True), (5, "625 dollars", True), (5, "6.25", False),
]


@pytest.mark.parametrize("index, answer, accepted", MATH_CASES)
def test_math_check(math_examples, index, answer, accepted):
    task, example = math_example(math_examples, index)
    assert task.check(example, f"Some work.\nAnswer: {answer}") is accepted
    assert task.check(example, f"Some work, so the answer is $\\boxed{{{answer}}}$.") is accepted


@pytest.mark.parametrize("index, answer, accepted", [c for c in MATH_CASES if "dollars" not in c[1]])
def test_math_fallback_checker_without_math_verify(math_examples, index, answer, accepted):
    _, example = math_example(math_examples, index)
    assert equivalent(answer, example["answer"], use_math_verify=False) is accepted


@pytest.mark.parametrize("predicted, gold, accepted", [
    ("3345", "3,345", True), ("3{,}345", "3345", True), ("(x+1)^2", "x^2+2x+1", True),
    ("x^2+1", "x^2+2x+1", False), ("x = 5", "5", True), ("1, 2", "2,1", True), ("(1,2)", "(2,1)", False),
    ("\\sqrt[3]{8}", "2", True), ("2\\pi", "2 \\pi", True), ("3.14", "\\pi", False), ("5\\%", "5", True),
    ("\\text{Monday}", "\\text{Monday}", True), ("Tuesday", "\\text{Monday}", False), ("", "1", False),
    ("__import__('os').getcwd()", "1", False), ("9^{9^{9}}", "9", False),
])
@pytest.mark.parametrize("use_math_verify", [True, False])
def test_math_equivalence_edge_cases(predicted, gold, accepted, use_math_verify):
    if use_math_verify:
        pytest.importorskip("math_verify")
    assert equivalent(predicted, gold, use_math_verify=use_math_verify) is accepted


def test_math_reference_ends_with_answer_line(math_examples):
    task, examples = math_examples
    reference = task.reference(examples[1])
    assert reference.startswith("Since $48") and reference.endswith("\nAnswer: 4\\sqrt{3}")
    assert "Answer: X" in task.prompt(examples[1]) and "\\sqrt{48}" in task.prompt(examples[1])


# ---- MBPP --------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def mbpp():
    task = get_task("mbpp", timeout=2)
    return task, by_id(task.load("test", path=str(FIXTURES / "mbpp")))


def test_mbpp_prompt_shows_problem_and_asserts(mbpp):
    task, examples = mbpp
    prompt = task.prompt(examples["mbpp/9001"])
    assert "sum of the squares" in prompt and "assert sum_squares([1, 2, 3]) == 14" in prompt
    assert "```python" in prompt
    assert task.reference(examples["mbpp/9001"]) == (
        "```python\ndef sum_squares(nums):\r\n    return sum(n * n for n in nums)\n```")  # CRLF kept


def test_mbpp_plus_schema():
    task = get_task("mbpp")
    [example] = task.load("validation", path=str(FIXTURES / "mbpp"))
    assert example["text"] == "Write a function to count the vowels in a string."
    assert example["setup"] == "import string"
    assert not task.check(example, "```python\ndef count_vowels(s):\n    return 3\n```")


@pytest.mark.parametrize("completion, expected", [
    ("```python\ndef f():\n    return 1\n```\ntext", "def f():\n    return 1"),
    ("Here:\n```py\nx = 1\n```", "x = 1"),
    ("```\nx = 2\n```\n```python\nx = 3\n```", "x = 3"),
    ("```text\nx = 2\n```", "x = 2"),
    ("```python\ndef g():\n    return 2", "def g():\n    return 2"),
    ("def f(): return 1", None),
])
def test_mbpp_extraction(completion, expected):
    assert get_task("mbpp").extract(completion) == expected


def test_mbpp_check_runs_the_asserts(mbpp):
    task, examples = mbpp
    squares, palindrome = examples["mbpp/9001"], examples["mbpp/9002"]
    good = ("Sure!\n```python\ndef sum_squares(xs):\n    total = 0\n    for x in xs:\n"
            "        total += x ** 2\n    return total\n```")
    assert task.check(squares, good)
    wrong = "```python\ndef sum_squares(xs):\n    return sum(xs)\n```"  # 2 of the 3 asserts fail
    assert not task.check(squares, wrong)
    assert not task.check(squares, "```python\ndef other(xs):\n    return 14\n```")
    assert not task.check(squares, "def sum_squares(xs): return sum(x*x for x in xs)")  # no code block
    assert not task.check(palindrome, "```python\ndef is_pal(s):\n    while True:\n        pass\n```")


# ---- where each checker reads, and the hints -------------------------------------------------


WRONG = {"gsm8k": "987654", "arc_challenge": None, "math": "987654", "mbpp": "def nothing():\n    return None"}


@pytest.mark.parametrize("name, directory", [("gsm8k", "gsm8k"), ("arc_challenge", "arc"), ("math", "math"),
                                             ("mbpp", "mbpp")])
def test_answer_span_is_exactly_where_the_checker_reads(name, directory):
    """Replacing the span of a correct reference by a wrong answer makes the checker refuse it: the span is what
    the checker reads, not a guess."""
    task = get_task(name, timeout=5) if name == "mbpp" else get_task(name)
    for example in task.load("test", path=str(FIXTURES / directory)):
        text = task.reference(example)
        start, end = task.answer_span(text)
        assert 0 <= start < end <= len(text)
        wrong = WRONG[name] or next(letter for letter in "ABCD" if letter != example["answer"])
        assert not task.check(example, text[:start] + wrong + text[end:]), (example["id"], text[start:end])
    assert task.answer_span("no answer here") is None


def test_answer_spans_follow_each_extractions_precedence():
    from robust_sft.tasks.arc import choice_span
    from robust_sft.tasks.gsm8k import answer_span as gsm8k_span
    from robust_sft.tasks.math_task import answer_span as math_span
    from robust_sft.tasks.mbpp import code_span

    def read(span_of, text):
        start, end = span_of(text)
        return text[start:end]

    assert read(gsm8k_span, "#### 17\nno, the answer is 3\n#### -1,234.5 dollars") == "-1,234.5"
    assert read(gsm8k_span, "so the answer is $12.") == "12"
    assert read(math_span, "so \\boxed{\\frac{1}{2}}.\nAnswer: $\\frac12$\nAnswer: ") == "$\\frac12$"
    assert read(math_span, "first \\boxed{1} then \\boxed{x^{2}} end") == "x^{2}"
    assert read(choice_span, "(B) looks right, but Answer: (C)") == "C"
    assert read(code_span, "Here:\n```python\n\ndef f():\n    return 1\n\n```\n```python\nx\n```") == \
        "def f():\n    return 1"


def test_hints_say_the_final_answer_and_never_the_references_wording(gsm8k, arc, math_examples, mbpp):
    for task, examples in (gsm8k, arc, (math_examples[0], by_id(math_examples[1]))):
        for example in examples.values():
            hint = task.hint(example)
            text = task.reference(example)
            start, end = task.answer_span(text)
            assert task.extract(hint) == task.extract(text[start:end]) or text[start:end] in hint, (hint, text)
            # content only: no sentence of the reference's working appears in the hint
            assert not any(len(line) > 20 and line in hint for line in text.splitlines()), hint
    task, examples = mbpp
    assert all(task.hint(e) is None for e in examples.values())  # its prompt already shows the expected outputs
