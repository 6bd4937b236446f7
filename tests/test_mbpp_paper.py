"""MBPP as the paper builds and scores it: the authors' exact conversations, MBPP+'s extended tests,
no pass without running every assert, setup code after the solution."""

import json
from pathlib import Path

import pytest

from robust_sft.tasks import get_task
from tests.shared_files import shared_path


def load_rows(tmp_path, rows, split="test"):
    path = tmp_path / f"{split}.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return get_task("mbpp", timeout=5).load(split, path=str(path))


def block(code):
    return f"```python\n{code}\n```"


SQUARES = {"task_id": 1, "text": "Sum of squares.", "code": "def sq(xs):\r\n\treturn sum(x * x for x in xs)",
           "test_list": ["assert sq([1, 2]) == 5", "assert sq([]) == 0"], "test_setup_code": ""}
GOOD = block("def sq(xs):\n    return sum(x * x for x in xs)")


# ------------------------------------------------------------------ the paper's data, exactly


@pytest.mark.parametrize("split, n", [("train", 374), ("validation", 90)])
def test_paper_conversations_reproduced_byte_for_byte(split, n):
    path = shared_path(f"paper-data/mbpp_ground_truth_{split}.jsonl")
    task = get_task("mbpp")
    examples = task.load(split, path=str(path))
    rows = [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]
    assert len(examples) == len(rows) == n
    for example, row in zip(examples, rows):
        assert [task.prompt(example), task.reference(example)] == [m["value"] for m in row["conversations"]], example["id"]
    assert any("\r\n" in task.reference(e) for e in examples) and any("\t" in task.reference(e) for e in examples)


def test_paper_train_set_answer_tokens_under_llama3():
    """374 replies + end-of-turn under Llama-3's original template: 23,212 tokens, no trailing header trained."""
    from transformers import AutoTokenizer

    from robust_sft.data.examples import Example, tokenize_examples

    tokenizer = AutoTokenizer.from_pretrained(shared_path("tokenizers/llama3"))
    task = get_task("mbpp")
    examples = task.load("train", path=str(shared_path("paper-data/mbpp_ground_truth_train.jsonl")))
    chats = [Example(e["id"], [{"role": "user", "content": task.prompt(e)},
                               {"role": "assistant", "content": task.reference(e)}]) for e in examples]
    tokenized = tokenize_examples(tokenizer, chats, 4096, progress=False)
    assert sum(sum(t.answer_mask) for t in tokenized) == 23212
    first = tokenized[0]
    assert tokenizer.decode([i for i, m in zip(first.input_ids, first.answer_mask) if m]) == (
        task.reference(examples[0]) + "<|eot_id|>")


def test_whitespace_is_kept_unless_normalising_is_asked(tmp_path):
    (example,) = load_rows(tmp_path, [SQUARES])
    assert get_task("mbpp").reference(example) == "```python\ndef sq(xs):\r\n\treturn sum(x * x for x in xs)\n```"
    path = tmp_path / "test.jsonl"
    (normalised,) = get_task("mbpp", normalize_whitespace=True).load("test", path=str(path))
    assert normalised["code"] == "def sq(xs):\n\treturn sum(x * x for x in xs)"


# ------------------------------------------------------------------ every assert must run


@pytest.mark.parametrize("exit_call", [
    "import sys\nsys.exit(0)",
    "import os\nos._exit(0)",
    "exit()",
    "raise SystemExit",
])
def test_a_program_that_exits_before_its_asserts_fails(tmp_path, exit_call):
    (example,) = load_rows(tmp_path, [SQUARES])
    task = get_task("mbpp", timeout=5)
    wrong = block(f"def sq(xs):\n    return 42\n{exit_call}")
    assert not task.check(example, wrong)
    assert not task.check(example, block(f"def sq(xs):\n    return sum(x * x for x in xs)\n{exit_call}"))
    assert task.check(example, GOOD)


@pytest.mark.parametrize("main_block", [
    "if __name__ == '__main__':\n    print(sq([1]))\n    import sys\n    sys.exit(0)",
    "if __name__ == \"__main__\":\n    import os\n    os._exit(0)",
])
def test_a_main_block_does_not_run_as_in_evalplus(tmp_path, main_block):
    (example,) = load_rows(tmp_path, [SQUARES])
    task = get_task("mbpp", timeout=5)
    assert task.check(example, block(f"def sq(xs):\n    return sum(x * x for x in xs)\n{main_block}"))
    assert not task.check(example, block(f"def sq(xs):\n    return 42\n{main_block}"))
    future = "from __future__ import annotations\nimport dataclasses, pickle\n@dataclasses.dataclass\nclass P:\n    x: int\n"
    assert task.check(example, block(future + "pickle.dumps(P(1))\ndef sq(xs):\n    return sum(x * x for x in xs)"))


def test_a_solution_that_exits_when_called_fails(tmp_path):
    (example,) = load_rows(tmp_path, [SQUARES])
    sneaky = block("import sys\ndef sq(xs):\n    sys.exit(0)")
    assert get_task("mbpp", timeout=5).check_many([example, example], [sneaky, GOOD]) == [False, True]


def test_setup_code_that_uses_the_solutions_names_runs_after_it(tmp_path):
    row = {"task_id": 927, "text": "Height of a tree.", "code": "",
           "test_list": ["assert max_height(root) == 2"],
           "test_setup_code": "root = Node(1)\r\nroot.left = Node(2)"}
    (example,) = load_rows(tmp_path, [row])
    solution = block("class Node:\n    def __init__(self, v):\n        self.v, self.left, self.right = v, None, None\n"
                     "def max_height(n):\n    return 0 if n is None else 1 + max(max_height(n.left), max_height(n.right))")
    assert get_task("mbpp", timeout=5).check(example, solution)


# ------------------------------------------------------------------ MBPP+ extended tests

EVALPLUS_ROW = {  # EvalPlus's release schema: inputs only; expected outputs are the reference's
    "task_id": "Mbpp/2", "prompt": '"""\nHalf of a number.\nassert half(4) == 2.0\n"""\n',
    "code": "def half(x):\n    return x / 2", "entry_point": "half", "atol": 0,
    "test_list": ["assert half(4) == 2.0"], "test_imports": [],
    "base_input": [[4], [10]], "plus_input": [[3], [0.1], [-7]],
}
HUB_PLUS_SCRIPT = '''import numpy as np
from math import inf

def is_floats(x) -> bool:
    if isinstance(x, float):
        return True
    if isinstance(x, (list, tuple)):
        return all(isinstance(i, float) for i in x)
    if isinstance(x, np.ndarray):
        return x.dtype == np.float64 or x.dtype == np.float32
    return False

def assertion(out, exp, atol):
    exact_match = out == exp
    if atol == 0 and is_floats(exp):
        atol = 1e-6
    if not exact_match and atol != 0:
        assert np.allclose(out, exp, rtol=1e-07, atol=atol)
    else:
        assert exact_match

inputs = [[4], [10], [3], [0.1], [-7]]
results = [2.0, 5.0, 1.5, 0.05, -3.5]
for i, (inp, exp) in enumerate(zip(inputs, results)):
    assertion(half(*inp), exp, 0)
'''
HUB_ROW = {k: v for k, v in EVALPLUS_ROW.items() if k not in ("base_input", "plus_input", "entry_point", "atol")}
HUB_ROW["test"] = HUB_PLUS_SCRIPT


@pytest.mark.parametrize("row", [EVALPLUS_ROW, HUB_ROW], ids=["base_input-plus_input", "hub-test-script"])
def test_mbpp_plus_extended_tests_run(tmp_path, row):
    (example,) = load_rows(tmp_path, [row])
    task = get_task("mbpp", timeout=5)
    assert "plus" in example
    only_the_base_asserts = block("def half(x):\n    return 2.0 if x == 4 else x // 2")
    float_noise = block("def half(x):\n    return x / 2 if x != 0.1 else 0.05 + 1e-9")  # within atol 1e-6
    assert task.check_many([example] * 3, [GOOD.replace("sq(xs)", "half(x)").replace("sum(x * x for x in xs)", "x / 2"),
                                           only_the_base_asserts, float_noise]) == [True, False, True]


def test_evalplus_reference_outputs_are_compared_exactly_for_non_floats(tmp_path):
    row = dict(EVALPLUS_ROW, code="def half(x):\n    return [x, x]", test_list=["assert half(1) == [1, 1]"],
               base_input=[[1]], plus_input=[["a"]])
    (example,) = load_rows(tmp_path, [row])
    task = get_task("mbpp", timeout=5)
    assert task.check(example, block("def half(x):\n    return [x, x]"))
    assert not task.check(example, block("def half(x):\n    return [1, 1]"))


# ------------------------------------------------------------------ the task's version covers its checker's sandbox


def sandbox_modules() -> list[str]:
    """Every module of the sandbox package but its __init__ (lazy re-exports, which decide no check)."""
    import robust_sft.sandbox as package

    return sorted(f"robust_sft.sandbox.{p.stem}" for p in Path(package.__file__).parent.glob("*.py")
                  if p.stem != "__init__")


def test_mbpp_version_hashes_every_sandbox_module():
    from robust_sft.tasks.base import task_modules

    modules = task_modules(get_task("mbpp"))
    assert len(sandbox_modules()) >= 7 and set(sandbox_modules()) <= modules
    assert not [m for m in task_modules(get_task("gsm8k")) if m.startswith("robust_sft.sandbox")]


@pytest.mark.parametrize("module", sandbox_modules())
def test_editing_any_sandbox_module_changes_the_mbpp_version(module, tmp_path, monkeypatch):
    import sys

    from robust_sft.tasks.base import task_version

    task = get_task("mbpp")
    before = task_version(task)
    edited = tmp_path / "edited.py"
    edited.write_bytes(Path(sys.modules[module].__file__).read_bytes() + b"# a fix to the checker's sandbox\n")
    monkeypatch.setattr(sys.modules[module], "__file__", str(edited))
    assert task_version(task) != before
