"""The soft STM's token weights, the InfoSFT loss and on-policy self-distillation (SDFT): the maths on hand-made
arrays, the weights' path through collate into the loss, and tiny-model training runs."""

import json
import math

import numpy as np
import pytest
import torch

from robust_sft.masking.policies import IGNORE_INDEX, MaskPolicy
from robust_sft.masking.weights import soft_weights
from robust_sft.training.config import TrainConfig
from robust_sft.training.data import TokenDataset, collate, load_training_data
from robust_sft.training.losses import infosft_weight, token_loss


def sigmoid(x: float) -> float:
    return 1 / (1 + math.exp(-x))


# --------------------------------------------------------------------------------------------- the weights


def test_soft_weights_are_a_sigmoid_around_tau_on_the_kept_tokens():
    nll = np.array([np.nan, 0.1, math.log(2.5), 2.0, 30.0], np.float32)
    keep = np.array([False, True, True, True, True])
    w = soft_weights(nll, keep, tau=2.5, temperature=0.5)
    assert w.dtype == np.float32 and w[0] == 0  # the prompt weighs nothing
    assert w[1] == pytest.approx(sigmoid((math.log(2.5) - 0.1) / 0.5), rel=1e-6)
    assert w[2] == pytest.approx(0.5, rel=1e-6)  # at tau, one half
    assert w[3] == pytest.approx(sigmoid((math.log(2.5) - 2.0) / 0.5), rel=1e-6)
    assert w[4] < 1e-20
    # a kept token with no score weighs 1, as STM keeps it; T -> 0 is STM's 0/1 mask
    assert soft_weights(np.array([np.nan], np.float32), np.array([True]), 2.5, 0.5)[0] == 1
    hard = soft_weights(nll, keep, tau=2.5 * 1.01, temperature=1e-6)
    assert hard.tolist() == [0.0, 1.0, 1.0, 0.0, 0.0]
    with pytest.raises(ValueError, match="temperature must be a positive number"):
        soft_weights(nll, keep, 2.5, 0.0)
    with pytest.raises(ValueError, match="finite tau > 1"):
        soft_weights(nll, keep, math.inf, 1.0)


def test_weighted_loss_equals_the_hand_computation():
    probs = torch.tensor([[[0.5, 0.25, 0.25], [0.1, 0.8, 0.1], [0.2, 0.2, 0.6], [1 / 3, 1 / 3, 1 / 3]]])
    logits = torch.log(probs)
    labels = torch.tensor([[IGNORE_INDEX, 0, 1, 2]])
    weights = torch.tensor([[0.0, 0.25, 1.0, 0.5]])  # aligned with labels: weight t scales the loss of label t
    nll = [-math.log(0.5), -math.log(0.8), -math.log(0.6)]
    expected = (0.25 * nll[0] + 1.0 * nll[1] + 0.5 * nll[2]) / (0.25 + 1.0 + 0.5)
    assert token_loss(logits, labels, "nll", weights=weights).item() == pytest.approx(expected, rel=1e-6)
    # with the Trainer's normaliser (the weights' sum over every accumulated batch) it is a sum over that
    assert token_loss(logits, labels, "nll", num_items_in_batch=torch.tensor(3.5), weights=weights).item() == \
        pytest.approx(expected * 1.75 / 3.5, rel=1e-6)
    # weights scale the reweighted losses too: dft's p x NLL, times w
    dft = (0.25 * 0.5 * nll[0] + 0.8 * nll[1] + 0.5 * 0.6 * nll[2]) / 1.75
    assert token_loss(logits, labels, "dft", weights=weights).item() == pytest.approx(dft, rel=1e-6)
    # a batch whose weights are all 0 trains nothing (no division by zero)
    zero = token_loss(logits, labels, "nll", weights=torch.zeros_like(weights))
    assert zero.item() == 0 and torch.isfinite(zero)


def test_weighted_loss_is_exact_under_gradient_accumulation():
    """Two accumulated half batches, each normalised by the weights' sum over both, give the whole batch's loss
    and gradient."""
    torch.manual_seed(0)
    logits = torch.randn(4, 6, 9, requires_grad=True)
    labels = torch.randint(0, 9, (4, 6))
    labels[:, 0] = IGNORE_INDEX
    labels[1, 3:] = IGNORE_INDEX
    weights = torch.rand(4, 6) * (labels != IGNORE_INDEX)
    whole = token_loss(logits, labels, weights=weights)
    (grad_whole,) = torch.autograd.grad(whole, logits)
    total = weights[:, 1:].sum()
    halves = sum(token_loss(logits[i:i + 2], labels[i:i + 2], num_items_in_batch=total, weights=weights[i:i + 2])
                 for i in (0, 2))
    (grad_halves,) = torch.autograd.grad(halves, logits)
    assert torch.allclose(whole, halves, atol=1e-6) and torch.allclose(grad_whole, grad_halves, atol=1e-7)


def test_the_trainer_normalises_by_the_weights_sum_of_the_accumulated_batches(tiny_model_dir, scores_path, tmp_path):
    from robust_sft.models.loading import load_tokenizer
    from robust_sft.training.trainer import token_trainer

    config = TrainConfig(model=tiny_model_dir, data=scores_path, output_dir=str(tmp_path), mask="none", tau=20.0,
                         soft_temperature=1.0, progress=False)
    tokenizer = load_tokenizer(tiny_model_dir)
    trainer, data = token_trainer(config, tokenizer, None, None, False)
    dataset = TokenDataset(data)
    batches = [collate([dataset[i] for i in range(k, k + 4)], tokenizer.pad_token_id) for k in (0, 4)]
    expected = sum(float(w[1:].sum()) for w in data.weights[:8])
    assert float(trainer._get_num_items_in_batch(batches, torch.device("cpu"))) == pytest.approx(expected, rel=1e-6)
    # without weights it is the Trainer's own token count
    for batch in batches:
        batch.pop("weights")
    assert int(trainer._get_num_items_in_batch(batches, torch.device("cpu"))) == \
        sum(int((lab[1:] != IGNORE_INDEX).sum()) for lab in data.labels[:8])


def test_weights_line_up_with_their_tokens_after_collate_and_padding(scores_path):
    from robust_sft.scoring.files import load_scores

    scores = load_scores(scores_path)
    data = load_training_data(scores_path, MaskPolicy(kind="none", tau=20.0), soft_temperature=1.0)
    dataset = TokenDataset(data)
    rows = [2, 0, 5]  # of different lengths: the shorter ones are padded
    batch = collate([dataset[i] for i in rows], pad_id=0)
    assert batch["weights"].shape == batch["labels"].shape and batch["weights"].dtype == torch.float32
    for row, i in enumerate(rows):
        source = scores.ids.index(data.ids[i])
        n = len(scores.input_ids[source])
        expected = soft_weights(scores.token_nll[source], scores.answer_mask[source], 20.0, 1.0)
        assert batch["input_ids"][row, :n].tolist() == scores.input_ids[source].tolist()
        assert np.array_equal(batch["weights"][row, :n].numpy(), expected)  # weight t belongs to token t
        assert batch["weights"][row, n:].abs().sum() == 0  # padding weighs nothing
        assert ((batch["labels"][row] != IGNORE_INDEX) == (batch["weights"][row] > 0)).all()
    assert 0 < data.report["mean_weight"] < 1 and data.report["soft_temperature"] == 1.0
    # "masked": the tokens weighted under 1/2, those above tau, which STM at this tau masks, whatever T
    stm = load_training_data(scores_path, MaskPolicy(kind="threshold", tau=20.0))
    assert data.report["masked_tokens"] == stm.report["masked_tokens"]
    assert data.report["masked_fraction"] == stm.report["masked_fraction"]


def tau_between_scores(scores) -> float:
    """A tau halfway (in log space) between two neighbouring answer-token scores near the median: no token sits at
    tau, where the cold soft weight is 1/2 and STM's mask 1."""
    values = np.unique(np.concatenate([scores.answer_nll(i) for i in range(len(scores))]).astype(np.float64))
    k = len(values) // 2
    return float(np.exp((values[k] + values[k + 1]) / 2))


def test_a_cold_soft_stm_gives_hard_stm_batches_and_loss_exactly(scores_path):
    """As T -> 0 the weights are STM's 0/1 mask: the same examples, labels and loss, to the last bit."""
    from robust_sft.scoring.files import load_scores

    scores = load_scores(scores_path)
    tau = tau_between_scores(scores)
    hard = load_training_data(scores_path, MaskPolicy(kind="threshold", tau=tau))
    soft = load_training_data(scores_path, MaskPolicy(kind="none", tau=tau), soft_temperature=1e-9)
    assert all(set(np.unique(w)) <= {0.0, 1.0} for w in soft.weights)
    assert soft.ids == hard.ids and all((a == b).all() for a, b in zip(soft.labels, hard.labels))
    assert soft.report["masked_tokens"] == hard.report["masked_tokens"] > 0
    assert soft.report["masked_fraction"] == hard.report["masked_fraction"]
    torch.manual_seed(0)
    for start in (0, 8):
        hard_batch = collate([TokenDataset(hard)[i] for i in range(start, start + 8)], pad_id=0)
        soft_batch = collate([TokenDataset(soft)[i] for i in range(start, start + 8)], pad_id=0)
        logits = torch.randn(*hard_batch["input_ids"].shape, 600)
        assert torch.equal(token_loss(logits, hard_batch["labels"]),
                           token_loss(logits, soft_batch["labels"], weights=soft_batch["weights"]))


def test_soft_weights_cannot_be_exported_nor_read_from_a_masked_dataset(scores_path, tmp_path, capsys):
    from robust_sft.cli import main
    from robust_sft.masking.export import write_masked

    assert main(["mask", scores_path, "--soft_temperature", "0.5", "--out", str(tmp_path / "m.parquet")]) == 1
    err = capsys.readouterr().err
    assert "soft weights cannot travel" in err and "TRL's SFTTrainer and axolotl read 0/1 labels only" in err
    assert not (tmp_path / "m.parquet").exists()
    write_masked(scores_path, str(tmp_path / "hard.parquet"), MaskPolicy(kind="ratio", ratio=0.2))
    with pytest.raises(ValueError, match="a masked dataset has no token scores"):
        load_training_data(str(tmp_path / "hard.parquet"), MaskPolicy(kind="none"), soft_temperature=0.5)


def small(tiny_model_dir, scores_path, out, **overrides) -> TrainConfig:
    defaults = dict(model=tiny_model_dir, data=scores_path, output_dir=str(out), num_train_epochs=1,
                    learning_rate=1e-3, per_device_train_batch_size=8, logging_steps=1, progress=False, mask="none")
    return TrainConfig(**{**defaults, **overrides})


def test_training_a_cold_soft_stm_equals_training_hard_stm(tiny_model_dir, scores_path, tmp_path):
    from safetensors.torch import load_file

    from robust_sft.scoring.files import load_scores
    from robust_sft.training.trainer import train

    scores = load_scores(scores_path)
    tau = tau_between_scores(scores)
    hard = train(small(tiny_model_dir, scores_path, tmp_path / "hard", mask="threshold", tau=tau,
                       gradient_accumulation_steps=2, per_device_train_batch_size=4))
    soft = train(small(tiny_model_dir, scores_path, tmp_path / "soft", tau=tau, soft_temperature=1e-9,
                       gradient_accumulation_steps=2, per_device_train_batch_size=4))
    summaries = [json.loads((tmp_path / run / "train_summary.json").read_text()) for run in ("hard", "soft")]
    assert summaries[0]["train_loss"] == summaries[1]["train_loss"]
    assert summaries[0]["trained_tokens"] == summaries[1]["trained_tokens"]
    a, b = load_file(str(hard / "adapter_model.safetensors")), load_file(str(soft / "adapter_model.safetensors"))
    assert all(torch.equal(a[k], b[k]) for k in a)
    # a warm soft STM trains something else, and says what it weighed
    warm = train(small(tiny_model_dir, scores_path, tmp_path / "warm", tau=tau, soft_temperature=1.0))
    report = json.loads((tmp_path / "warm" / "train_summary.json").read_text())["mask_report"]
    assert 0 < report["mean_weight"] < 1 and report["soft_temperature"] == 1.0
    c = load_file(str(warm / "adapter_model.safetensors"))
    assert not all(torch.equal(a[k], c[k]) for k in a)


# --------------------------------------------------------------------------------------------- InfoSFT


def test_infosft_weight_is_the_authors_formula():
    p_max = 0.93
    big_c = math.log(p_max / (1 - p_max))
    q = torch.tensor([0.01, 0.1, 0.5, 0.9, 0.93, 0.99, 1.0], dtype=torch.float64)
    w = infosft_weight(torch.log(q), p_max)
    expected = [x * max(0.0, 1 - math.log(x / (1 - x)) / big_c) if x < 1 else 0.0 for x in q.tolist()]
    assert torch.allclose(w, torch.tensor(expected, dtype=torch.float64), atol=1e-12)
    assert w[2] == pytest.approx(0.5)  # logit 0: w = q
    assert w[4] == pytest.approx(0.0, abs=1e-12) and w[5] == 0 and w[6] == 0  # q >= P: no weight
    # the gradient on the token's logit, w (1 - q), peaks at a medium q
    grid = torch.linspace(0.001, 0.999, 999, dtype=torch.float64)
    peak = grid[torch.argmax(infosft_weight(torch.log(grid), p_max) * (1 - grid))].item()
    assert 0.2 < peak < 0.8
    with pytest.raises(ValueError, match="InfoSFT's P"):
        infosft_weight(torch.log(q), 0.4)


def test_infosft_loss_weights_each_token_and_detaches_the_weight():
    probs = torch.tensor([[[0.5, 0.25, 0.25], [0.1, 0.8, 0.1], [1 / 3, 1 / 3, 1 / 3]]])
    logits = torch.log(probs).requires_grad_(True)
    labels = torch.tensor([[IGNORE_INDEX, 0, 1]])
    big_c = math.log(0.93 / 0.07)

    def w(q):
        return q * max(0.0, 1 - math.log(q / (1 - q)) / big_c)

    expected = (w(0.5) * -math.log(0.5) + w(0.8) * -math.log(0.8)) / 2
    loss = token_loss(logits, labels, "infosft")
    assert loss.item() == pytest.approx(expected, rel=1e-5)
    loss.backward()
    # detached: the gradient on the label's logit is w(q) (q - 1) / 2, not that of -w(q) log q as a whole
    assert logits.grad[0, 0, 0].item() == pytest.approx(w(0.5) * (0.5 - 1) / 2, rel=1e-5)
    assert token_loss(logits, labels, "infosft", infosft_p=0.75).item() == pytest.approx(
        0.5 * (1 - 0 / math.log(3)) * -math.log(0.5) / 2, rel=1e-5)  # q = 0.8 >= P = 0.75: only q = 0.5 trains


def test_infosft_trains_from_the_command_line_and_python_alike(tiny_model_dir, scores_path, tmp_path):
    from robust_sft.cli import main
    from robust_sft.training.trainer import train

    argv = ["train", "--model", tiny_model_dir, "--data", scores_path, "--output_dir", str(tmp_path / "cli"),
            "--mask", "none", "--loss", "infosft", "--infosft_p", "0.9", "--num_train_epochs", "1",
            "--learning_rate", "1e-3", "--per_device_train_batch_size", "8", "--progress", "false"]
    assert main(argv) == 0
    train(small(tiny_model_dir, scores_path, tmp_path / "py", loss="infosft", infosft_p=0.9))
    cli, py = (json.loads((tmp_path / run / "train_summary.json").read_text()) for run in ("cli", "py"))
    assert cli["config"]["loss"] == "infosft" and cli["train_loss"] == py["train_loss"]
    nll = train(small(tiny_model_dir, scores_path, tmp_path / "nll"))
    assert json.loads((nll.parent / "train_summary.json").read_text())["train_loss"] != py["train_loss"]
    with pytest.raises(ValueError, match="infosft_p must be in"):
        small(tiny_model_dir, scores_path, tmp_path, loss="infosft", infosft_p=1.0)


# --------------------------------------------------------------------------------------------- SDFT


def test_sdft_rows_give_the_student_the_prompt_and_the_teacher_the_reference(scores_path, tmp_path):
    from robust_sft.scoring.files import load_scores
    from robust_sft.training.sdft import read_teacher_prompts, sdft_rows

    scores = load_scores(scores_path)
    rows = sdft_rows(scores, "Q: {prompt}\nA: {reference}\nYours:")
    first = scores.messages[0]
    assert rows[0]["prompt"] == first[:-1] and rows[0]["prompt"][-1]["role"] == "user"
    assert rows[0]["privileged_context"] == f"Q: {first[0]['content']}\nA: {first[-1]['content']}\nYours:"
    given = tmp_path / "teacher.jsonl"
    given.write_text("".join(json.dumps({"id": i, "teacher_prompt": f"see {i}"}) + "\n" for i in scores.ids))
    assert [r["privileged_context"] for r in sdft_rows(scores, teacher_prompts=read_teacher_prompts(str(given)))] \
        == [f"see {i}" for i in scores.ids]
    with pytest.raises(ValueError, match="example ex0 has no teacher prompt"):
        sdft_rows(scores, teacher_prompts={})
    given.write_text('{"id": "ex0", "teacher_prompt": "x"}\nnot json\n')
    with pytest.raises(ValueError, match=r"teacher.jsonl:2: malformed JSON"):
        read_teacher_prompts(str(given))
    scores.messages[3] = scores.messages[3][:-1]
    with pytest.raises(ValueError, match="example ex3: sdft needs a conversation"):
        sdft_rows(scores)
    with pytest.raises(ValueError, match="sdft_template may hold only the fields"):
        TrainConfig(model="m", data="d", output_dir="o", sdft_template="{question} {reference}")
    with pytest.raises(ValueError, match="sdft has no validation loss"):
        TrainConfig(model="m", data="d", output_dir="o", loss="sdft", validation="v.parquet")


def test_sdft_divergence_is_the_reverse_kl_of_student_from_teacher(tiny_model_dir, scores_path, tmp_path):
    """Our SDFT configuration makes TRL's divergence KL(student || teacher) over the whole vocabulary."""
    from trl.experimental.sdft.loss_utils import compute_full_logit_self_distillation_loss

    from robust_sft.models.loading import load_tokenizer
    from robust_sft.training.sdft import sdft_trainer
    from robust_sft.training.trainer import peft_config_of, training_argument_values

    config = small(tiny_model_dir, scores_path, tmp_path, loss="sdft")
    trainer, report = sdft_trainer(config, load_tokenizer(tiny_model_dir),
                                   training_argument_values(config, False, None, False), peft_config_of(config))
    args = trainer.args
    assert (args.distillation_mode, args.num_generations, args.temperature, args.teacher_model_kind) == \
        ("full_logits", 1, 1.0, "base")
    assert report["n_examples"] == 24 and not args.gradient_checkpointing and not args.bf16
    torch.manual_seed(0)
    student, teacher = torch.randn(2, 3, 7), torch.randn(2, 3, 7)
    p_s, log_s, log_t = student.softmax(-1), student.log_softmax(-1), teacher.log_softmax(-1)
    reverse_kl = (p_s * (log_s - log_t)).sum(-1)
    assert torch.allclose(compute_full_logit_self_distillation_loss(student, teacher,
                                                                    distillation_alpha=args.distillation_alpha),
                          reverse_kl, atol=1e-6)


def test_sdft_trains_on_its_own_samples_with_the_reference_shown_to_the_teacher_only(tiny_model_dir, scores_path,
                                                                                     tmp_path, monkeypatch):
    from safetensors.torch import load_file
    from transformers import TrainerCallback

    from robust_sft.models.loading import load_model, load_tokenizer
    from robust_sft.scoring.files import load_scores
    from robust_sft.training import trainer as trainer_module
    from robust_sft.training.trainer import train

    tokenizer = load_tokenizer(tiny_model_dir)
    scores = load_scores(scores_path)
    seen = []

    class Watch(TrainerCallback):
        def on_self_distillation_batch_prepared(self, args, state, control, prompt_ids, teacher_input_ids, **kwargs):
            seen.append((tokenizer.batch_decode(prompt_ids), tokenizer.batch_decode(teacher_input_ids)))

    made = trainer_module.sdft_trainer

    def watched(*args, **kwargs):
        trainer, report = made(*args, **kwargs)
        trainer.add_callback(Watch())
        return trainer, report

    monkeypatch.setattr(trainer_module, "sdft_trainer", watched)
    final = train(small(tiny_model_dir, scores_path, tmp_path, loss="sdft", sdft_max_new_tokens=6,
                        sdft_template="REFERENCE {reference} FOR {prompt}", num_train_epochs=2))
    summary = json.loads((tmp_path / "train_summary.json").read_text())
    assert summary["mask_report"]["policy"] == "sdft" and summary["n_train_examples"] == 24
    assert 0 < summary["trained_tokens"] <= 2 * 24 * 6  # sampled tokens, at most 6 per prompt per epoch
    assert summary["train_loss"] is not None and len(seen) == 6  # 24 prompts / 8 per step x 2 epochs
    answers = {m[-1]["content"] for m in scores.messages}
    for students, teachers in seen:
        assert all("REFERENCE" not in s and not any(a in s for a in answers) for s in students)
        assert all("REFERENCE" in t and any(a in t for a in answers) for t in teachers)
    trained = load_file(str(final / "adapter_model.safetensors"))
    assert any(v.abs().sum() > 0 for k, v in trained.items() if "lora_B" in k)  # it moved
    load_model(tiny_model_dir, adapter=str(final))  # and loads as every other method's adapter


# --------------------------------------------------------------------------------------------- experiment


def test_the_new_methods_plan_as_variants_of_gt():
    from robust_sft.experiment.runner import ExperimentConfig, plan_variants

    config = ExperimentConfig(methods=["gt", "stm_soft", "infosft", "sdft"], taus=[2.5, 5], soft_temperature=0.5,
                              train={"learning_rate": 3e-4}, lr_sweep={"infosft": [0.1]})
    variants = {v.name: v for v in plan_variants(config)}
    assert list(variants) == ["gt", "stm_soft@2.5", "stm_soft@5", "infosft", "sdft", "infosft_lr3e-05"]
    assert all(v.source == "gt" for v in variants.values())
    assert dict(variants["stm_soft@5"].train_overrides) == {"mask": "none", "tau": 5, "soft_temperature": 0.5}
    assert dict(variants["infosft"].train_overrides) == {"mask": "none", "loss": "infosft"}
    assert dict(variants["sdft"].train_overrides) == {"mask": "none", "loss": "sdft"}
    with pytest.raises(ValueError, match="method stm_soft needs at least one tau"):
        ExperimentConfig(methods=["stm_soft"], taus=[])


def test_an_experiment_runs_the_soft_stm_infosft_and_sdft(tmp_path, tiny_model_dir):
    import tests.fake_tasks  # noqa: F401  (registers the test tasks)
    from robust_sft.data.synthesis import rephrase_prompt
    from robust_sft.experiment.runner import Experiment, ExperimentConfig
    from robust_sft.tasks import get_task

    config = ExperimentConfig(
        name="new", model=tiny_model_dir, target="test/even_length", others=["test/nonempty"],
        methods=["gt", "stm_soft", "infosft", "sdft"], taus=[500], seeds=[0], train_limit=16, validation_limit=8,
        eval_limit=8, eval_batch_size=16,
        train={"max_steps": 2, "num_train_epochs": 1, "per_device_train_batch_size": 8, "learning_rate": 1e-3})
    results = Experiment(config, tmp_path, progress=False).run()
    methods = results["methods"]
    assert list(methods) == ["gt", "stm_soft@500", "infosft", "sdft"]
    # sdft's teacher reads the target's own rewrite prompt, one per GT example, and samples as long as evaluation
    task = get_task("test/even_length")
    rows = [json.loads(line) for line in (tmp_path / "data" / "sdft_teacher.jsonl").read_text().splitlines()]
    assert rows == [{"id": e["id"], "teacher_prompt": rephrase_prompt(task, e)} for e in task.load("train", limit=16)]
    sdft_config = json.loads((tmp_path / "models" / "sdft" / "seed0" / "train_summary.json").read_text())["config"]
    assert sdft_config["loss"] == "sdft" and sdft_config["sdft_max_new_tokens"] == task.max_new_tokens
    assert sdft_config["sdft_teacher_prompts"] == str(tmp_path / "data" / "sdft_teacher.jsonl")
    plan = {v["name"]: v for v in json.loads((tmp_path / "plan.json").read_text())["variants"]}
    assert plan["sdft"]["seeds"]["0"]["train"]["sdft_teacher_prompts"] == "data/sdft_teacher.jsonl"
    soft = json.loads((tmp_path / "models" / "stm_soft@500" / "seed0" / "train_summary.json").read_text())
    assert soft["config"]["soft_temperature"] == 1.0 and 0 < soft["mask_report"]["mean_weight"] < 1
    # what each trains on: the soft STM weighs the surprising tokens down; sdft trains on its own samples
    assert methods["stm_soft@500"]["trained_token_ppl"] < methods["gt"]["trained_token_ppl"]
    assert math.isnan(methods["sdft"]["trained_token_ppl"]) and methods["sdft"]["loss"] == "sdft"
    # judged by the same claims as STM and the other baselines
    claims = {c["id"] for c in results["claims"]}
    assert {"b-stm_soft@500", "c-stm_soft@500", "b-infosft", "c-infosft", "b-sdft", "c-sdft"} <= claims
    assert (tmp_path / "figures" / "ppl_vs_bwt.png").read_bytes()[:4] == b"\x89PNG"


def test_the_soft_stm_and_sdft_train_from_the_command_line(tiny_model_dir, scores_path, tmp_path):
    from robust_sft.cli import main

    common = ["train", "--model", tiny_model_dir, "--data", scores_path, "--mask", "none", "--max_steps", "1",
              "--per_device_train_batch_size", "8", "--progress", "false"]
    assert main([*common, "--output_dir", str(tmp_path / "soft"), "--tau", "20", "--soft_temperature", "1.5"]) == 0
    soft = json.loads((tmp_path / "soft" / "train_summary.json").read_text())
    expected = load_training_data(scores_path, MaskPolicy(kind="none", tau=20.0), soft_temperature=1.5).report
    assert soft["mask_report"] == expected and soft["config"]["soft_temperature"] == 1.5
    assert main([*common, "--output_dir", str(tmp_path / "sdft"), "--loss", "sdft", "--sdft_max_new_tokens", "4",
                 "--sdft_template", "{prompt} / {reference}"]) == 0
    sdft = json.loads((tmp_path / "sdft" / "train_summary.json").read_text())
    assert sdft["config"]["sdft_template"] == "{prompt} / {reference}" and 0 < sdft["trained_tokens"] <= 8 * 4
