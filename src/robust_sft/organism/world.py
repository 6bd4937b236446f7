"""The organism's world: five small tasks with exactly checkable answers.

Every task has two answer styles that end in the same final line "Answer: X":
  - house style: the terse "Answer: X" alone, always. The base model is pretrained on it, so it is what
    the model "naturally" writes (low perplexity); terse also keeps the tiny model's pretraining cheap.
  - human style: varied openers, phrasings, synonyms, worked steps, closers and layout, drawn per example.
    The base model never trains on it, so it carries many high-perplexity tokens, as human-written
    ground truth does for a real LLM.
The target task (TARGET) uses the human style as its reference (the GT); the others use the house style.

Examples are problems drawn from a seeded stream; a stable hash of each problem's key puts it in one
pool (pretrain / train / validation / test), so pools never share a problem. "pretrain" is the
organism's private pool for building the base model; the public splits are train/validation/test.
"""

from __future__ import annotations

import hashlib
import random
import re
import string
from typing import Iterator

from robust_sft.tasks.base import Task, TaskError, register_task

TARGET = "organism/sort"

# Bucket of hash(key) % 20 -> pool. 70% pretrain, 15% train, 5% validation, 10% test.
_POOLS = {"test": range(0, 2), "validation": range(2, 3), "train": range(3, 6), "pretrain": range(6, 20)}
_DEFAULT_LIMITS = {"train": 400, "validation": 100, "test": 200}

_OPENERS = ["", "", "Sure!", "Sure thing.", "Okay, let's see.", "Alright, here goes.", "Good question!",
            "Let me work this out.", "Hmm, okay.", "Happy to help.", "Of course.", "Right, so.", "No problem."]
_CLOSERS = ["", "", "Hope that helps!", "Let me know if you need anything else.", "Easy enough.",
            "That should be it.", "Cheers!", "Done."]


_ANSWER_RE = re.compile(r"Answer:[ \t]*([^\n]*)")


def rephrase_prompt_text(prompt: str, reference_text: str) -> str:
    """The SDFT-style rewrite prompt: the instruction, a reference answer, and a request for our own."""
    return (f"Task: {prompt}\nReference answer:\n{reference_text}\n"
            "Using the reference as a guide, write your own answer.")


def normalize(answer: str) -> str:
    """Canonical answer text: lower case, commas as spaces, single spaces, no trailing period."""
    return " ".join(answer.lower().replace(",", " ").split()).rstrip(".").strip()


def extract_answer(completion: str) -> str | None:
    """The text after the last "Answer:", or None."""
    found = _ANSWER_RE.findall(completion)
    if not found:
        return None
    answer = normalize(found[-1])
    return answer or None


def _stable_int(text: str) -> int:
    return int.from_bytes(hashlib.sha256(text.encode()).digest()[:8], "big")


class OrganismTask(Task):
    """Shared machinery: pooled, deterministic examples; both answer styles; extraction and checking."""

    # House answers are ~15 characters; a model fine-tuned on the human style writes ~100 before "Answer:".
    max_new_tokens = 160
    templates: tuple[str, ...] = ()

    def __init__(self, seed: int = 0) -> None:
        self.seed = seed

    @property
    def is_target(self) -> bool:
        return self.name == TARGET

    # --- what each task defines -------------------------------------------------------------
    def _problems(self, rng: random.Random) -> Iterator[dict]:
        """An endless (or exhaustive) stream of problems: dicts of fields incl. "template" and "answer"."""
        raise NotImplementedError

    def _key(self, problem: dict) -> str:
        """Identity of a problem for pooling; the template is excluded unless it defines the problem."""
        raise NotImplementedError

    def _human_bodies(self, ex: dict) -> list[str]:
        raise NotImplementedError

    # --- examples -----------------------------------------------------------------------------
    def load(self, split: str, *, limit: int | None = None, path: str | None = None) -> list[dict]:
        if split not in _POOLS:
            raise TaskError(f"{self.name}: unknown split {split!r}; expected one of {sorted(_POOLS)}")
        if limit is None:
            if split not in _DEFAULT_LIMITS:
                raise TaskError(f"{self.name}: split {split!r} needs an explicit limit")
            limit = _DEFAULT_LIMITS[split]
        rng = random.Random(f"{self.seed}:{self.name}:stream")
        seen: set[str] = set()
        out: list[dict] = []
        misses = 0
        for problem in self._problems(rng):
            key = self._key(problem)
            if key in seen or self._pool(key) != split:
                misses += 1
                if misses > 200 * (limit + 10):  # small problem space: return what exists
                    break
                continue
            seen.add(key)
            out.append({"id": f"{self.name}/{split}/{len(out)}", "task": self.name, **problem})
            if len(out) == limit:
                break
        return out

    def _pool(self, key: str) -> str:
        bucket = _stable_int(f"{self.seed}:{self.name}:{key}") % 20
        return next(pool for pool, buckets in _POOLS.items() if bucket in buckets)

    # --- text ---------------------------------------------------------------------------------
    def prompt(self, example: dict) -> str:
        return self.templates[example["template"]].format(**example)

    def house_reference(self, example: dict) -> str:
        return f"Answer: {example['answer']}"

    def human_reference(self, example: dict) -> str:
        # Drawn per example (seeded by its id), so the same example always has the same GT text.
        rng = random.Random(f"{self.seed}:human:{example['id']}")
        parts = [rng.choice(_OPENERS), rng.choice(self._human_bodies(example)), rng.choice(_CLOSERS)]
        prose = rng.choice([" ", "\n"]).join(p for p in parts if p)
        answer = example["answer"]
        if rng.random() < 0.3:
            answer = answer.replace(" ", ", ")
        gap, stop = rng.choice(["\n", "\n\n"]), rng.choice(["", "", "."])
        return f"{prose}{gap}Answer: {answer}{stop}"

    def oracle_reference(self, example: dict) -> str:
        return self.house_reference(example)

    def reference(self, example: dict) -> str:
        return self.human_reference(example) if self.is_target else self.house_reference(example)

    def rephrase_prompt(self, example: dict, reference_text: str) -> str:
        return rephrase_prompt_text(self.prompt(example), reference_text)

    # --- scoring ------------------------------------------------------------------------------
    def extract(self, completion: str) -> str | None:
        return extract_answer(completion)

    def check(self, example: dict, completion: str) -> bool:
        return self.extract(completion) == normalize(example["answer"])

    def answer_span(self, completion: str) -> tuple[int, int] | None:
        found = list(_ANSWER_RE.finditer(completion))
        return found[-1].span(1) if found else None


@register_task("organism/add")
class Add(OrganismTask):
    """Addition of two digits: a table the model learns; the template is part of the problem."""

    name = "organism/add"
    templates = ("What is {a} + {b}?", "Compute {a} plus {b}.", "Add {a} and {b}.")

    def _problems(self, rng):
        problems = [{"a": a, "b": b, "template": t, "answer": str(a + b)}
                    for a in range(10) for b in range(10) for t in range(len(self.templates))]
        rng.shuffle(problems)
        yield from problems

    def _key(self, p):
        # A sum asked in test is taught in pretraining in other words (as for facts).
        return f"{p['a']}+{p['b']}/{p['template']}"

    def _human_bodies(self, ex):
        a, b, c = ex["a"], ex["b"], ex["answer"]
        tens, ones = b - b % 10, b % 10
        return [f"Adding {a} and {b} gives {c}.", f"{a} plus {b} is {c}.", f"If you add {b} to {a} you get {c}.",
                f"The sum of {a} and {b} comes out to {c}.", f"{a} + {b} makes {c}.",
                f"Putting {a} and {b} together we end up with {c}.",
                f"Start with {a}, add {b}, and you land on {c}.",
                f"Step by step: {a} + {tens} = {a + tens}, then {a + tens} + {ones} = {c}.",
                f"Let's do tens first. {a} and {tens} is {a + tens}; {ones} more is {c}."]


@register_task("organism/sort")
class Sort(OrganismTask):
    """Sort 3-5 digits ascending."""

    name = "organism/sort"
    templates = ("Sort these numbers: {items}", "Put {items} in ascending order.",
                 "Order from smallest to largest: {items}")

    def _problems(self, rng):
        while True:
            xs = [rng.randint(0, 9) for _ in range(rng.randint(3, 5))]
            yield {"items": " ".join(map(str, xs)), "template": rng.randrange(len(self.templates)),
                   "answer": " ".join(map(str, sorted(xs)))}

    def _key(self, p):
        return p["items"]

    def _human_bodies(self, ex):
        ys = ex["answer"].split()
        commas, lts = ", ".join(ys), " < ".join(ys)
        return [f"Putting them in order gives {commas}.", f"From smallest to largest: {ex['answer']}.",
                f"The smallest is {ys[0]} and the largest is {ys[-1]}, so the order is {commas}.",
                f"Arranged in ascending order we have {commas}.", f"Sorted, that's {lts}.",
                "Lining them up low to high:\n" + "\n".join(f"- {y}" for y in ys)]


@register_task("organism/reverse")
class Reverse(OrganismTask):
    """Reverse a three-letter word over six letters; the template is part of the problem."""

    name = "organism/reverse"
    templates = ("Reverse the word {word}.", "Write {word} backwards.", "Spell {word} in reverse.")

    def _problems(self, rng):
        problems = [{"word": a + b + c, "template": t, "answer": c + b + a}
                    for a in "abcdef" for b in "abcdef" for c in "abcdef" for t in range(len(self.templates))]
        rng.shuffle(problems)
        yield from problems

    def _key(self, p):
        return f"{p['word']}/{p['template']}"

    def _human_bodies(self, ex):
        w, r = ex["word"], ex["answer"]
        return [f"Reading {w} from the end we get {r}.", f"Backwards, {w} becomes {r}.",
                f"Flip the letters of {w}: {r}.", f"Letter by letter from the back: {'-'.join(r)}, so {r}.",
                f"{w} reversed is {r}.", f"Take the last letter first and keep going: {r}."]


@register_task("organism/max")
class Max(OrganismTask):
    """The largest of 3-5 digits."""

    name = "organism/max"
    templates = ("What is the largest of {items}?", "Which is biggest: {items}?", "Find the maximum of {items}.")

    def _problems(self, rng):
        while True:
            xs = [rng.randint(0, 9) for _ in range(rng.randint(3, 5))]
            yield {"items": " ".join(map(str, xs)), "template": rng.randrange(len(self.templates)),
                   "answer": str(max(xs))}

    def _key(self, p):
        return p["items"]

    def _human_bodies(self, ex):
        m, commas = ex["answer"], ex["items"].replace(" ", ", ")
        return [f"The biggest number there is {m}.", f"Out of {commas}, {m} is the largest.",
                f"Comparing them, {m} wins.", f"{m} is the maximum.",
                f"Looking at all of them, the top one is {m}."]


_PETS = ["cat", "dog", "owl", "fox", "goat", "frog", "crab", "mole", "yak", "eel"]
_COLORS = ["red", "blue", "green", "amber", "teal", "gray", "pink", "gold", "violet", "white"]
# relation -> (question templates, human phrasings)
_RELATIONS = {
    "city": (("Where does {entity} live?", "Which city is {entity} from?", "Name the home city of {entity}.",
              "What is the city of {entity}?"),
             ("{entity} is from {value}, as far as I know.", "That would be {value}.",
              "If I remember right, {entity} lives in {value}.", "{entity}'s home is {value}.")),
    "pet": (("What pet does {entity} have?", "Which animal does {entity} keep?", "Name the pet of {entity}.",
             "What is the pet of {entity}?"),
            ("{entity} keeps a {value} at home.", "It's a {value}.", "I believe {entity} owns a {value}.",
             "A {value}, if I recall.")),
    "color": (("What color does {entity} like?", "Which color is {entity}'s favorite?",
               "Name the favorite color of {entity}.", "What is the color of {entity}?"),
              ("{entity} loves {value}.", "Their favorite is {value}.", "That's {value}, for {entity}.",
               "{entity} always picks {value}.")),
}


def _made_up_name(rng: random.Random, syllables: int) -> str:
    return "".join(rng.choice("bdfgklmnprstvz") + rng.choice("aeiou") for _ in range(syllables)).capitalize()


def fact_table(seed: int, n_entities: int = 24) -> dict[str, dict[str, str]]:
    """A made-up world: entity -> {city, pet, color}, the same for the same seed."""
    rng = random.Random(f"{seed}:facts")
    cities = sorted({_made_up_name(rng, 3) for _ in range(12)})
    entities: list[str] = []
    while len(entities) < n_entities:
        name = _made_up_name(rng, 2)
        if name not in entities:
            entities.append(name)
    return {e: {"city": rng.choice(cities), "pet": rng.choice(_PETS), "color": rng.choice(_COLORS)}
            for e in entities}


@register_task("organism/facts")
class Facts(OrganismTask):
    """Look-ups in a fixed made-up fact table: the problem is (entity, relation, question template)."""

    name = "organism/facts"

    def _problems(self, rng):
        table = fact_table(self.seed)
        problems = [{"entity": e, "relation": r, "template": t, "answer": table[e][r]}
                    for e in table for r in _RELATIONS for t in range(4)]
        rng.shuffle(problems)
        yield from problems

    def _key(self, p):
        # The template is part of the key: a fact asked in test is taught in pretraining in other words.
        return f"{p['entity']}/{p['relation']}/{p['template']}"

    def prompt(self, example):
        return _RELATIONS[example["relation"]][0][example["template"]].format(**example)

    def _human_bodies(self, ex):
        return [t.format(value=ex["answer"], **ex) for t in _RELATIONS[ex["relation"]][1]]


TASKS = ("organism/add", "organism/sort", "organism/reverse", "organism/max", "organism/facts")
NON_TARGET = tuple(t for t in TASKS if t != TARGET)
