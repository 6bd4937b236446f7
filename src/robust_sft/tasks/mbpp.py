"""MBPP (Python programming): write a function that passes the problem's test asserts.

The prompt shows the problem and its asserts (so the function name and signature are known); the
program is the first ```python block of the completion, and it passes when the example's setup code,
the program and all its asserts run to exit 0 in the sandbox.

Rows in either Hub schema are accepted: the original ("text", "test_setup_code") and MBPP+/sanitized
("prompt", "test_imports"). MBPP+ examples are checked with their original asserts (`test_list`); its
extended test inputs are not run (they need numpy, which the sandbox interpreter may lack).
"""

from __future__ import annotations

import logging
import re

from robust_sft.tasks.base import TaskError, register_task
from robust_sft.tasks.loading import DatasetTask, Located, field, read_hub
from robust_sft.tasks.sandbox import run_many, run_python

PROMPT = (
    "You are an expert Python programmer. Write a Python function for this task:\n"
    "{text}\n\n"
    "Your code should pass these tests:\n\n"
    "{tests}\n\n"
    "Give the complete function, with any imports it needs, in a single ```python code block."
)
logger = logging.getLogger(__name__)
HUB_NAME = "google-research-datasets/mbpp"
HUB_PLUS_NAME = "evalplus/mbppplus"

_PYTHON_BLOCK = re.compile(r"```[ \t]*(?:python3?|py)[ \t]*\n(.*?)(?:```|\Z)", re.DOTALL | re.IGNORECASE)
_ANY_BLOCK = re.compile(r"```[^\n`]*\n(.*?)(?:```|\Z)", re.DOTALL)


def extract_code(completion: str) -> str | None:
    """The first ```python block (an unclosed one runs to the end), else the first ``` block."""
    for pattern in (_PYTHON_BLOCK, _ANY_BLOCK):
        match = pattern.search(completion)
        if match and match.group(1).strip():
            return match.group(1).strip("\n")
    return None


def _problem_text(row: dict, where: str) -> str:
    if isinstance(row.get("text"), str):
        return row["text"].strip()
    # MBPP+ and sanitized keep the statement in "prompt", MBPP+ inside a docstring with one assert.
    lines = field(row, "prompt", where).strip().strip('"').strip().splitlines()
    return "\n".join(line for line in lines if not line.lstrip().startswith("assert ")).strip()


@register_task("mbpp")
class MBPP(DatasetTask):
    name = "mbpp"
    splits = ("train", "validation", "test")
    max_new_tokens = 512

    def __init__(self, *, plus: bool = True, timeout: float = 10.0) -> None:
        self.plus = plus  # test split from the Hub: MBPP+ (378 tasks, as the paper) when reachable
        self.timeout = timeout

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
        setup = row.get("test_setup_code") or "\n".join(row.get("test_imports") or [])
        return {
            "id": f"mbpp/{field(row, 'task_id', where, (int, str))}",
            "text": _problem_text(row, where),
            "code": field(row, "code", where).replace("\r\n", "\n"),
            "tests": [t.strip() for t in tests],
            "setup": setup.strip(),
        }

    def prompt(self, example: dict) -> str:
        return PROMPT.format(text=example["text"], tests="\n".join(example["tests"]))

    def reference(self, example: dict) -> str:
        return f"```python\n{example['code'].strip()}\n```"

    def extract(self, completion: str) -> str | None:
        return extract_code(completion)

    def program(self, example: dict, completion: str) -> str | None:
        """The test program for `completion` (setup, code, asserts), or None without code.

        Engines that check many completions can run these with `sandbox.run_many`.
        """
        code = extract_code(completion)
        if code is None:
            return None
        return "\n\n".join(part for part in (example["setup"], code, "\n".join(example["tests"])) if part)

    def check(self, example: dict, completion: str) -> bool:
        program = self.program(example, completion)
        return program is not None and run_python(program, timeout=self.timeout).passed

    def check_many(self, examples: list[dict], completions: list[str]) -> list[bool]:
        """Checks in parallel in the sandbox (completions without code fail without running)."""
        programs = [self.program(e, c) for e, c in zip(examples, completions)]
        runnable = [p for p in programs if p is not None]
        results = iter(run_many(runnable, timeout=self.timeout))
        return [p is not None and next(results).passed for p in programs]
