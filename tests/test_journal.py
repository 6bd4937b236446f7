"""A batch journal lets a killed generation resume: the batches it recorded are not sampled again, and the outputs
equal an uninterrupted call's."""

import json

from robust_sft.core.journal import BatchJournal
from robust_sft.models.generation import SamplingConfig, generate_hf
from tests.test_generation import CHATS, TOK, _tiny_llama


def test_journal_keeps_its_keys_batches_and_skips_a_line_cut_short(tmp_path):
    journal = BatchJournal(tmp_path / "j.jsonl", "k1")
    journal.start()
    journal.record(0, [["a"]])
    journal.record(2, [["c"], ["d"]])
    assert journal.finished() == {0: [["a"]], 2: [["c"], ["d"]]}
    assert BatchJournal(tmp_path / "j.jsonl", "other").finished() == {}  # another computation's journal
    with open(journal.path, "a") as f:
        f.write('{"batch": 3, "res')  # killed mid-line
    journal.start()  # the resumed call: keeps the batches, ends the cut line
    journal.record(4, [["e"]])
    assert journal.finished() == {0: [["a"]], 2: [["c"], ["d"]], 4: [["e"]]}
    BatchJournal(journal.path, "k2").start()  # a new key starts anew
    assert BatchJournal(journal.path, "k2").finished() == {} and BatchJournal(journal.path, "k1").finished() == {}


def test_a_killed_sampling_resumes_with_the_same_outputs_and_samples_only_what_is_missing(tmp_path):
    model = _tiny_llama()
    config = SamplingConfig(n=2, temperature=1.0, top_p=0.95, max_new_tokens=8, seed=3)
    whole = generate_hf(model, TOK, CHATS, config, batch_size=2, progress=False)  # 4 prompts x 2 = 4 batches
    path = tmp_path / "self_output.journal.jsonl"
    assert generate_hf(model, TOK, CHATS, config, batch_size=2, progress=False,
                       journal=BatchJournal(path, "model-a")) == whole
    lines = path.read_text().splitlines()
    assert len(lines) == 1 + 4
    path.write_text("\n".join(lines[:3]) + "\n")  # killed after two batches
    calls = []
    original = model.generate
    model.generate = lambda *a, **k: calls.append(1) or original(*a, **k)
    resumed = generate_hf(model, TOK, CHATS, config, batch_size=2, progress=False, journal=BatchJournal(path, "model-a"))
    assert resumed == whole and len(calls) == 2  # only the two batches the journal lacked
    # another model (the caller's key) or other settings sample everything again
    calls.clear()
    generate_hf(model, TOK, CHATS, config, batch_size=2, progress=False, journal=BatchJournal(path, "model-b"))
    assert len(calls) == 4 and json.loads(path.read_text().splitlines()[0])["key"] != json.loads(lines[0])["key"]


def test_generated_data_resumes_from_its_journal_and_removes_it_when_written(tmp_path, tiny_model_dir, monkeypatch):
    import tests.fake_tasks  # noqa: F401  (registers the test tasks)
    from robust_sft.data.synthesis import GenerationSettings, journal_path, write_generated_data
    from robust_sft.models.loading import load_model, load_tokenizer
    from robust_sft.tasks import get_task

    model, tokenizer = load_model(tiny_model_dir), load_tokenizer(tiny_model_dir)
    calls = []
    original = model.generate
    model.generate = lambda *a, **k: calls.append(1) or original(*a, **k)
    task = get_task("test/even_length")
    examples = task.load("train", limit=6)
    settings = GenerationSettings(n=2, max_new_tokens=6, batch_size=4, seed=1)  # 2 prompts a batch: 3 batches
    whole, resumed = tmp_path / "whole" / "self_output.jsonl", tmp_path / "resumed" / "self_output.jsonl"
    journal = journal_path(whole)
    with monkeypatch.context() as patch:
        patch.setattr(BatchJournal, "remove", lambda self: None)  # keep the finished journal, to cut it down below
        write_generated_data("self_output", model, tokenizer, task, examples, settings, whole, journal_key="k")
    assert len(calls) == 3
    lines = journal.read_text().splitlines()
    journal_path(resumed).parent.mkdir()
    journal_path(resumed).write_text("\n".join(lines[:2]) + "\n")  # killed after the first batch
    calls.clear()
    report = write_generated_data("self_output", model, tokenizer, task, examples, settings, resumed, journal_key="k")
    assert resumed.read_text() == whole.read_text() and report["resumed"] is True
    assert len(calls) == 2  # the recorded batch was not sampled again
    assert not journal_path(resumed).exists()  # written: the journal is gone
