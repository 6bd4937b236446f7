"""Small tasks with exact checkers that any model can partly solve; used to test the engine fast."""

from robust_sft.tasks.base import Task, register_task


class _FakeTask(Task):
    splits = ("train", "validation", "test")
    max_new_tokens = 8

    def load(self, split, *, limit=None, path=None):
        n = {"train": 16, "validation": 8, "test": 8}[split]
        return [{"id": f"{self.name}/{split}/{i}", "n": i} for i in range(n)][:limit]

    def prompt(self, example):
        return f"say something about {example['n']}"

    def reference(self, example):
        return f"the number {example['n']} is a number"

    def extract(self, completion):
        return completion.strip() or None

    def oracle_reference(self, example):
        return f"{example['n']}"

    def answer_span(self, completion):
        # the checker-relevant part of a reference: its number
        digits = [i for i, ch in enumerate(completion) if ch.isdigit()]
        return (digits[0], digits[-1] + 1) if digits else None

    def hint(self, example):
        return f"Hint: the number is {example['n']}"


@register_task("test/even_length")
class EvenLength(_FakeTask):
    name = "test/even_length"

    def check(self, example, completion):
        return len(completion) % 2 == 0


@register_task("test/nonempty")
class NonEmpty(_FakeTask):
    name = "test/nonempty"

    def check(self, example, completion):
        return bool(completion.strip())


@register_task("test/has_space")
class HasSpace(_FakeTask):
    name = "test/has_space"

    def check(self, example, completion):
        return " " in completion


@register_task("test/mystery")
class Mystery(Task):
    """A task that says nothing about where its checker reads (no answer_span) and gives no hint."""

    name = "test/mystery"

    def load(self, split, *, limit=None, path=None):
        return [{"id": f"mystery/{split}/{i}"} for i in range(4)][:limit]

    def prompt(self, example):
        return "anything?"

    def reference(self, example):
        return "something"

    def extract(self, completion):
        return completion

    def check(self, example, completion):
        return True
