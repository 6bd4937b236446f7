import json
import math

import numpy as np
import pytest
import torch

from robust_sft.masking.policies import IGNORE_INDEX, MaskPolicy
from robust_sft.training.config import TrainConfig
from robust_sft.training.data import collate, load_training_data
from robust_sft.training.losses import token_loss
from robust_sft.training.trainer import train


def test_nll_loss_equals_cross_entropy_over_kept_tokens():
    torch.manual_seed(0)
    logits = torch.randn(2, 5, 11)
    labels = torch.tensor([[IGNORE_INDEX, 3, IGNORE_INDEX, 4, 1], [IGNORE_INDEX, IGNORE_INDEX, 2, 7, IGNORE_INDEX]])
    reference = torch.nn.functional.cross_entropy(logits[:, :-1].reshape(-1, 11), labels[:, 1:].reshape(-1))
    assert torch.allclose(token_loss(logits, labels, "nll"), reference)
    # With the Trainer's token count over accumulated batches, the loss is a sum over that count.
    assert torch.allclose(token_loss(logits, labels, "nll", num_items_in_batch=10), reference * 5 / 10)


def test_masked_tokens_get_no_gradient():
    logits = torch.randn(1, 4, 6, requires_grad=True)
    labels = torch.tensor([[IGNORE_INDEX, 2, IGNORE_INDEX, 5]])
    token_loss(logits, labels).backward()
    # position t predicts label t+1: positions 0 and 2 are trained, 1 (predicting a masked label) and 3 are not
    assert logits.grad[0, 1].abs().sum() == 0 and logits.grad[0, 3].abs().sum() == 0
    assert logits.grad[0, 0].abs().sum() > 0 and logits.grad[0, 2].abs().sum() > 0


def test_dft_loss_weights_each_token_by_its_detached_probability():
    logits = torch.log(torch.tensor([[[0.5, 0.25, 0.25], [0.1, 0.8, 0.1], [1 / 3, 1 / 3, 1 / 3]]]))
    labels = torch.tensor([[IGNORE_INDEX, 0, 1]])
    expected = (-0.5 * math.log(0.5) - 0.8 * math.log(0.8)) / 2
    assert torch.allclose(token_loss(logits, labels, "dft"), torch.tensor(expected), atol=1e-6)
    logits.requires_grad_(True)
    loss = token_loss(logits, labels, "dft")
    loss.backward()
    # the weight is detached: the gradient is p * d(-log p), not d(-p log p)
    p = 0.5
    assert torch.allclose(logits.grad[0, 0, 0], torch.tensor(-p * (1 - p) / 2), atol=1e-6)


def test_eaft_loss_weights_each_token_by_its_normalised_top_k_entropy():
    from robust_sft.training.losses import normalized_top_k_entropy

    # vocabulary of 3 (< k = 20): the entropy is over all three, divided by log 3
    probs = torch.tensor([[[0.5, 0.25, 0.25], [0.1, 0.8, 0.1], [1 / 3, 1 / 3, 1 / 3]]])
    logits = torch.log(probs)
    labels = torch.tensor([[IGNORE_INDEX, 0, 1]])

    def entropy(p):
        return -sum(x * math.log(x) for x in p) / math.log(3)

    # position 0 predicts label 0 from [0.5, 0.25, 0.25]; position 1 predicts label 1 from [0.1, 0.8, 0.1]
    expected = (-math.log(0.5) * entropy([0.5, 0.25, 0.25]) - math.log(0.8) * entropy([0.1, 0.8, 0.1])) / 2
    assert torch.allclose(token_loss(logits, labels, "eaft"), torch.tensor(expected), atol=1e-6)
    # uniform prediction -> weight 1 (plain NLL); a one-hot-like prediction -> weight near 0
    assert torch.allclose(normalized_top_k_entropy(logits[0, 2:], 20), torch.tensor([1.0]), atol=1e-6)
    assert normalized_top_k_entropy(torch.tensor([[30.0, 0.0, 0.0]]), 20).item() < 1e-9
    # only the top k logits count: adding many tiny logits does not change the weight
    wide = torch.cat([torch.tensor([[2.0, 1.0, 0.0]]), torch.full((1, 50), -1e4)], dim=-1)
    assert torch.allclose(normalized_top_k_entropy(wide, 3), normalized_top_k_entropy(wide[:, :3], 3), atol=1e-6)
    # the weight is detached: the gradient is H * d(-log p)
    logits.requires_grad_(True)
    token_loss(logits, labels, "eaft").backward()
    p = 0.5
    assert torch.allclose(logits.grad[0, 0, 0], torch.tensor(-(1 - p) * entropy([0.5, 0.25, 0.25]) / 2), atol=1e-6)


def test_collate_pads_right_and_preserves_labels():
    batch = collate([{"input_ids": np.array([5, 6, 7]), "labels": np.array([-100, 6, -100])},
                     {"input_ids": np.array([8]), "labels": np.array([8])}], pad_id=0)
    assert batch["input_ids"].tolist() == [[5, 6, 7], [8, 0, 0]]
    assert batch["labels"].tolist() == [[-100, 6, -100], [8, -100, -100]]
    assert batch["attention_mask"].tolist() == [[1, 1, 1], [1, 0, 0]]


def test_training_data_from_score_file_and_from_masked_file(scores_path, tmp_path, tiny_model_dir):
    from robust_sft.masking.export import write_masked
    from robust_sft.models.loading import load_tokenizer

    tokenizer = load_tokenizer(tiny_model_dir)
    policy = MaskPolicy(kind="ratio", ratio=0.2)
    direct = load_training_data(scores_path, policy, tokenizer)
    assert 0.19 < direct.report["masked_fraction"] < 0.21
    report = write_masked(scores_path, str(tmp_path / "m.parquet"), policy, keep_id=True)
    masked = load_training_data(str(tmp_path / "m.parquet"), MaskPolicy(kind="none"), tokenizer)
    assert masked.ids == direct.ids and report == direct.report
    for a, b in zip(masked.labels, direct.labels):
        assert (a == b).all()
    write_masked(scores_path, str(tmp_path / "masked_dir"), policy)  # the save_to_disk form
    from_dir = load_training_data(str(tmp_path / "masked_dir"), MaskPolicy(kind="none"), tokenizer)
    assert from_dir.report == direct.report
    assert all((a == b).all() for a, b in zip(from_dir.labels, direct.labels))


def small_config(tiny_model_dir, scores_path, out, **overrides) -> TrainConfig:
    defaults = dict(model=tiny_model_dir, data=scores_path, output_dir=str(out), num_train_epochs=2,
                    learning_rate=1e-3, per_device_train_batch_size=8, logging_steps=1, progress=False,
                    mask="none")
    return TrainConfig(**{**defaults, **overrides})


@pytest.mark.parametrize("finetuning", ["lora", "dora", "full"])
def test_train_saves_epochs_summary_and_a_loadable_model(tiny_model_dir, scores_path, tmp_path, finetuning):
    from robust_sft.models.loading import load_model

    final = train(small_config(tiny_model_dir, scores_path, tmp_path, finetuning=finetuning, mask="ratio",
                               ratio=0.25, validation=scores_path))
    summary = json.loads((tmp_path / "train_summary.json").read_text())
    assert [e["epoch"] for e in summary["epochs"]] == [1, 2]
    assert summary["epochs"][1]["eval_loss"] < summary["epochs"][0]["eval_loss"]  # it learns
    assert summary["best_checkpoint"].endswith("checkpoint-6")  # 24 examples / 8 = 3 steps per epoch
    assert 0.24 < summary["mask_report"]["masked_fraction"] < 0.26
    assert sorted(p.name for p in tmp_path.glob("checkpoint-*")) == ["checkpoint-3", "checkpoint-6"]
    assert (tmp_path / "loss_log.jsonl").read_text().count("\n") >= 6
    if finetuning == "full":
        model = load_model(str(final))
    else:
        assert (final / "adapter_config.json").exists()
        assert json.loads((final / "adapter_config.json").read_text())["use_dora"] == (finetuning == "dora")
        model = load_model(tiny_model_dir, adapter=str(final))
    base = load_model(tiny_model_dir)
    ids = torch.tensor([[1, 5, 9, 14]])
    with torch.no_grad():
        assert not torch.allclose(model(input_ids=ids).logits, base(input_ids=ids).logits)


def test_gt_and_stm_differ_only_in_labels(tiny_model_dir, scores_path, tmp_path):
    gt = load_training_data(scores_path, MaskPolicy(kind="threshold", tau=math.inf))
    stm = load_training_data(scores_path, MaskPolicy(kind="ratio", ratio=0.3))
    assert gt.report["masked_tokens"] == 0 and stm.report["masked_tokens"] > 0
    assert all((a == b).all() for a, b in zip(gt.input_ids, stm.input_ids))


def test_resume_from_latest_checkpoint_continues_training(tiny_model_dir, scores_path, tmp_path):
    train(small_config(tiny_model_dir, scores_path, tmp_path, num_train_epochs=1))
    train(small_config(tiny_model_dir, scores_path, tmp_path, num_train_epochs=2, resume_from_checkpoint="latest"))
    log = [json.loads(line) for line in (tmp_path / "loss_log.jsonl").read_text().splitlines()]
    steps = [entry["step"] for entry in log if "loss" in entry]
    assert min(steps) >= 1 and max(steps) == 6
    assert sorted(p.name for p in tmp_path.glob("checkpoint-*")) == ["checkpoint-3", "checkpoint-6"]


def test_same_seed_same_model(tiny_model_dir, scores_path, tmp_path):
    from safetensors.torch import load_file

    weights = []
    for run in ("a", "b"):
        final = train(small_config(tiny_model_dir, scores_path, tmp_path / run, num_train_epochs=1, seed=7))
        weights.append(load_file(str(final / "adapter_model.safetensors")))
    assert all(torch.equal(weights[0][k], weights[1][k]) for k in weights[0])


def test_eval_fn_selects_the_best_epoch(tiny_model_dir, scores_path, tmp_path):
    scores = iter([0.9, 0.4])  # epoch 1 is better on the task metric although the loss improves later
    final = train(small_config(tiny_model_dir, scores_path, tmp_path),
                  eval_fn=lambda model: {"accuracy": next(scores)}, best_metric="accuracy", greater_is_better=True)
    summary = json.loads((tmp_path / "train_summary.json").read_text())
    assert [e["eval_accuracy"] for e in summary["epochs"]] == [0.9, 0.4]
    assert summary["best_checkpoint"].endswith("checkpoint-3")
    from safetensors.torch import load_file

    best = load_file(str(tmp_path / "checkpoint-3" / "adapter_model.safetensors"))
    saved = load_file(str(final / "adapter_model.safetensors"))
    assert all(torch.equal(best[k], saved[k]) for k in best)


def test_bad_options_are_rejected(tiny_model_dir, scores_path, tmp_path):
    with pytest.raises(ValueError, match="finetuning"):
        small_config(tiny_model_dir, scores_path, tmp_path, finetuning="qlora")
    with pytest.raises(ValueError, match="no example has a trainable token"):
        train(small_config(tiny_model_dir, scores_path, tmp_path, mask="threshold", tau=1.0000001))
