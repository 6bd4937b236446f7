"""`train_pool`: the data stages prepare a pool of training problems and each seed trains on its own draw of them."""

import json

import numpy as np
import pytest

import tests.fake_tasks  # noqa: F401  (registers the test tasks)
from robust_sft.experiment.inputs import draw_problems
from robust_sft.experiment.runner import Experiment
from robust_sft.scoring.files import Scores
from tests.test_experiment import mini_config


def test_draw_is_a_seeded_subset_in_pool_order():
    pool = [f"p{i}" for i in range(50)]
    draw = draw_problems(pool, 20, seed=0)
    assert len(draw) == 20 and set(draw) <= set(pool)
    assert draw == sorted(draw, key=pool.index)  # pool order
    assert draw_problems(pool, 20, seed=0) == draw  # deterministic
    assert draw_problems(pool, 20, seed=1) != draw  # another seed, other problems
    assert draw_problems(pool, 50, seed=3) == pool  # the whole pool is the pool


def test_select_keeps_file_order_and_refuses_an_empty_selection():
    scores = Scores(ids=["a", "b", "c"], input_ids=[np.arange(3)] * 3, answer_mask=[np.ones(3, bool)] * 3,
                    token_nll=[np.zeros(3, np.float32)] * 3, messages=[[]] * 3, metadata={"model": "m"})
    picked = scores.select(["c", "a", "zz"])
    assert picked.ids == ["a", "c"] and picked.metadata == {"model": "m"}
    with pytest.raises(ValueError, match="none of the 2 example ids"):
        scores.select(["x", "y"], where="train.parquet")


def test_a_pool_needs_a_smaller_train_limit(tiny_model_dir):
    with pytest.raises(ValueError, match="train_pool 8 needs a train_limit of at most that many"):
        mini_config(tiny_model_dir, train_pool=8, train_limit=16)
    with pytest.raises(ValueError, match="train_pool 8 needs a train_limit"):
        mini_config(tiny_model_dir, train_pool=8, train_limit=None)


def test_each_seed_trains_on_its_own_draw_of_the_pool(tmp_path, tiny_model_dir):
    config = mini_config(tiny_model_dir, methods=["gt", "stm", "self_output"], taus=[500], lr_sweep={},
                         seeds=[0, 1], train_pool=16, train_limit=8)
    Experiment(config, tmp_path, progress=False).run()
    pool = [json.loads(line)["id"] for line in (tmp_path / "data" / "gt.jsonl").read_text().splitlines()]
    assert len(pool) == 16  # the data stages prepared the whole pool
    draws = {seed: json.loads((tmp_path / "data" / f"problems_seed{seed}.json").read_text()) for seed in (0, 1)}
    assert draws[0] == draw_problems(pool, 8, 0) and draws[1] == draw_problems(pool, 8, 1) and draws[0] != draws[1]
    generated = [json.loads(line)["id"] for line in (tmp_path / "data" / "self_output.jsonl").read_text().splitlines()]
    for seed, draw in draws.items():
        gt = json.loads((tmp_path / "models" / "gt" / f"seed{seed}" / "train_summary.json").read_text())
        assert gt["n_train_examples"] == 8 and gt["config"]["example_ids"].endswith(f"problems_seed{seed}.json")
        # Self-Output trains on the generated answers of this seed's problems only
        so = json.loads((tmp_path / "models" / "self_output" / f"seed{seed}" / "train_summary.json").read_text())
        assert so["n_train_examples"] == sum(problem in draw for problem in generated)
    # without a pool, every seed trains on the same first train_limit problems, as before
    same = mini_config(tiny_model_dir, methods=["gt"], lr_sweep={}, seeds=[0], train_limit=8)
    Experiment(same, tmp_path / "no-pool", progress=False).run()
    assert not (tmp_path / "no-pool" / "data" / "problems_seed0.json").exists()
    summary = json.loads((tmp_path / "no-pool" / "models" / "gt" / "seed0" / "train_summary.json").read_text())
    assert summary["n_train_examples"] == 8 and summary["config"]["example_ids"] is None
