"""ARC-Challenge: multiple choice science questions, answered with "Answer: X".

Options are always shown with letters A, B, C, ... whatever the dataset's labels are ("1".."4" in some
items); items have 3 to 5 options.
"""

from __future__ import annotations

import re

from robust_sft.tasks.base import TaskError, register_task
from robust_sft.tasks.loading import DatasetTask, Located, field, read_hub

LETTERS = "ABCDEFGH"
PROMPT = (
    "Answer the following multiple-choice question. You may reason briefly; then write the final "
    "answer on its own line in the form \"Answer: X\", where X is the letter of the correct option.\n\n"
    "Question: {question}\n{options}"
)

# Most explicit form first; within a form the last occurrence wins (models restate the options early).
_ANSWER_FORMS = (
    re.compile(r"(?i:answer)\s*:\s*[*_]*\s*\(?([A-H]|[1-8])\)?(?![\w'])"),
    re.compile(r"(?i:answer\s+is)\s*[*_]*\s*(?:option\s+)?\(?([A-H]|[1-8])\)?(?![\w'])"),
    re.compile(r"\(([A-H])\)"),
)


def extract_choice(completion: str) -> str | None:
    """The chosen letter (or digit, for items with numeric labels) from a completion, else None."""
    for form in _ANSWER_FORMS:
        found = form.findall(completion)
        if found:
            return found[-1]
    return None


def choice_span(completion: str) -> tuple[int, int] | None:
    """Where `extract_choice` reads: the chosen letter's characters, else None."""
    for form in _ANSWER_FORMS:
        found = list(form.finditer(completion))
        if found:
            return found[-1].span(1)
    return None


@register_task("arc_challenge")
class ARCChallenge(DatasetTask):
    name = "arc_challenge"
    splits = ("train", "validation", "test")
    max_new_tokens = 256
    # No stop strings: the checker reads the *last* "Answer: X" line, so a later one could change the verdict.
    stop_strings = ()

    def hub_rows(self, split: str) -> list[Located]:
        return read_hub("allenai/ai2_arc", "ARC-Challenge", split)

    def to_example(self, row: dict, split: str, index: int, where: str) -> dict:
        choices = field(row, "choices", where, dict)
        labels = [str(label) for label in field(choices, "label", where, list)]
        texts = [str(text) for text in field(choices, "text", where, list)]
        key = str(field(row, "answerKey", where))
        if not 2 <= len(labels) <= len(LETTERS) or len(labels) != len(texts):
            raise TaskError(f"{where}: expected 2-{len(LETTERS)} choices with one label each")
        if key not in labels:
            raise TaskError(f"{where}: answerKey {key!r} is not one of the labels {labels}")
        return {
            "id": f"arc_challenge/{row['id']}" if row.get("id") else f"arc_challenge/{split}/{index}",
            "question": field(row, "question", where),
            "options": texts,
            "labels": labels,
            "answer": LETTERS[labels.index(key)],
        }

    def prompt(self, example: dict) -> str:
        options = "\n".join(f"{letter}. {text}" for letter, text in zip(LETTERS, example["options"]))
        return PROMPT.format(question=example["question"], options=options)

    def reference(self, example: dict) -> str:
        letter = example["answer"]
        return f"{letter}. {example['options'][LETTERS.index(letter)]}\nAnswer: {letter}"

    def extract(self, completion: str) -> str | None:
        return extract_choice(completion)

    def answer_span(self, completion: str) -> tuple[int, int] | None:
        return choice_span(completion)

    def hint(self, example: dict) -> str:
        return f"Hint: the correct option is {example['answer']}."

    def check(self, example: dict, completion: str) -> bool:
        return to_letter(extract_choice(completion), example["labels"]) == example["answer"]


def to_letter(choice: str | None, labels: list[str]) -> str | None:
    """The shown letter meant by `choice`: a digit counts only when the item's own labels are digits."""
    if choice is None or not choice.isdigit():
        return choice
    return LETTERS[labels.index(choice)] if choice in labels else None
