"""World v5: the organism's tasks with every partial accuracy partial by construction (docs/organism_v5.md).

The same five tasks and both answer styles as world v4 (world.py), registered as `organism-v5/<task>`, with:
  - other tasks' items of two kinds: "taught" (pretraining teaches exactly these: the look-up tables in every
    wording, the skills on the inputs shown) and "unknown" (pretraining never shows what they need: facts of
    entities it never states, sums of two two-digit numbers with a carry, six-letter words, negative numbers).
    Public splits interleave the kinds at TAUGHT_SHARE, so base accuracy is set by the design, not by where
    pretraining stopped on a learning curve (which moves with the CPU's float kernels);
  - the target (sort) taught on 2-3 digits only, asked on 3-5 digits: the base model knows a third of it;
  - a hinted prompt ("Hint: the answer is X"), content only, which pretraining answers in either style.

Other tasks' public test items of the taught kind are taught in pretraining (they measure what the base model
knows, so forgetting shows as its loss); the target's public problems are hash-disjoint from pretraining.
"""

from __future__ import annotations

import itertools
import random
from typing import Iterator

from robust_sft.organism import world as v4
from robust_sft.tasks.base import TaskError, register_task

PREFIX = "organism-v5/"
TARGET = PREFIX + "sort"
TAUGHT_SHARE = 0.7  # of every 10 public items, the 4th, 7th and 10th are of the unknown kind
_UNKNOWN_SLOTS = (3, 6, 9)
_DEFAULT_LIMITS = {"train": 400, "validation": 100, "test": 400}
# Bucket of hash(key) % 20 -> public split. Look-up tables are small, so most of them is test.
_PUBLIC = {"test": range(0, 14), "validation": range(14, 15), "train": range(15, 20)}
# The target: public problems stay out of pretraining (buckets 9-19 are pretraining's); test gets a fifth of the
# 3-digit lists, so its 400 items can ask 3, 4 and 5 digits in turn.
_TARGET_PUBLIC = {"test": range(0, 4), "validation": range(4, 5), "train": range(5, 9)}
_PUBLIC_BUCKETS = range(0, 9)


def _bucket(seed: int, name: str, key: str) -> int:
    return v4._stable_int(f"{seed}:{name}:{key}") % 20


class V5Task(v4.OrganismTask):
    """Public splits interleave taught and unknown problems; "pretrain" is the taught problems."""

    max_new_tokens = 160
    # Pretraining draws every answer alike often: else an answer few problems have (a sum of 0 or 18, a largest
    # digit of 1) is rare, and the last to be learned.
    balance_answers = False
    hint_only = False  # pretraining asks it only with the answer hinted (and in rewrites)
    answer_only = False  # pretraining trains its answers only (else the whole chat, prompt included, as v4)

    @property
    def is_target(self) -> bool:
        return self.name == TARGET

    def _taught(self, rng: random.Random) -> Iterator[dict]:
        """Problems pretraining teaches (a finite table, or an endless stream of a skill's inputs)."""
        raise NotImplementedError

    def _unknown(self, rng: random.Random) -> Iterator[dict]:
        """Problems whose answers nothing in pretraining shows."""
        raise NotImplementedError

    def load(self, split: str, *, limit: int | None = None, path: str | None = None) -> list[dict]:
        if split not in (*_PUBLIC, "pretrain"):
            raise TaskError(f"{self.name}: unknown split {split!r}; expected one of {sorted([*_PUBLIC, 'pretrain'])}")
        if limit is None:
            if split not in _DEFAULT_LIMITS:
                raise TaskError(f"{self.name}: split {split!r} needs an explicit limit")
            limit = _DEFAULT_LIMITS[split]
        problems = self._pretrain(limit) if split == "pretrain" else self._public(split, limit)
        return [{"id": f"{self.name}/{split}/{i}", "task": self.name, **p} for i, p in enumerate(problems)]

    def _pretrain(self, limit: int) -> list[dict]:
        rng = random.Random(f"{self.seed}:{self.name}:pretrain")
        return [{"kind": "taught", **p} for p in itertools.islice(self._unique(self._taught(rng)), limit)]

    def _public(self, split: str, limit: int) -> list[dict]:
        streams = {kind: self._unique(self._in_split(split, make(random.Random(f"{self.seed}:{self.name}:{kind}"))))
                   for kind, make in (("taught", self._taught), ("unknown", self._unknown))}
        out = []
        for i in range(limit):
            kind = "unknown" if i % 10 in _UNKNOWN_SLOTS else "taught"
            problem = next(streams[kind], None)
            if problem is None:  # a finite table is used up: the pool is what exists
                break
            out.append({"kind": kind, **problem})
        return out

    def _in_split(self, split: str, problems: Iterator[dict]) -> Iterator[dict]:
        return (p for p in problems if _bucket(self.seed, self.name, self._key(p)) in _PUBLIC[split])

    def _unique(self, problems: Iterator[dict]) -> Iterator[dict]:
        seen: set[str] = set()
        for problem in problems:
            key = self._key(problem)
            if key not in seen:
                seen.add(key)
                yield problem

    def hinted_prompt(self, example: dict) -> str:
        """The prompt with its answer hinted, content only: what hindsight scoring puts before an answer."""
        return f"{self.prompt(example)}\nHint: the answer is {example['answer']}"


def _shuffled(problems: list[dict], rng: random.Random) -> Iterator[dict]:
    rng.shuffle(problems)
    yield from problems


@register_task(PREFIX + "add")
class Add(V5Task, v4.Add):
    """Taught: the one-digit table in four wordings. Unknown: two two-digit numbers whose ones carry."""

    name = PREFIX + "add"
    balance_answers = True
    templates = (*v4.Add.templates, "How much is {a} and {b} together?")

    def _sums(self, pairs, rng):
        return _shuffled([{"a": a, "b": b, "template": t, "answer": str(a + b)}
                          for a, b in pairs for t in range(len(self.templates))], rng)

    def _taught(self, rng):
        return self._sums(itertools.product(range(10), range(10)), rng)

    def _unknown(self, rng):
        pairs = [(a, b) for a in range(10, 50) for b in range(10, 50) if a % 10 + b % 10 >= 10]
        return self._sums(pairs, rng)


@register_task(PREFIX + "reverse")
class Reverse(V5Task, v4.Reverse):
    """Taught: three-letter words over six letters. Unknown: six-letter words (never reversed in pretraining)."""

    name = PREFIX + "reverse"

    def _taught(self, rng):
        return _shuffled([{"word": "".join(w), "template": t, "answer": "".join(reversed(w))}
                          for w in itertools.product("abcdef", repeat=3) for t in range(len(self.templates))], rng)

    def _unknown(self, rng):
        while True:
            word = "".join(rng.choice("abcdef") for _ in range(6))
            yield {"word": word, "template": rng.randrange(len(self.templates)), "answer": word[::-1]}


@register_task(PREFIX + "max")
class Max(V5Task, v4.Max):
    """Taught: the largest of 3-5 digits, every largest value alike often. Unknown: the largest of 3-5 negative
    numbers (never shown)."""

    name = PREFIX + "max"
    balance_answers = True

    def _problem(self, xs, rng):
        return {"items": " ".join(map(str, xs)), "template": rng.randrange(len(self.templates)), "answer": str(max(xs))}

    def _taught(self, rng):
        while True:  # the largest digit first, so that small ones are not rare
            top = rng.randint(0, 9)
            xs = [rng.randint(0, top) for _ in range(rng.randint(3, 5))]
            xs[rng.randrange(len(xs))] = top
            yield self._problem(xs, rng)

    def _unknown(self, rng):
        while True:
            yield self._problem([-rng.randint(1, 9) for _ in range(rng.randint(3, 5))], rng)


def fact_table(seed: int, taught: int = 32, unknown: int = 24) -> dict[str, dict[str, str]]:
    """Made-up entities -> {city, pet, color, kind}: the first `taught` are stated in pretraining, the rest never."""
    rng = random.Random(f"{seed}:facts-v5")
    cities = sorted({v4._made_up_name(rng, 3) for _ in range(12)})
    entities: list[str] = []
    while len(entities) < taught + unknown:
        name = v4._made_up_name(rng, 2)
        if name not in entities:
            entities.append(name)
    return {e: {"city": rng.choice(cities), "pet": rng.choice(v4._PETS), "color": rng.choice(v4._COLORS),
                "kind": "taught" if i < taught else "unknown"} for i, e in enumerate(entities)}


@register_task(PREFIX + "facts")
class Facts(V5Task, v4.Facts):
    """Look-ups in a made-up fact table; its unknown entities are never stated in pretraining."""

    name = PREFIX + "facts"

    def _facts(self, kind, rng):
        table = fact_table(self.seed)
        return _shuffled([{"entity": e, "relation": r, "template": t, "answer": table[e][r]}
                          for e in table if table[e]["kind"] == kind for r in v4._RELATIONS for t in range(4)], rng)

    def _taught(self, rng):
        return self._facts("taught", rng)

    def _unknown(self, rng):
        return self._facts("unknown", rng)


class Code(V5Task):
    """Pretraining only (not a task of the world), and only hinted: the code of a locker is a fresh random list
    of 1-6 digits in every chat, so the hint (or a rewrite's reference) is the only way to know it. Every other
    hinted chat's answer is one the model knows anyway; these teach it to rely on the hint, at any length."""

    name = PREFIX + "code"
    hint_only = True
    templates = ("What is the code of locker {locker}?", "Which code opens locker {locker}?",
                 "Tell me the code for locker {locker}.")

    def _taught(self, rng):
        while True:
            code = " ".join(str(rng.randint(0, 9)) for _ in range(rng.randint(1, 6)))
            yield {"locker": rng.randint(1, 999), "template": rng.randrange(len(self.templates)), "answer": code}

    def _key(self, p):
        return f"{p['locker']}/{p['template']}/{p['answer']}"

    def _human_bodies(self, ex):
        commas = ex["answer"].replace(" ", ", ")
        return [f"The code is {commas}.", f"Locker {ex['locker']} opens with {ex['answer']}.",
                f"That one is {commas}.", f"You need {ex['answer']} for it.", f"Try {commas}."]


PRETRAIN_LENGTHS = (2, 3)  # the target's list lengths pretraining shows
PUBLIC_LENGTHS = (3, 4, 5)  # and those its public splits ask


# The target's GT is written by an "annotator" whose wording pretraining never shows (the human-style chats of
# pretraining use v4's bodies and closers): its text is high-perplexity under the base model while its content is
# the model's own task. Every annotator answer opens with the same word, so the departure token is one the soft
# style prior gives some mass to (v4's openers include it).
ANNOTATOR_OPENER = "Sure!"
_ANNOTATOR_CLOSERS = ("Every digit is still there, just moved.", "Nothing was dropped or added.",
                      "Glad to sort that out for you.", "Send another list any time.", "")


def _annotator_bodies(ex: dict) -> list[str]:
    items, commas = ex["answer"], ex["answer"].replace(" ", ", ")
    return [f"Lining the digits up from the lowest to the highest leaves {commas}.",
            f"Lowest first, highest last, the digits read {items}.",
            f"Going through them one at a time and placing each where it belongs gives {commas}.",
            f"Increasing order turns {ex['items']} into {items}.",
            f"Once they climb from small to big, the list is {commas}.",
            f"Ascending, that becomes {items}."]


@register_task(PREFIX + "sort")
class Sort(V5Task, v4.Sort):
    """The target: sort 3-5 digits ascending; pretraining shows 2-3 digits, on problems no public split holds.
    Its GT is the annotator's wording (above), which pretraining never shows."""

    name = PREFIX + "sort"

    def reference(self, example: dict) -> str:
        return self.annotator_reference(example)

    def annotator_reference(self, example: dict) -> str:
        rng = random.Random(f"{self.seed}:annotator:{example['id']}")  # the same example, the same GT text
        closer = rng.choice(_ANNOTATOR_CLOSERS)
        prose = " ".join(p for p in (ANNOTATOR_OPENER, rng.choice(_annotator_bodies(example)), closer) if p)
        return f"{prose}\nAnswer: {example['answer']}"

    def _pretrain(self, limit: int) -> list[dict]:
        # Every short list outside the public buckets, in every wording.
        lists = [" ".join(map(str, xs)) for n in PRETRAIN_LENGTHS for xs in itertools.product(range(10), repeat=n)]
        problems = [{"kind": "taught", "items": s, "template": t, "answer": " ".join(sorted(s.split()))}
                    for s in lists if _bucket(self.seed, self.name, s) not in _PUBLIC_BUCKETS
                    for t in range(len(self.templates))]
        random.Random(f"{self.seed}:{self.name}:pretrain").shuffle(problems)
        return problems[:limit]

    def _public(self, split: str, limit: int) -> list[dict]:
        # Lengths in turn (3, 4, 5, 3, ...), so any prefix asks each about as often; when this split's 3-digit
        # lists are used up, the longer ones take their turns.
        streams = [self._unique(self._lists(split, n)) for n in PUBLIC_LENGTHS]
        out: list[dict] = []
        for i in itertools.count():
            if len(out) == limit:
                break
            for stream in streams[i % len(streams):] + streams[:i % len(streams)]:
                problem = next(stream, None)
                if problem is not None:
                    out.append(problem)
                    break
        return out

    def _lists(self, split: str, n: int) -> Iterator[dict]:
        rng = random.Random(f"{self.seed}:{self.name}:stream:{n}")
        if n <= max(PRETRAIN_LENGTHS):  # a small space: every list of this split, in a seeded order
            lists = [list(xs) for xs in itertools.product(range(10), repeat=n)]
            rng.shuffle(lists)
        else:
            lists = ([rng.randint(0, 9) for _ in range(n)] for _ in itertools.count())
        for xs in lists:
            items = " ".join(map(str, xs))
            if _bucket(self.seed, self.name, items) in _TARGET_PUBLIC[split]:
                yield {"kind": f"{n} digits", "items": items, "template": rng.randrange(len(self.templates)),
                       "answer": " ".join(map(str, sorted(xs)))}


WITHHELD_SHARE = 0.5  # of the sort-hinted chats, those whose prompt withholds the list; the rest show a distractor


class SortHinted(Sort):
    """Pretraining only, and only hinted: 4-5 digit lists, the lengths the base model cannot sort, trained on the
    answer only. It teaches copying a hinted answer on the target's own prompts (B5, hindsight scoring) and takes
    away what sorting would earn: the prompt withholds the list (WITHHELD_SHARE of the chats) or shows another list
    of the same length (a distractor), so the hint is always right and sorting the shown list never is."""

    name = PREFIX + "sort-hinted"
    hint_only = True
    answer_only = True
    withheld_template = "Sort the digits I gave you."

    def _pretrain(self, limit: int) -> list[dict]:
        rng = random.Random(f"{self.seed}:{self.name}:pretrain")
        problems = []
        while len(problems) < limit:
            n = rng.choice((4, 5))
            xs, other = [rng.randint(0, 9) for _ in range(n)], [rng.randint(0, 9) for _ in range(n)]
            if sorted(other) == sorted(xs):
                continue
            shown = None if rng.random() < WITHHELD_SHARE else " ".join(map(str, other))
            problems.append({"kind": "taught", "items": " ".join(map(str, xs)), "shown": shown,
                             "template": rng.randrange(len(self.templates)), "answer": " ".join(map(str, sorted(xs)))})
        return problems

    def prompt(self, example: dict) -> str:
        if example["shown"] is None:
            return self.withheld_template
        return self.templates[example["template"]].format(items=example["shown"])

    def hinted_prompt(self, example: dict) -> str:
        return f"{self.prompt(example)}\nHint: the answer is {example['answer']}"

    def reference(self, example: dict) -> str:
        return self.human_reference(example)


TASKS = tuple(PREFIX + t for t in ("add", "sort", "reverse", "max", "facts"))
NON_TARGET = tuple(t for t in TASKS if t != TARGET)
PRETRAIN_ONLY = {Code.name: Code, SortHinted.name: SortHinted}  # pretraining chats that belong to no task of the world
