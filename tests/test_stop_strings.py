"""Stop strings: generation ends after a task's stop string (kept in the text) in HF generate and in the vLLM
parameters alike, and evaluation's verdicts are those of the full completions."""

from __future__ import annotations

import pytest

from robust_sft.evaluation.engine import evaluate_task, greedy_completions
from robust_sft.models.generation import SamplingConfig, cut_at_stop, ends_at_stop, vllm_sampling_options
from robust_sft.tasks import get_task
from robust_sft.tasks.base import Task


def test_cut_at_stop_keeps_the_earliest_stop_string():
    assert cut_at_stop("def f():\n    pass\n```\nThis function", ("```\n",)) == "def f():\n    pass\n```\n"
    assert cut_at_stop("a STOP b END c", ("END", "STOP")) == "a STOP"
    assert cut_at_stop("no stop here", ("END",)) == "no stop here"
    assert cut_at_stop("anything", ()) == "anything"
    assert ends_at_stop("x```\n", ("```\n",)) and not ends_at_stop("x```\ny", ("```\n",))


def test_vllm_gets_the_same_stops_kept_in_the_text():
    config = SamplingConfig(n=2, temperature=0.7, top_p=0.9, max_new_tokens=64, seed=3, stop=("```\n",))
    assert vllm_sampling_options(config) == {"n": 2, "temperature": 0.7, "top_p": 0.9, "max_tokens": 64, "seed": 3,
                                             "stop": ["```\n"], "include_stop_str_in_output": True}
    assert "stop" not in vllm_sampling_options(SamplingConfig())


@pytest.fixture(scope="module")
def tiny(tiny_model_dir):
    from robust_sft.models.loading import load_model, load_tokenizer

    return load_model(tiny_model_dir, device="cpu"), load_tokenizer(tiny_model_dir)


CHATS = [[{"role": "user", "content": f"count the word {w}"}] for w in ("a", "the list", "sort 3 1 2", "python")]


def full_and_stop(model, tokenizer) -> tuple[list[str], str]:
    """Full greedy completions, and a stop string that occurs inside the first one (not at its end)."""
    from robust_sft.models.generation import generate

    full = [c[0] for c in generate(model, tokenizer, CHATS, SamplingConfig(max_new_tokens=40), progress=False)]
    middle = len(full[0]) // 2
    return full, full[0][middle: middle + 3]


def test_hf_generate_stops_after_the_stop_string(tiny):
    from robust_sft.models.generation import generate

    model, tokenizer = tiny
    full, stop = full_and_stop(model, tokenizer)
    stopped = [c[0] for c in generate(model, tokenizer, CHATS, SamplingConfig(max_new_tokens=40, stop=(stop,)),
                                      batch_size=2, progress=False)]
    assert stopped == [cut_at_stop(f, (stop,)) for f in full]
    assert stopped[0].endswith(stop) and len(stopped[0]) < len(full[0])


class FirstWordLength(Task):
    """Checks the text before its stop string only: cutting there cannot change a verdict."""

    name = "test/first_part"

    def __init__(self, stop: str):
        self.stop_strings = (stop,)

    def load(self, split, *, limit=None, path=None):
        return [{"id": str(i)} for i in range(len(CHATS))]

    def prompt(self, example):
        return CHATS[int(example["id"])][0]["content"]

    def reference(self, example):
        return ""

    def extract(self, completion):
        return completion.split(self.stop_strings[0])[0]

    def check(self, example, completion):
        return len(self.extract(completion)) % 2 == 0


def test_evaluation_gives_the_same_verdicts_with_and_without_stops(tiny, tmp_path):
    import json

    model, tokenizer = tiny
    _, stop = full_and_stop(model, tokenizer)
    task = FirstWordLength(stop)
    examples = task.load("test")
    scores, logs = {}, {}
    for with_stop in (True, False):
        log = tmp_path / f"{with_stop}.jsonl"
        scores[with_stop] = evaluate_task(model, tokenizer, task, examples, max_new_tokens=40, log_path=log,
                                          progress=False, stop=with_stop)
        logs[with_stop] = [json.loads(line) for line in log.read_text().splitlines()]
    assert [r["correct"] for r in logs[True]] == [r["correct"] for r in logs[False]]
    assert scores[True] == scores[False]
    cut, full = logs[True][0]["completion"], logs[False][0]["completion"]
    assert full.startswith(cut) and cut.endswith(stop) and len(cut) < len(full)


def python_block(code: str) -> str:
    return f"```python\n{code}\n```\n"


GOOD, BAD = "def sq(xs):\n    return sum(x * x for x in xs)", "def sq(xs):\n    return 0"
# Full completions as a model might write them; the checker reads the first ```python block, else the first block.
MBPP_COMPLETIONS = [
    python_block(GOOD) + "This squares each number and adds them up.\nExample:\n```python\nprint(sq([1]))\n```\n",
    "Here is the function:\n" + python_block(BAD) + "It returns the sum of squares.",
    "```\n" + BAD + "\n```\nOr, in Python:\n" + python_block(GOOD) + "Done.",  # an untagged block first
    "```\n" + GOOD + "\n```\nThat is all.",  # an untagged block only: its opening fence is a stop string
    "```python\n" + GOOD,  # unclosed (ran out of tokens)
    "I cannot write code for this.",
]


def scripted_sampler(completions: list[str], calls: list):
    """Greedy generation of fixed completions, cut at the config's stop strings as both backends cut."""
    def sample(conversations, config):
        calls.append((len(conversations), config.stop))
        index = {c[0]["content"]: i for i, c in enumerate(CONVERSATIONS)}
        return [[cut_at_stop(completions[index[c[0]["content"]]], config.stop)] for c in conversations]
    return sample


CONVERSATIONS = [[{"role": "user", "content": f"problem {i}"}] for i in range(len(MBPP_COMPLETIONS))]


def test_mbpp_stops_at_the_closing_fence_with_the_verdicts_of_full_completions():
    task = get_task("mbpp")
    assert task.stop_strings == ("```\n",)
    example = {"id": "mbpp/1", "text": "Sum of squares.", "code": GOOD, "setup": "",
               "tests": ["assert sq([1, 2, 3]) == 14", "assert sq([]) == 0"]}
    calls = []
    stopped = greedy_completions(scripted_sampler(MBPP_COMPLETIONS, calls), task, CONVERSATIONS, 512)
    full = greedy_completions(scripted_sampler(MBPP_COMPLETIONS, []), task, CONVERSATIONS, 512, stop=False)
    assert full == MBPP_COMPLETIONS
    examples = [example] * len(MBPP_COMPLETIONS)
    verdicts = task.check_many(examples, stopped)
    assert verdicts == task.check_many(examples, full) == [True, False, True, True, True, False]
    assert stopped[0] == python_block(GOOD) and stopped[1] == "Here is the function:\n" + python_block(BAD)
    # The two untagged-block completions were cut at their opening fence, which is no final cut: generated again.
    assert calls == [(6, ("```\n",)), (2, ())] and stopped[2:4] == MBPP_COMPLETIONS[2:4]
    assert sum(map(len, stopped)) < sum(map(len, full))


def test_tasks_without_stop_strings_generate_as_before():
    for name in ("gsm8k", "arc_challenge", "math", "organism/sort"):
        assert get_task(name).stop_strings == (), name
    calls = []
    task = get_task("organism/sort")
    greedy_completions(scripted_sampler(["Answer: 1 2 3\nHope that helps!"] * 6, calls), task, CONVERSATIONS, 160)
    assert calls == [(6, ())]
