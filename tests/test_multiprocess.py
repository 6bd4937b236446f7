"""`score` and `train` under `accelerate launch` with two real processes on this CPU (gloo).

`accelerate launch --cpu` starts one process; `--multi_gpu --num_processes 2` starts two through torchrun,
and with no GPU they form a gloo group on the CPU (the README's launch command).
"""

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from tests.conftest import make_rows

pytestmark = pytest.mark.slow
SRC = Path(__file__).resolve().parents[1] / "src"


def launch_two_processes(verb_args: list[str], tmp_path) -> str:
    command = [sys.executable, "-m", "accelerate.commands.launch", "--multi_gpu", "--num_processes", "2",
               "--num_machines", "1", "--mixed_precision", "no", "--dynamo_backend", "no",
               "--main_process_port", str(29500 + os.getpid() % 1000), "-m", "robust_sft.cli", *verb_args]
    env = dict(os.environ, PYTHONPATH=f"{SRC}{os.pathsep}{os.environ.get('PYTHONPATH', '')}", OMP_NUM_THREADS="1",
               CUDA_VISIBLE_DEVICES="", HF_HUB_OFFLINE="1", HF_DATASETS_OFFLINE="1")
    done = subprocess.run(command, env=env, cwd=tmp_path, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-4000:]
    return done.stderr


def test_two_process_score_file_equals_one_process(tmp_path, tiny_model_dir):
    from robust_sft.scoring.files import load_scores
    from robust_sft.scoring.token_nll import ScoreConfig, score

    data = tmp_path / "sft.jsonl"
    data.write_text("".join(json.dumps(r) + "\n" for r in make_rows(7)))
    single = score(ScoreConfig(model=tiny_model_dir, data=str(data), out=str(tmp_path / "one.parquet"),
                               shard_size=2, progress=False))
    two = tmp_path / "two.parquet"
    log = launch_two_processes(["score", "--model", tiny_model_dir, "--data", str(data), "--out", str(two),
                          "--shard_size", "2", "--progress", "false"], tmp_path)
    assert not (tmp_path / "two.parquet.parts").exists()
    # The shards were shared out, not scored twice by two processes that each believed they were alone.
    assert "process 0 of 2: shards [0, 2] of 4" in log and "process 1 of 2: shards [1, 3] of 4" in log
    a, b = load_scores(single), load_scores(two)
    assert a.ids == b.ids == [f"ex{i}" for i in range(7)]
    for i in range(len(a)):
        assert np.array_equal(a.input_ids[i], b.input_ids[i]) and np.array_equal(a.answer_mask[i], b.answer_mask[i])
        np.testing.assert_allclose(a.token_nll[i], b.token_nll[i], atol=1e-5, rtol=0, equal_nan=True)


def test_two_process_training_equals_one_process_with_doubled_accumulation(tmp_path, tiny_model_dir, scores_path):
    from safetensors.torch import load_file

    from robust_sft.training.config import TrainConfig
    from robust_sft.training.trainer import train

    common = dict(model=tiny_model_dir, data=scores_path, mask="none", finetuning="lora",
                  lora_dropout=0.0, learning_rate=1e-3, max_steps=3, per_device_train_batch_size=2, seed=0)
    single = train(TrainConfig(output_dir=str(tmp_path / "one"), gradient_accumulation_steps=2,
                               progress=False, **common))
    flags = [f"--{k}={v}" for k, v in common.items()]
    launch_two_processes(["train", *flags, f"--output_dir={tmp_path / 'two'}", "--gradient_accumulation_steps=1",
                          "--progress=false"], tmp_path)
    a = load_file(single / "adapter_model.safetensors")
    b = load_file(tmp_path / "two" / "final" / "adapter_model.safetensors")
    assert a.keys() == b.keys() and a
    for name in a:
        np.testing.assert_allclose(a[name].numpy(), b[name].numpy(), atol=1e-6, rtol=0, err_msg=name)
    assert any(not np.allclose(a[n].numpy(), 0) for n in a if "lora_B" in n)  # the adapters did train
