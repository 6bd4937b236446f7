"""MATH (competition mathematics): a worked solution ending with "Answer: X", checked symbolically.

Rows have the Hub's fields (problem, solution, level, type); the gold answer is the solution's last
\\boxed{...}, or the row's "answer" field when present (as in MATH-500). On the Hub (EleutherAI's copy,
seven subject configs) there is no validation split: it is every 20th example of train, and train is the
rest, so the two never overlap.
"""

from __future__ import annotations

import re

from robust_sft.tasks.base import TaskError, register_task
from robust_sft.tasks.loading import DatasetTask, Located, field, read_hub
from robust_sft.tasks.math_equiv import equivalent, last_boxed, last_boxed_span, strip_wrappers

PROMPT = (
    "Solve the following math problem. Show your reasoning, then write the final answer on its own "
    "line in the form \"Answer: X\", where X is the final answer only (in LaTeX if needed).\n\n"
    "Problem: {problem}"
)
HUB_NAME = "EleutherAI/hendrycks_math"
HUB_CONFIGS = ("algebra", "counting_and_probability", "geometry", "intermediate_algebra",
               "number_theory", "prealgebra", "precalculus")
VALIDATION_EVERY = 20

_ANSWER_LINE = re.compile(r"(?im)^[\s*#_]*(?:final\s+)?answer\s*[*_]*\s*:\s*[*_]*(.*?)\s*$")


def extract_answer(completion: str) -> str | None:
    """The last non-empty "Answer: X" line, else the last \\boxed{...}, else None."""
    for line in reversed(_ANSWER_LINE.findall(completion)):
        answer = strip_wrappers(line)
        if answer:
            return answer
    boxed = last_boxed(completion)
    return boxed.strip() if boxed and boxed.strip() else None


def answer_span(completion: str) -> tuple[int, int] | None:
    """Where `extract_answer` reads: the last non-empty "Answer: X" line's X, else the last \\boxed{...}'s content."""
    for match in reversed(list(_ANSWER_LINE.finditer(completion))):
        if strip_wrappers(match.group(1)):
            return match.span(1)
    span = last_boxed_span(completion)
    return span if span is not None and completion[span[0]:span[1]].strip() else None


@register_task("math")
class MATH(DatasetTask):
    name = "math"
    splits = ("train", "validation", "test")
    max_new_tokens = 1024
    # No stop strings: the checker reads the *last* "Answer: X" line (else the last boxed answer), so no cut is
    # final.
    stop_strings = ()

    def hub_rows(self, split: str) -> list[Located]:
        source = "test" if split == "test" else "train"
        rows = [row for config in HUB_CONFIGS for row in read_hub(HUB_NAME, config, source)]
        if split == "test":
            return rows
        held_out = split == "validation"
        return [row for i, row in enumerate(rows) if (i % VALIDATION_EVERY == 0) == held_out]

    def to_example(self, row: dict, split: str, index: int, where: str) -> dict:
        solution = field(row, "solution", where)
        answer = row.get("answer") or last_boxed(solution)
        if not answer or not str(answer).strip():
            raise TaskError(f"{where}: no answer field and no \\boxed{{...}} in the solution")
        unique = row.get("unique_id") or row.get("id")
        return {
            "id": f"math/{unique}" if unique else f"math/{split}/{index}",
            "problem": field(row, "problem", where),
            "solution": solution,
            "answer": str(answer).strip(),
            "level": row.get("level", ""),
            "type": row.get("type") or row.get("subject", ""),
        }

    def prompt(self, example: dict) -> str:
        return PROMPT.format(problem=example["problem"])

    def reference(self, example: dict) -> str:
        return f"{example['solution'].rstrip()}\n\nAnswer: {example['answer']}"

    def extract(self, completion: str) -> str | None:
        return extract_answer(completion)

    def answer_span(self, completion: str) -> tuple[int, int] | None:
        return answer_span(completion)

    def hint(self, example: dict) -> str:
        return f"Hint: the final answer is {example['answer']}."

    def check(self, example: dict, completion: str) -> bool:
        return equivalent(extract_answer(completion), example["answer"])
