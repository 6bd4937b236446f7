"""MBPP (Python programming): write a function that passes the problem's tests.

The prompt is the paper's (the problem, its asserts, "wrap the code in ```python"); the reference answer is the
dataset's code byte for byte in a ```python block (CRLF line ends and tabs kept), so the training conversations
are exactly those the paper's authors scored and trained on. `normalize_whitespace=True` converts CRLF to LF and
strips the code instead, for users who want it.

A completion's program is the first ```python block. It passes when, in the sandbox, the solution, then the
example's setup code (which may use the solution's names, e.g. a `Node` class), then every assert and, for
MBPP+, every extended test ran: the program prints a random per-run token only after the last test, and a run
that exits early (`sys.exit(0)`, `os._exit(0)`, `exit()`) never prints it. As in EvalPlus and human-eval, the
solution's `if __name__ == "__main__":` block does not run.

Rows in either Hub schema are accepted: the original ("text", "test_setup_code") and MBPP+/sanitized
("prompt", "test_imports"). MBPP+'s extended tests run when the row has them, in either form:
- EvalPlus's release schema: `base_input` and `plus_input` (lists of argument lists), `entry_point`, `atol` and
  the reference solution (`canonical_solution`, else `code`): the expected outputs are the reference's own;
- the Hub's `evalplus/mbppplus` schema: a `test` script defining `inputs`, `results` and `assertion(out, exp,
  atol)`. It imports numpy; where the sandbox interpreter has none, a pure-Python `allclose` stands in.
Both compare as EvalPlus does: exact equality, else (when `atol` is non-zero, or the expected value is a float
or a list of floats, then with atol 1e-6) closeness within atol + 1e-7 x |expected|.
A `test` string without `inputs`/`results` is setup code (the authors' export of MBPP names setup so).
"""

from __future__ import annotations

import json
import logging
import re
import secrets

from robust_sft.sandbox.runner import run_many, run_python
from robust_sft.tasks.base import TaskError, register_task
from robust_sft.tasks.loading import DatasetTask, Located, field, read_hub

# The prompt of the paper's MBPP data (Liu et al.'s released training conversations).
PROMPT = (
    "Please refer the given test cases and generate a python function for my problem. "
    "Make sure the written code is wrapped in code block : ```python\n<your code>\n```\n"
    ">>> Problem:\n{text}\n>>> Test Cases:\n{tests}"
)
logger = logging.getLogger(__name__)
HUB_NAME = "google-research-datasets/mbpp"
HUB_PLUS_NAME = "evalplus/mbppplus"

_PYTHON_BLOCK = re.compile(r"```[ \t]*(?:python3?|py)[ \t]*\n(.*?)(?:```|\Z)", re.DOTALL | re.IGNORECASE)
_ANY_BLOCK = re.compile(r"```[^\n`]*\n(.*?)(?:```|\Z)", re.DOTALL)
_NUMPY_IMPORT = re.compile(r"^import numpy as np[ \t]*$", re.MULTILINE)

# EvalPlus's comparison of an output with the expected one, without numpy.
_ASSERTION = '''
def _robust_sft_close(out, exp, atol):
    if isinstance(exp, (list, tuple)):
        return (isinstance(out, (list, tuple)) and len(out) == len(exp)
                and all(_robust_sft_close(o, e, atol) for o, e in zip(out, exp)))
    try:
        return abs(out - exp) <= atol + 1e-07 * abs(exp)
    except TypeError:
        return False


def _robust_sft_is_floats(x):
    return isinstance(x, float) or (isinstance(x, (list, tuple)) and all(isinstance(i, float) for i in x))


def _robust_sft_assertion(out, exp, atol):
    if atol == 0 and _robust_sft_is_floats(exp):
        atol = 1e-6
    if out != exp and atol != 0:
        assert _robust_sft_close(out, exp, atol)
    else:
        assert out == exp
'''
# Replaces `import numpy as np` in a Hub MBPP+ test script when the interpreter has no numpy.
_NUMPY_STAND_IN = '''try:
    import numpy as np
except ImportError:
    class np:
        class ndarray:
            pass
        float64 = float32 = float

        @staticmethod
        def allclose(out, exp, rtol=1e-07, atol=0.0):
            return _robust_sft_close(out, exp, atol)
'''


def extract_code(completion: str) -> str | None:
    """The first ```python block (an unclosed one runs to the end), else the first ``` block."""
    for pattern in (_PYTHON_BLOCK, _ANY_BLOCK):
        match = pattern.search(completion)
        if match and match.group(1).strip():
            return match.group(1).strip("\n")
    return None


def has_closed_python_block(completion: str) -> bool:
    """Whether the first ```python block is closed and holds code: then it is what `extract_code` reads, whatever
    follows it."""
    match = _PYTHON_BLOCK.search(completion)
    return bool(match and match.group(1).strip() and match.group(0).endswith("```"))


def code_span(completion: str) -> tuple[int, int] | None:
    """Where `extract_code` reads: the characters of the program it returns, else None."""
    for pattern in (_PYTHON_BLOCK, _ANY_BLOCK):
        match = pattern.search(completion)
        if match and match.group(1).strip():
            body = match.group(1)
            start = match.start(1) + len(body) - len(body.lstrip("\n"))
            return start, start + len(body.strip("\n"))
    return None


def _problem_text(row: dict, where: str) -> str:
    if isinstance(row.get("text"), str):
        return row["text"]
    # MBPP+ and sanitized keep the statement in "prompt", MBPP+ inside a docstring with one assert.
    lines = field(row, "prompt", where).strip().strip('"').strip().splitlines()
    return "\n".join(line for line in lines if not line.lstrip().startswith("assert ")).strip()


def _is_plus_script(test: object) -> bool:
    return isinstance(test, str) and "inputs" in test and "results" in test and "assertion(" in test


def _setup_code(row: dict) -> str:
    setup = row.get("test_setup_code") or ""
    if not setup and isinstance(row.get("test"), str) and not _is_plus_script(row["test"]):
        setup = row["test"]
    imports = "\n".join(line for line in (row.get("test_imports") or []) if line.strip())
    return "\n".join(part for part in (imports, setup) if part.strip())


def _plus_tests(row: dict, where: str) -> dict | None:
    """MBPP+'s extended tests of a row, or None when it has none."""
    if row.get("base_input") is not None or row.get("plus_input") is not None:
        reference = row.get("canonical_solution") or row.get("code")
        if not isinstance(reference, str) or not isinstance(row.get("entry_point"), str):
            raise TaskError(f"{where}: base_input/plus_input need 'entry_point' and a reference solution")
        inputs = list(row.get("base_input") or []) + list(row.get("plus_input") or [])
        if not all(isinstance(args, list) for args in inputs):
            raise TaskError(f"{where}: base_input/plus_input must be lists of argument lists")
        return {"entry_point": row["entry_point"], "inputs": inputs, "atol": float(row.get("atol") or 0),
                "reference": reference}
    if _is_plus_script(row.get("test")):
        return {"script": row["test"]}
    return None


def _plus_program(plus: dict) -> str:
    """Python source running the extended tests after the solution (its names are in scope)."""
    if "script" in plus:
        return _ASSERTION + "\n" + _NUMPY_IMPORT.sub(_NUMPY_STAND_IN, plus["script"])
    return _ASSERTION + (
        "\nimport copy as _robust_sft_copy, json as _robust_sft_json\n"
        "_robust_sft_reference = {}\n"
        f"exec(compile({plus['reference']!r}, 'reference', 'exec'), _robust_sft_reference)\n"
        f"for _robust_sft_args in _robust_sft_json.loads({json.dumps(plus['inputs'])!r}):\n"
        f"    _robust_sft_expected = _robust_sft_reference[{plus['entry_point']!r}]"
        "(*_robust_sft_copy.deepcopy(_robust_sft_args))\n"
        f"    _robust_sft_assertion({plus['entry_point']}(*_robust_sft_copy.deepcopy(_robust_sft_args)), "
        f"_robust_sft_expected, {plus['atol']!r})\n"
    )


# The program runs as EvalPlus and human-eval run it: as a module, not as the main program, so the solution's
# `if __name__ == "__main__":` block (a demo, often ending in sys.exit) does not run; code at its top level
# still does, so a solution that exits before the tests still fails. The module is registered in sys.modules
# (pickle and dataclasses look classes up there), and the solution stays first (its `from __future__` imports).
_AS_MODULE = (
    "_robust_sft_source = {source!r}\n"  # its own line: a traceback quotes the short exec line, not the source
    "import sys as _robust_sft_sys, types as _robust_sft_types\n"
    "_robust_sft_module = _robust_sft_sys.modules['solution'] = _robust_sft_types.ModuleType('solution')\n"
    "exec(compile(_robust_sft_source, 'solution.py', 'exec'), _robust_sft_module.__dict__)\n"
)


@register_task("mbpp")
class MBPP(DatasetTask):
    name = "mbpp"
    splits = ("train", "validation", "test")
    max_new_tokens = 512
    # A fence that ends a line: the closing fence of a code block (an opening one names its language). Models
    # often write prose after the code, which the checker never reads. An untagged block's opening fence
    # matches too: `complete` then says the cut is not final and evaluation generates that completion again.
    stop_strings = ("```\n",)

    def __init__(self, *, plus: bool = True, timeout: float = 10.0, normalize_whitespace: bool = False) -> None:
        self.plus = plus  # test split from the Hub: MBPP+ (378 tasks, as the paper) when reachable
        self.timeout = timeout
        self.normalize_whitespace = normalize_whitespace  # CRLF -> LF and strip the reference code

    def hub_rows(self, split: str) -> list[Located]:
        if split == "test" and self.plus:
            try:
                return read_hub(HUB_PLUS_NAME, None, "test")
            except TaskError as err:
                logger.warning("MBPP+ could not be loaded (%s); testing on the original 500 MBPP tasks", err)
        return read_hub(HUB_NAME, "full", split)

    def to_example(self, row: dict, split: str, index: int, where: str) -> dict:
        tests = field(row, "test_list", where, list)
        if not tests or not all(isinstance(t, str) and t.lstrip().startswith("assert") for t in tests):
            raise TaskError(f"{where}: test_list must be a non-empty list of assert statements")
        code = field(row, "code", where)
        if self.normalize_whitespace:
            code = code.replace("\r\n", "\n").strip()
        example = {
            "id": f"mbpp/{field(row, 'task_id', where, (int, str))}",
            "text": _problem_text(row, where),
            "code": code,
            "tests": list(tests),  # as written: the prompt shows them byte for byte
            "setup": _setup_code(row).strip(),
        }
        plus = _plus_tests(row, where)
        if plus is not None:
            example["plus"] = plus
        return example

    def prompt(self, example: dict) -> str:
        return PROMPT.format(text=example["text"], tests="".join(t + "\n" for t in example["tests"]))

    def reference(self, example: dict) -> str:
        return f"```python\n{example['code']}\n```"

    def extract(self, completion: str) -> str | None:
        return extract_code(completion)

    def complete(self, completion: str) -> bool:
        return has_closed_python_block(completion)

    def answer_span(self, completion: str) -> tuple[int, int] | None:
        return code_span(completion)

    # No `hint`: MBPP's prompt already shows the test cases, the expected outputs included; what remains of a
    # solution is its code, which is the reference's wording.

    def program(self, example: dict, completion: str, token: str = "") -> str | None:
        """The test program for `completion`, or None without code.

        Order: the solution, the setup (it may use the solution's names), the asserts, MBPP+'s extended tests,
        then `token` written to stdout: a run whose output lacks it did not reach the end.
        """
        code = extract_code(completion)
        if code is None:
            return None
        parts = [code, example["setup"], "\n".join(t.strip() for t in example["tests"])]
        if example.get("plus"):
            parts.append(_plus_program(example["plus"]))
        parts.append(f"__import__('os').write(1, b'\\n' + {token.encode()!r} + b'\\n')")
        return _AS_MODULE.format(source="\n\n".join(part for part in parts if part))

    def check(self, example: dict, completion: str) -> bool:
        return self.check_many([example], [completion])[0]

    def check_many(self, examples: list[dict], completions: list[str]) -> list[bool]:
        """Checks in parallel in the sandbox (completions without code fail without running)."""
        token = f"robust-sft-all-tests-ran-{secrets.token_hex(16)}"
        programs = [self.program(e, c, token) for e, c in zip(examples, completions)]
        runnable = [p for p in programs if p is not None]
        results = iter(run_many(runnable, timeout=self.timeout) if len(runnable) > 1
                       else [run_python(p, timeout=self.timeout) for p in runnable])
        return [p is not None and _ran_to_the_end(next(results), token) for p in programs]


def _ran_to_the_end(result, token: str) -> bool:
    return result.passed and f"\n{token}\n" in result.stdout
