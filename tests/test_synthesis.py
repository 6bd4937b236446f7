import math

import pytest
import torch

import tests.fake_tasks  # noqa: F401  (registers the test tasks)
from robust_sft.data.synthesis import GenerationSettings, rephrase, rephrase_prompt, self_output, sequence_ppls
from robust_sft.tasks import get_task


def fixed_sampler(samples_per_prompt):
    calls = []

    def sample(conversations, config):
        calls.append((conversations, config))
        return [list(samples_per_prompt[i % len(samples_per_prompt)]) for i in range(len(conversations))]

    return sample, calls


def test_self_output_keeps_the_lowest_perplexity_correct_sample(tiny_model_dir):
    from robust_sft.models.loading import load_model, load_tokenizer

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


def fixed_distribution_model(tokenizer, logits: torch.Tensor, hidden_size: int = 32):
    """A tiny Llama whose next-token logits are `logits` at every position, whatever the input.

    Its layers add nothing to the residual stream (zero output projections), every token embeds to the same vector
    10 e0, the final norm maps that to sqrt(hidden_size) e0, and the head reads the logits off coordinate 0.
    """
    from robust_sft.models.tiny import build_model

    model = build_model(tokenizer, hidden_size=hidden_size, num_layers=1, num_heads=2)
    with torch.no_grad():
        for layer in model.model.layers:
            layer.self_attn.o_proj.weight.zero_()
            layer.mlp.down_proj.weight.zero_()
        embeddings = model.get_input_embeddings().weight
        embeddings.zero_()
        embeddings[:, 0] = 10.0
        model.model.norm.weight.fill_(1.0)
        head = model.get_output_embeddings().weight
        head.zero_()
        head[:, 0] = logits / math.sqrt(hidden_size)
    return model.eval()


def answer_token_ids(tokenizer, prompt: str, answer: str) -> list[int]:
    from robust_sft.data.examples import Example, tokenize_examples

    example = Example("0", [{"role": "user", "content": prompt}, {"role": "assistant", "content": answer}])
    (tokenized,) = tokenize_examples(tokenizer, [example], 512, progress=False)
    return [i for i, scored in zip(tokenized.input_ids, tokenized.answer_mask) if scored]


def test_self_output_keeps_the_sample_of_lowest_perplexity_by_construction(tiny_tokenizer):
    """Candidates whose perplexity order is set by the model's fixed next-token distribution, not measured."""
    task = get_task("test/even_length")
    examples = task.load("train", limit=1)
    prompt = task.prompt(examples[0])
    likely, middling, unlikely = "zzzz", "xkxk", "qqqq"  # even lengths: all accepted
    tokens = {answer: answer_token_ids(tiny_tokenizer, prompt, answer) for answer in (likely, middling, unlikely)}
    eot = tiny_tokenizer.eos_token_id
    assert all(t[-1] == eot for t in tokens.values())
    words = [set(t[:-1]) for t in tokens.values()]
    assert sum(map(len, words)) == len(set().union(*words))  # no token shared but the end of turn
    logits = torch.zeros(len(tiny_tokenizer))
    logits[tokens[middling]] = 3.0
    logits[tokens[likely]] = 6.0  # the end-of-turn token too: shared by all three
    nll = torch.logsumexp(logits, 0) - logits
    expected = {a: math.exp(float(nll[t].mean())) for a, t in tokens.items()}
    assert expected[likely] < expected[middling] < expected[unlikely]

    model = fixed_distribution_model(tiny_tokenizer, logits)
    measured = sequence_ppls(model, tiny_tokenizer, [prompt] * 3, list(tokens), 512)
    assert measured == pytest.approx(list(expected.values()), rel=1e-4)
    sample, _ = fixed_sampler([[unlikely, likely, middling, "odd", unlikely]])
    rows, report = self_output(model, tiny_tokenizer, task, examples, GenerationSettings(n=5), sampler=sample)
    assert [r["answer"] for r in rows] == [likely] and report["correct_samples"] == 4


def test_rephrase_shows_the_reference_and_keeps_only_verified_rewrites(tiny_model_dir):
    from robust_sft.models.loading import load_model, load_tokenizer

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
