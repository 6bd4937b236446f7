import tests.fake_tasks  # noqa: F401  (registers the test tasks)
from robust_sft.synthesis import GenerationSettings, rephrase, rephrase_prompt, self_output, sequence_ppls
from robust_sft.tasks import get_task


def fixed_sampler(samples_per_prompt):
    calls = []

    def sample(conversations, config):
        calls.append((conversations, config))
        return [list(samples_per_prompt[i % len(samples_per_prompt)]) for i in range(len(conversations))]

    return sample, calls


def test_self_output_keeps_the_lowest_perplexity_correct_sample(tiny_model_dir):
    from robust_sft.modeling import load_model, load_tokenizer

    model, tokenizer = load_model(tiny_model_dir), load_tokenizer(tiny_model_dir)
    task = get_task("test/even_length")
    examples = task.load("train", limit=3)
    correct = ["ab", "the cat!", "a number x"]  # even lengths: accepted
    assert all(len(c) % 2 == 0 for c in correct)
    wrong = ["abc", "x"]  # odd lengths: rejected
    sample, calls = fixed_sampler([correct + wrong, wrong, correct[:1] * 3])
    rows, report = self_output(model, tokenizer, task, examples, GenerationSettings(n=5, seed=3), sampler=sample)
    assert calls[0][1].n == 5 and calls[0][1].temperature == 0.7 and calls[0][1].top_p == 0.95
    assert [r["id"] for r in rows] == [examples[0]["id"], examples[2]["id"]]
    assert report["dropped_no_correct_sample"] == 1 and report["kept"] == 2
    ppls = sequence_ppls(model, tokenizer, [task.prompt(examples[0])] * 3, correct, 512)
    assert rows[0]["answer"] == correct[min(range(3), key=ppls.__getitem__)]
    assert rows[0]["prompt"] == task.prompt(examples[0])
    assert rows[1]["answer"] == "ab"
    assert report["correct_samples"] == 3 + 3


def test_rephrase_shows_the_reference_and_keeps_only_verified_rewrites(tiny_model_dir):
    from robust_sft.modeling import load_model, load_tokenizer

    model, tokenizer = load_model(tiny_model_dir), load_tokenizer(tiny_model_dir)
    task = get_task("test/even_length")
    examples = task.load("train", limit=4)
    sample, calls = fixed_sampler([["ok"], ["odd"]])
    rows, report = rephrase(model, tokenizer, task, examples, GenerationSettings(), sampler=sample)
    shown = calls[0][0][0][0]["content"]
    assert task.reference(examples[0]) in shown and task.prompt(examples[0]) in shown
    assert shown == rephrase_prompt(task, examples[0])
    assert [r["answer"] for r in rows] == ["ok", "ok"] and report["dropped_incorrect"] == 2
    assert rows[0]["prompt"] == task.prompt(examples[0])  # trained on the original prompt
