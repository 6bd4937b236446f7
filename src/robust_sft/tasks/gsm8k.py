"""GSM8K (grade-school maths): a free-form numeric answer after "#### "."""

from __future__ import annotations

import re
from decimal import Decimal, InvalidOperation

from robust_sft.tasks.base import TaskError, register_task
from robust_sft.tasks.loading import DatasetTask, Located, field, read_hub

PROMPT = (
    "Solve the following math problem step by step. At the end of your response, write the final "
    "answer on its own line in the form \"#### <number>\", with the number only.\n\n"
    "Question: {question}"
)

_MARKERS = (re.compile(r"####"), re.compile(r"the answer is", re.IGNORECASE))
# An optional sign and currency, digits with optional thousands separators and decimals.
_NUMBER = re.compile(r"^[\s:*]*(-?)\s*\$?\s*(\d[\d,]*(?:\.\d+)?|\.\d+)")


def parse_number(text: str) -> str | None:
    """The number at the start of `text` in canonical form ("$1,234.50." -> "1234.5"), else None."""
    match = _NUMBER.match(text)
    if not match:
        return None
    sign, digits = match.groups()
    try:
        value = Decimal(sign + digits.replace(",", ""))
    except InvalidOperation:
        return None
    return canonical(value)


def canonical(value: Decimal) -> str:
    if value == value.to_integral_value():
        return str(int(value))
    return format(value.normalize(), "f")


def extract_answer(completion: str) -> str | None:
    """The number after the last "####", else after the last "The answer is", else None."""
    for marker in _MARKERS:
        positions = [m.end() for m in marker.finditer(completion)]
        if positions:
            number = parse_number(completion[positions[-1]:])
            if number is not None:
                return number
    return None


def answer_span(completion: str) -> tuple[int, int] | None:
    """Where `extract_answer` reads: the number (sign included) after the last marker that has one."""
    for marker in _MARKERS:
        positions = [m.end() for m in marker.finditer(completion)]
        if positions and parse_number(completion[positions[-1]:]) is not None:
            match = _NUMBER.match(completion[positions[-1]:])
            start = match.start(1) if match.group(1) else match.start(2)
            return positions[-1] + start, positions[-1] + match.end(2)
    return None


@register_task("gsm8k")
class GSM8K(DatasetTask):
    name = "gsm8k"
    splits = ("train", "test")
    max_new_tokens = 512
    # No stop strings: the checker reads the number after the *last* "####" (or "The answer is"), so no cut is
    # final, and the number's end is no fixed string.
    stop_strings = ()

    def hub_rows(self, split: str) -> list[Located]:
        return read_hub("openai/gsm8k", "main", split)

    def to_example(self, row: dict, split: str, index: int, where: str) -> dict:
        answer = field(row, "answer", where)
        target = parse_number(answer.rsplit("####", 1)[1]) if "####" in answer else None
        if target is None:
            raise TaskError(f"{where}: answer does not end with '#### <number>'")
        return {
            "id": str(row.get("id") or f"gsm8k/{split}/{index}"),
            "question": field(row, "question", where),
            "answer": answer,
            "target": target,
        }

    def prompt(self, example: dict) -> str:
        return PROMPT.format(question=example["question"])

    def reference(self, example: dict) -> str:
        return example["answer"]

    def extract(self, completion: str) -> str | None:
        return extract_answer(completion)

    def answer_span(self, completion: str) -> tuple[int, int] | None:
        return answer_span(completion)

    def hint(self, example: dict) -> str:
        return f"Hint: the final answer is {example['target']}."

    def check(self, example: dict, completion: str) -> bool:
        predicted = extract_answer(completion)
        return predicted is not None and Decimal(predicted) == Decimal(example["target"])
