"""Faults found by probing: kills during saves, bad bytes, late config errors, unchecked limits, file modes,
stale caches. Each test here failed before its fix."""

from __future__ import annotations

import json
import os
import stat

import pytest

from tests.conftest import make_rows

# --------------------------------------------------------------------------------------------- file modes


def test_artifacts_honour_the_umask(tmp_path):
    import pyarrow as pa

    from robust_sft.core.artifacts import write_json, write_parquet

    old = os.umask(0o022)
    try:
        write_json(tmp_path / "a.json", {"x": 1})
        write_parquet(tmp_path / "a.parquet", pa.table({"x": [1]}))
        os.umask(0o077)
        write_json(tmp_path / "private.json", {"x": 1})
    finally:
        os.umask(old)
    assert stat.S_IMODE((tmp_path / "a.json").stat().st_mode) == 0o644
    assert stat.S_IMODE((tmp_path / "a.parquet").stat().st_mode) == 0o644
    assert stat.S_IMODE((tmp_path / "private.json").stat().st_mode) == 0o600
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []  # no temporary left


# --------------------------------------------------------------------------------------------- bad bytes


def _jsonl_bytes(rows) -> bytes:
    return "".join(json.dumps(r) + "\n" for r in rows).encode()


def test_jsonl_with_a_byte_order_mark_reads_every_example(tmp_path):
    from robust_sft.data.examples import ErrorLog, read_examples

    path = tmp_path / "bom.jsonl"
    path.write_bytes(b"\xef\xbb\xbf" + _jsonl_bytes(make_rows(4)))
    errors = ErrorLog()
    examples = read_examples(path, on_error="skip", errors=errors)
    assert [e.id for e in examples] == ["ex0", "ex1", "ex2", "ex3"]
    assert errors.skipped == []


def test_json_file_with_a_byte_order_mark_reads(tmp_path):
    from robust_sft.data.examples import read_examples

    path = tmp_path / "bom.json"
    path.write_bytes(b"\xef\xbb\xbf" + json.dumps(make_rows(3)).encode())
    assert len(read_examples(path)) == 3


def _with_invalid_byte(rows, line_index: int) -> bytes:
    lines = _jsonl_bytes(rows).split(b"\n")
    lines[line_index] = lines[line_index].replace(b'"answer": "', b'"answer": "\xff', 1)
    return b"\n".join(lines)


def test_invalid_utf8_names_file_and_line_and_skip_drops_only_that_line(tmp_path):
    from robust_sft.data.examples import DataError, ErrorLog, read_examples

    path = tmp_path / "bad.jsonl"
    path.write_bytes(_with_invalid_byte(make_rows(5), 2))
    with pytest.raises(DataError, match=rf"{path}:3: not valid UTF-8 \(byte 0xff"):
        read_examples(path)
    errors = ErrorLog()
    examples = read_examples(path, on_error="skip", errors=errors)
    assert [e.id for e in examples] == ["ex0", "ex1", "ex3", "ex4"]
    assert len(errors.skipped) == 1 and f"{path}:3:" in errors.skipped[0]


def test_invalid_utf8_in_a_json_file_names_the_line(tmp_path):
    from robust_sft.data.examples import DataError, read_examples

    path = tmp_path / "bad.json"
    path.write_bytes(b'[\n{"id": "a", "prompt": "p", "answer": "x"},\n{"id": "b", "prompt": "p", "answer": "\xfe"}\n]')
    with pytest.raises(DataError, match=rf"{path}:3: not valid UTF-8"):
        read_examples(path)


def test_task_files_tolerate_a_bom_and_name_invalid_bytes(tmp_path):
    from robust_sft.tasks.base import TaskError
    from robust_sft.tasks.loading import read_local

    good = tmp_path / "good.jsonl"
    good.write_bytes(b"\xef\xbb\xbf" + _jsonl_bytes([{"a": 1}, {"a": 2}]))
    assert [row for _, row in read_local(good, "test")] == [{"a": 1}, {"a": 2}]
    bad = tmp_path / "bad.jsonl"
    bad.write_bytes(b'{"a": 1}\n{"a": "\xc3("}\n')
    with pytest.raises(TaskError, match=rf"{bad}:2: not valid UTF-8"):
        read_local(bad, "test")


def _flip(path, out, offsets):
    data = bytearray(path.read_bytes())
    for offset in offsets:
        data[offset] ^= 0xFF
    out.write_bytes(bytes(data))


def test_corrupt_parquet_names_the_file(tmp_path, scores_path):
    from pathlib import Path

    from robust_sft.scoring.files import load_scores
    from robust_sft.tasks.base import TaskError
    from robust_sft.tasks.loading import read_local

    damaged = tmp_path / "damaged.parquet"
    _flip(Path(scores_path), damaged, [200, 300])
    with pytest.raises(ValueError, match=f"{damaged}: cannot read Parquet"):
        load_scores(damaged)
    with pytest.raises(TaskError, match=f"{damaged}: cannot read Parquet"):
        read_local(damaged, "test")


def test_a_flipped_bit_in_parquet_data_is_detected(tmp_path):
    """Page checksums: a flip inside the values is an error, not silently wrong numbers."""
    import pyarrow as pa

    from robust_sft.core.artifacts import read_parquet, write_parquet

    path = tmp_path / "t.parquet"
    write_parquet(path, pa.table({"x": pa.array(range(0, 4000, 3), pa.int64())}))
    import pyarrow.parquet as pq

    chunk = pq.ParquetFile(path).metadata.row_group(0).column(0)
    target = (chunk.dictionary_page_offset or chunk.data_page_offset) + chunk.total_compressed_size - 1
    flipped = tmp_path / "flipped.parquet"
    _flip(path, flipped, [target])
    with pytest.raises(ValueError, match=f"{flipped}: cannot read Parquet"):
        read_parquet(flipped)


# --------------------------------------------------------------------------------------------- checkpoints


def _train_config(tiny_model_dir, scores_path, out, **overrides):
    from robust_sft.training.config import TrainConfig

    defaults = dict(model=tiny_model_dir, data=scores_path, output_dir=str(out), num_train_epochs=3,
                    learning_rate=1e-3, per_device_train_batch_size=8, logging_steps=2, progress=False,
                    mask="none")  # 24 examples / 8 = 3 steps per epoch; logs at steps 1, 2, 4, ... not at saves
    return TrainConfig(**{**defaults, **overrides})


def test_resume_skips_a_checkpoint_killed_while_saving(tiny_model_dir, scores_path, tmp_path, caplog):
    from robust_sft.training.trainer import train

    train(_train_config(tiny_model_dir, scores_path, tmp_path, num_train_epochs=2))
    state = tmp_path / "checkpoint-6" / "trainer_state.json"
    state.write_text(state.read_text()[:100])  # the Trainer writes this file last: a kill during it
    (tmp_path / "final").rename(tmp_path / "old-final")
    with caplog.at_level("WARNING"):
        train(_train_config(tiny_model_dir, scores_path, tmp_path, num_train_epochs=2,
                            resume_from_checkpoint="latest"))
    assert any("checkpoint-6 is incomplete" in r.getMessage() for r in caplog.records)
    assert json.loads(state.read_text())["global_step"] == 6  # epoch 2 was trained again from checkpoint-3
    log = [json.loads(line) for line in (tmp_path / "loss_log.jsonl").read_text().splitlines()]
    assert [e["step"] for e in log if "loss" in e] == [1, 2, 3, 4, 6]


def test_an_incomplete_checkpoint_named_explicitly_is_refused(tiny_model_dir, scores_path, tmp_path):
    from robust_sft.training.checkpoints import resume_point

    (tmp_path / "checkpoint-3").mkdir()
    with pytest.raises(ValueError, match="checkpoint-3: incomplete checkpoint"):
        resume_point(tmp_path, str(tmp_path / "checkpoint-3"))
    assert resume_point(tmp_path, "latest") is None and not (tmp_path / "checkpoint-3").exists()


def test_training_loss_after_resumes_is_the_whole_runs(tiny_model_dir, scores_path, tmp_path):
    import shutil

    from safetensors.torch import load_file

    from robust_sft.training.trainer import train

    whole, resumed = tmp_path / "whole", tmp_path / "resumed"
    train(_train_config(tiny_model_dir, scores_path, whole))
    # killed after epoch 1 was saved, then killed again after epoch 2 was saved
    resumed.mkdir()
    shutil.copytree(whole / "checkpoint-3", resumed / "checkpoint-3")
    train(_train_config(tiny_model_dir, scores_path, resumed, resume_from_checkpoint="latest"))
    for leftover in ("checkpoint-9", "final", "train_summary.json", "loss_log.jsonl"):
        path = resumed / leftover
        shutil.rmtree(path) if path.is_dir() else path.unlink()
    train(_train_config(tiny_model_dir, scores_path, resumed, resume_from_checkpoint="latest"))

    expected = json.loads((whole / "train_summary.json").read_text())["train_loss"]
    got = json.loads((resumed / "train_summary.json").read_text())["train_loss"]
    assert got == pytest.approx(expected, rel=1e-6)
    steps = [e["step"] for e in map(json.loads, (resumed / "loss_log.jsonl").read_text().splitlines()) if "loss" in e]
    assert steps == [1, 2, 3, 4, 6, 8, 9]  # every step accounted for, across both resumes
    a = load_file(str(whole / "final" / "adapter_model.safetensors"))
    b = load_file(str(resumed / "final" / "adapter_model.safetensors"))
    assert all((a[k] == b[k]).all() for k in a)


# --------------------------------------------------------------------------------------------- typed configs


def _yaml(tmp_path, text: str, name: str = "c.yaml"):
    path = tmp_path / name
    path.write_text(text)
    return str(path)


def test_train_yaml_values_are_converted_by_field_type(tmp_path):
    from robust_sft.cli import _parse
    from robust_sft.training.config import TrainConfig

    path = _yaml(tmp_path, "model: m\ndata: d.parquet\noutput_dir: o\nlearning_rate: 2e-5\nlora_r: '8'\n"
                           "num_train_epochs: 1e0\nsave_total_limit: null\n")
    config = _parse(TrainConfig, [path], "train")
    assert config.learning_rate == 2e-5 and isinstance(config.learning_rate, float)
    assert config.lora_r == 8 and config.num_train_epochs == 1.0 and config.save_total_limit is None


@pytest.mark.parametrize("line, message", [
    ("tau: abc", "tau must be greater than 1 .* or 'auto', not 'abc'"),
    ("num_train_epochs: three", "num_train_epochs: expected a number, got 'three'"),
    ("lora_r: 8.5", "lora_r: expected an integer, got 8.5"),
    ("bogus: 1", r"unknown option\(s\) \['bogus'\]"),
    ("learning_rate: -2e-5", "learning_rate must be a positive number"),
    ("warmup_ratio: 3", r"warmup_ratio must be in \[0, 1\)"),
    ("tau: 0.5", "tau must be greater than 1"),
])
def test_train_yaml_errors_name_the_key_and_the_file(tmp_path, capsys, line, message):
    from robust_sft.cli import main

    path = _yaml(tmp_path, f"model: m\ndata: d.parquet\noutput_dir: o\n{line}\n")
    assert main(["train", path]) == 1
    err = capsys.readouterr().err
    assert path in err and re_search(message, err)


def re_search(pattern: str, text: str) -> bool:
    import re

    return re.search(pattern, text) is not None


def test_run_config_values_are_typed(tmp_path):
    from robust_sft.experiment.runner import Experiment, load_config

    config = load_config(_yaml(tmp_path, "target: organism/add\nmethods: [gt, stm]\nseeds: [1]\n"
                                         "taus: [2.5, 1e1]\ntrain: {learning_rate: 1e-3, lora_r: '4'}\n"))
    assert config.seeds == [1] and config.taus == [2.5, 10.0]
    assert config.train == {"learning_rate": 1e-3, "lora_r": 4}
    assert [v.name for v in Experiment(config, tmp_path / "run").variants] == ["gt", "stm@2.5", "stm@10"]
    assert load_config(_yaml(tmp_path, "taus: 2.5\n", "one.yaml")).taus == [2.5]


@pytest.mark.parametrize("snippet, message", [
    ("taus: [-1]", "tau must be greater than 1"),
    ("taus: [abc]", "taus: item 0: expected a number"),
    ("seeds: [0, 0]", "seeds must be distinct"),
    ("seeds: [-3]", r"seed must be in \[0, 2\*\*32\)"),
    ("train: {learning_rate: 0}", "learning_rate must be a positive number"),
    ("train: {per_device_train_batch_size: 0}", "per_device_train_batch_size must be at least 1"),
    ("train: {lr_scheduler_type: wobbly}", "lr_scheduler_type must be one of"),
    ("train: {dtype: float8}", "dtype must be one of"),
    ("train: {seed: 3}", r"train: unknown option\(s\) \['seed'\]"),
    ("generation: {top_p: 2}", r"top_p must be in \(0, 1\]"),
    ("generation: {n: 0}", "n must be at least 1"),
    ("generation: {temperature: hot}", "generation: temperature: expected a number"),
    ("eval_limit: 0", "eval_limit must be at least 1"),
    ("others: [organism/nope]", "unknown task 'organism/nope'"),
    ("control_tau: 1", "tau must be greater than 1"),
])
def test_dry_run_refuses_every_value_that_would_fail_later(tmp_path, capsys, snippet, message):
    from robust_sft.cli import main

    path = _yaml(tmp_path, f"target: organism/add\nmethods: [gt, stm, stm_random]\n{snippet}\n")
    assert main(["run", path, "--dry_run", "--out", str(tmp_path / "run")]) == 1
    err = capsys.readouterr().err
    assert path in err and re_search(message, err), err
    assert not (tmp_path / "run").exists()


def test_a_valid_config_passes_the_dry_run(tmp_path, capsys):
    from robust_sft.cli import main

    path = _yaml(tmp_path, "target: organism/add\nmethods: [gt, stm]\ntaus: [2.5]\n"
                           "train: {learning_rate: 3.0e-4, warmup_ratio: 0.03}\ngeneration: {n: 2}\n")
    assert main(["run", path, "--dry_run", "--out", str(tmp_path / "run")]) == 0
    assert "2 variants x 1 seeds" in capsys.readouterr().out


# --------------------------------------------------------------------------------------------- limits of inputs


def test_max_length_above_the_models_context_is_refused_before_any_work(tiny_model_dir, sft_jsonl, tmp_path):
    from robust_sft.models.loading import context_length
    from robust_sft.scoring.token_nll import ScoreConfig, score

    context = context_length(tiny_model_dir)
    assert context == 1024
    out = tmp_path / "s.parquet"
    with pytest.raises(ValueError, match=f"--max_length {2 * context} exceeds the context of .* \\({context} positions"):
        score(ScoreConfig(model=tiny_model_dir, data=sft_jsonl, out=str(out), max_length=2 * context, progress=False))
    assert list(tmp_path.iterdir()) == [tmp_path / "sft.jsonl"]  # no OUT.parts left behind


def test_mask_refuses_an_output_extension_it_cannot_write(scores_path, tmp_path, capsys):
    from robust_sft.cli import main

    out = tmp_path / "masked.jsonl"
    assert main(["mask", scores_path, "--mask", "none", "--out", str(out)]) == 1
    assert "must be a .parquet file or a directory" in capsys.readouterr().err
    assert not out.exists()


def test_mask_that_keeps_nothing_is_an_error_and_writes_nothing(scores_path, tmp_path, capsys):
    from robust_sft.cli import main

    out = tmp_path / "masked.parquet"
    assert main(["mask", scores_path, "--tau", "1.0000001", "--out", str(out)]) == 1
    assert "no example keeps a trainable token" in capsys.readouterr().err
    assert not out.exists()


def test_dpf_tau_must_be_a_positive_factor(scores_path, tmp_path, capsys):
    from robust_sft.cli import main

    out = tmp_path / "masked.parquet"
    assert main(["mask", scores_path, "--mask", "dpf", "--dpf_scores", scores_path, "--dpf_tau", "0",
                 "--out", str(out)]) == 1
    assert "dpf_tau must be a positive factor" in capsys.readouterr().err


@pytest.mark.parametrize("verb_args, message", [
    (["generate", "--model", "m", "--task", "organism/add", "--out", "x.parquet"], "must be a .jsonl file"),
    (["generate", "--model", "m", "--task", "organism/add", "--out", "x.jsonl", "--top_p", "0"], "top_p"),
    (["score", "--model", "m", "--data", "d.jsonl", "--out", "x.jsonl"], "a score file is written as .parquet"),
    (["score", "--model", "m", "--data", "d.jsonl", "--out", "x.parquet", "--shard_size", "0"], "shard_size"),
    (["evaluate", "--model", "m", "--tasks", "organism/add", "--out", "o", "--limit", "0"], "limit must be"),
])
def test_option_ranges_and_output_extensions_are_checked_first(capsys, verb_args, message):
    from robust_sft.cli import main

    assert main(verb_args) == 1  # "m" is no model: the options are refused before anything is loaded
    assert message in capsys.readouterr().err


# --------------------------------------------------------------------------------------------- task versions

TASK_SOURCE = '''
from robust_sft.tasks.base import Task


class Echo(Task):
    name = "tmp/echo"

    def load(self, split, *, limit=None, path=None):
        return [{"id": str(i), "text": "ab" * i} for i in range(4)][:limit]

    def prompt(self, example):
        return "Repeat: " + example["text"]

    def reference(self, example):
        return example["text"]

    def extract(self, completion):
        return completion.strip()

    def check(self, example, completion):
        return CHECK
'''


def _load_task_module(tmp_path, check: str):
    import importlib.util
    import sys

    path = tmp_path / "echo_task.py"
    path.write_text(TASK_SOURCE.replace("CHECK", check))
    spec = importlib.util.spec_from_file_location("echo_task", path)
    module = importlib.util.module_from_spec(spec)
    sys.modules["echo_task"] = module
    spec.loader.exec_module(module)
    return module


def test_a_fixed_checker_changes_the_evaluation_cache_keys(tmp_path, tiny_model_dir, monkeypatch):
    import tests.fake_tasks  # noqa: F401  (registers test/* tasks)
    from robust_sft.experiment import inputs
    from robust_sft.experiment.runner import Experiment, ExperimentConfig
    from robust_sft.tasks import base

    def keys_with(check: str) -> dict:
        module = _load_task_module(tmp_path, check)
        monkeypatch.setitem(base._REGISTRY, "tmp/echo", module.Echo)
        config = ExperimentConfig(model=tiny_model_dir, target="tmp/echo", others=["test/nonempty"], methods=["gt"])
        run = Experiment(config, tmp_path / "run", progress=False)
        run.base, run.base_key, run.tasks = tiny_model_dir, "base", ["tmp/echo", "test/nonempty"]
        keys = {}
        monkeypatch.setattr(inputs, "run_stage", lambda name, artifact, key, produce: keys.update({name: key}))
        monkeypatch.setattr(inputs, "write_jsonl", lambda *args: None)
        run.evaluate_base()
        run.prepare_data()
        return keys

    buggy = keys_with("example['text'] in completion")
    fixed = keys_with("self.extract(completion) == example['text']")
    assert buggy["evaluate base"] != fixed["evaluate base"]
    assert buggy["data gt"] != fixed["data gt"]  # the target's prompts/references come from the same code
    assert keys_with("self.extract(completion) == example['text']") == fixed  # and nothing else moves them


def test_task_version_covers_checker_modules_and_settings():
    from robust_sft.tasks import get_task
    from robust_sft.tasks.base import task_version

    assert task_version(get_task("organism/add", seed=0)) != task_version(get_task("organism/add", seed=1))
    assert task_version(get_task("organism/add", seed=0)) == task_version(get_task("organism/add", seed=0))
    assert task_version(get_task("organism/add", seed=0)) != task_version(get_task("organism/sort", seed=0))


KILLED_WHILE_SAVING = '''
import json, os, signal, sys
from transformers.trainer_callback import TrainerState
from robust_sft.training.trainer import TrainConfig, train

save = TrainerState.save_to_json


def save_then_die_at_step_6(self, json_path):
    if self.global_step == 6:  # the process dies while writing the checkpoint's last file
        with open(json_path, "w") as f:
            f.write(json.dumps({"global_step": 6, "log_history": self.log_history})[:80])
        os.kill(os.getpid(), signal.SIGKILL)
    save(self, json_path)


TrainerState.save_to_json = save_then_die_at_step_6
train(TrainConfig(**json.loads(sys.argv[1])))
'''


def test_a_process_killed_during_a_checkpoint_save_resumes(tiny_model_dir, scores_path, tmp_path):
    import signal
    import subprocess
    import sys
    from dataclasses import asdict

    from robust_sft.training.trainer import train

    config = _train_config(tiny_model_dir, scores_path, tmp_path / "run", num_train_epochs=2)
    script = tmp_path / "die.py"
    script.write_text(KILLED_WHILE_SAVING)
    killed = subprocess.run([sys.executable, str(script), json.dumps(asdict(config))], capture_output=True,
                            env={**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)})
    assert killed.returncode == -signal.SIGKILL
    assert (tmp_path / "run" / "checkpoint-6").is_dir() and not (tmp_path / "run" / "final").exists()
    config.resume_from_checkpoint = "latest"
    train(config)
    state = json.loads((tmp_path / "run" / "checkpoint-6" / "trainer_state.json").read_text())
    assert state["global_step"] == 6
    assert (tmp_path / "run" / "final" / "adapter_model.safetensors").exists()
