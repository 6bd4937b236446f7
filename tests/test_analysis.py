import json
import math
import shutil

import numpy as np
import pytest
import torch

import tests.fake_tasks  # noqa: F401  (registers the test tasks)
from robust_sft.analysis.kl import kl_to_base
from robust_sft.analysis.loss import final_train_loss
from robust_sft.analysis.measures import (
    effective_rank,
    kl_rows,
    layer_index,
    low_rank_singular_values,
    summarize_matrices,
)
from robust_sft.analysis.mechanism import analyze_run, average_ranks, correlations, spearman
from robust_sft.evaluation.metrics import within_group_correlation
from robust_sft.analysis.weights import adapter_deltas, full_deltas
from robust_sft.experiment.runner import Experiment
from robust_sft.scoring.token_nll import TokenScorer
from tests.test_experiment import mini_config

# --------------------------------------------------------------------------------------------- the maths


def test_effective_rank_of_rank_one_orthogonal_and_zero_matrices():
    torch.manual_seed(0)
    rank_one = torch.randn(7, 1) @ torch.randn(1, 5)
    assert effective_rank(torch.linalg.svdvals(rank_one)) == pytest.approx(1.0, abs=1e-5)
    orthogonal, _ = torch.linalg.qr(torch.randn(6, 6, dtype=torch.float64))
    assert effective_rank(torch.linalg.svdvals(orthogonal)) == pytest.approx(6.0, rel=1e-9)
    assert effective_rank(np.zeros(4)) == 0.0
    # two equal singular values and one of zero: exactly 2
    assert effective_rank([3.0, 3.0, 0.0]) == pytest.approx(2.0)


def test_low_rank_singular_values_equal_the_dense_svd():
    torch.manual_seed(1)
    lora_a, lora_b = torch.randn(4, 40), torch.randn(24, 4)
    ours = low_rank_singular_values(lora_a, lora_b, 0.5)
    dense = torch.linalg.svdvals(0.5 * lora_b.double() @ lora_a.double())
    assert torch.allclose(ours, dense[:4], rtol=1e-10)
    assert effective_rank(ours) == pytest.approx(effective_rank(dense), rel=1e-9)


def test_average_ranks_share_ties_and_spearman_matches_scipy():
    assert average_ranks([10, 20, 20, 30]).tolist() == [1, 2.5, 2.5, 4]
    assert average_ranks([3, 1, 3, 3]).tolist() == [3, 1, 3, 3]
    assert spearman([1, 2, 3, 4], [10, 20, 25, 100]) == pytest.approx(1.0)
    assert spearman([1, 2, 3, 4], [4, 3, 2, 1]) == pytest.approx(-1.0)
    assert spearman([1, 2], [1, 2]) is None  # too few
    assert spearman([1, 1, 1], [1, 2, 3]) is None  # constant: undefined
    from scipy import stats
    rng = np.random.default_rng(0)
    x, y = rng.integers(0, 5, 30), rng.integers(0, 5, 30)  # many ties
    assert spearman(x, y) == pytest.approx(stats.spearmanr(x, y).statistic, abs=1e-12)


def test_correlations_pair_each_measure_with_bwt_over_the_units_that_have_both():
    nan = float("nan")
    measures = ("bwt", "ti", "delta_norm_total", "effective_rank_mean", "kl_to_base", "final_train_loss")
    rows = [(-10, 5, 1, 2, 3, 0.5), (-20, 1, 2, 1, None, 0.4), (-30, 4, 3, 4, 1, nan), (-40, 2, 4, 3, 2, 0.2),
            (-50, 3, 5, 5, 5, 0.1), (nan, 9, 9, 9, 9, 9)]
    units = [{k: v for k, v in zip(measures, row) if v is not None} for row in rows]
    out = correlations(units)
    # rho = 1 - 6 sum(d^2) / (n (n^2 - 1)) with d the rank differences (no ties)
    assert out["delta_norm_total"]["rho"] == pytest.approx(-1.0) and out["delta_norm_total"]["n"] == 5
    assert out["effective_rank_mean"]["rho"] == pytest.approx(1 - 6 * 36 / 120)  # -0.8
    assert out["kl_to_base"]["rho"] == pytest.approx(1 - 6 * 14 / 60) and out["kl_to_base"]["n"] == 4  # -0.4
    assert out["final_train_loss"]["rho"] == pytest.approx(1.0) and out["final_train_loss"]["n"] == 4
    # no method given: one group, so within-group is the plain Pearson correlation over the same units
    assert out["delta_norm_total"]["within"] == {"r": pytest.approx(-1.0), "n": 5, "groups": 1, "factors": ["method"]}


def test_within_group_correlation_removes_what_separates_the_groups():
    # two methods: across them, more delta goes with more forgetting (pooled rho -1 in spirit); inside each,
    # along its learning rates, more delta goes with LESS forgetting. Only the within-group r says so.
    units = ([{"method": "gt", "delta_norm_total": d, "bwt": -40 + d} for d in (10, 11, 12)]
             + [{"method": "stm", "delta_norm_total": d, "bwt": -5 + d} for d in (1, 2, 3)]
             + [{"method": "alone", "delta_norm_total": 50, "bwt": -60}])  # one member: carries nothing within
    out = correlations(units, measures=("delta_norm_total",))["delta_norm_total"]
    assert out["rho"] < 0 and out["n"] == 7
    assert out["within"] == {"r": pytest.approx(1.0), "n": 6, "groups": 2, "factors": ["method"]}
    r, n, groups = within_group_correlation([1, 2, 3, 4], [4, 3, 2, 1], ["a", "a", "b", "b"])
    assert (r, n, groups) == (pytest.approx(-1.0), 4, 2)
    assert within_group_correlation([1, 1, 2, 2], [0, 1, 0, 1], ["a", "a", "b", "b"])[0] is None  # no x spread
    with pytest.raises(ValueError, match="3 x, 3 y and 2 group values"):
        within_group_correlation([1, 2, 3], [1, 2, 3], ["a", "b"])


def test_kl_rows_is_zero_for_equal_logits_and_matches_a_direct_sum():
    logits_p, logits_q = torch.tensor([[1.0, 2.0, 0.5]]), torch.tensor([[0.0, 1.0, 3.0]])
    assert kl_rows(logits_p, logits_p).abs().max() < 1e-7
    p, q = torch.softmax(logits_p, -1)[0], torch.softmax(logits_q, -1)[0]
    assert kl_rows(logits_p, logits_q)[0].item() == pytest.approx(float((p * (p / q).log()).sum()), rel=1e-6)


def test_layer_sums_are_root_sum_of_squares():
    matrices = {"model.layers.0.a.weight": {"norm": 3.0, "effective_rank": 1.0},
                "model.layers.0.b.weight": {"norm": 4.0, "effective_rank": 3.0},
                "model.layers.2.a.weight": {"norm": 1.0, "effective_rank": 2.0},
                "lm_head.weight": {"norm": 2.0, "effective_rank": 5.0}}
    summary = summarize_matrices(matrices)
    assert summary["delta_norm_per_layer"] == [5.0, 0.0, 1.0]
    assert summary["delta_norm_outside_layers"] == 2.0
    assert summary["delta_norm_total"] == pytest.approx(math.sqrt(9 + 16 + 1 + 4))
    assert summary["effective_rank_mean"] == pytest.approx(11 / 4)
    assert summary["effective_rank_weighted"] == pytest.approx((3 + 12 + 2 + 10) / 10)
    assert layer_index("base.model.layers.11.mlp.up_proj.weight") == 11 and layer_index("lm_head.weight") is None


def test_final_train_loss_is_taken_at_the_selected_step():
    curve = [{"step": 1, "loss": 3.0}, {"step": 3, "loss": 2.0}, {"step": 6, "loss": 1.0}]
    assert final_train_loss(curve, None) == 1.0
    assert final_train_loss(curve, 3) == 2.0
    assert final_train_loss([], None) is None


# --------------------------------------------------------------------------------------------- delta-W from files


def _base_state(model_dir):
    from transformers import AutoModelForCausalLM

    return AutoModelForCausalLM.from_pretrained(model_dir).state_dict()


@pytest.mark.parametrize("dora", [False, True])
def test_adapter_deltas_equal_merge_and_unload(tiny_model_dir, tmp_path, dora):
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    model = get_peft_model(AutoModelForCausalLM.from_pretrained(tiny_model_dir),
                           LoraConfig(r=4, lora_alpha=8, target_modules="all-linear", use_dora=dora))
    torch.manual_seed(2)
    with torch.no_grad():
        for name, param in model.named_parameters():
            if "lora_B" in name or "magnitude" in name:  # a fresh B is zero: give the update some size
                param += 0.1 * torch.randn_like(param)
    model.save_pretrained(tmp_path / "adapter")
    ours, left_out = adapter_deltas(tmp_path / "adapter", tiny_model_dir)
    assert left_out == []
    merged, base = model.merge_and_unload().state_dict(), _base_state(tiny_model_dir)
    assert len(ours) == 14  # 7 linear layers x 2 transformer layers
    for name, entry in ours.items():
        dense = (merged[name] - base[name]).double()
        assert entry["norm"] == pytest.approx(dense.norm().item(), rel=1e-5), name
        assert entry["effective_rank"] == pytest.approx(effective_rank(torch.linalg.svdvals(dense)), rel=1e-4), name
        assert entry["shape"] == list(dense.shape)
        if not dora:
            assert entry["effective_rank"] <= 4 + 1e-9


def test_full_deltas_equal_the_state_dict_difference(tiny_model_dir, tmp_path):
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(tiny_model_dir)
    torch.manual_seed(3)
    with torch.no_grad():
        for param in model.parameters():
            param += 0.01 * torch.randn_like(param)
    model.save_pretrained(tmp_path / "tuned")
    ours, left_out = full_deltas(tmp_path / "tuned", tiny_model_dir)
    tuned, base = model.state_dict(), _base_state(tiny_model_dir)
    matrices = {k for k, v in base.items() if v.ndim == 2}
    assert set(ours) == matrices and {"model.embed_tokens.weight", "lm_head.weight"} <= matrices
    assert set(left_out) == set(base) - matrices  # the 1-D norm weights
    for name, entry in ours.items():
        dense = tuned[name] - base[name]
        assert entry["norm"] == pytest.approx(dense.norm().item(), rel=1e-5), name
        assert entry["effective_rank"] == pytest.approx(effective_rank(torch.linalg.svdvals(dense)), rel=1e-6)


# --------------------------------------------------------------------------------------------- KL


def test_kl_is_zero_for_a_fresh_adapter_and_positive_after_training(tiny_model_dir, scores_path, tmp_path,
                                                                    monkeypatch):
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    from robust_sft.training.config import TrainConfig
    from robust_sft.training.trainer import train

    fresh = get_peft_model(AutoModelForCausalLM.from_pretrained(tiny_model_dir),
                           LoraConfig(r=4, lora_alpha=8, target_modules="all-linear"))
    fresh.save_pretrained(tmp_path / "fresh")
    untrained = kl_to_base(tmp_path / "fresh", tiny_model_dir, scores_path, progress=False)
    assert untrained["kl_tokens"] > 100 and untrained["kl_examples"] == 24
    assert abs(untrained["kl_to_base"]) < 1e-6

    final = train(TrainConfig(model=tiny_model_dir, data=scores_path, output_dir=str(tmp_path / "trained"),
                              mask="none", max_steps=3, learning_rate=1e-2, per_device_train_batch_size=8,
                              progress=False))
    trained = kl_to_base(final, tiny_model_dir, scores_path, limit=5, progress=False)
    assert trained["kl_examples"] == 5 and trained["kl_to_base"] > 1e-4
    assert trained == pytest.approx(_brute_force_kl(final, tiny_model_dir, scores_path, 5))
    # a model whose logits are not decoder + LM head gets the same numbers from its full logits
    monkeypatch.setattr(TokenScorer, "_fast_path_matches_model", lambda self: False)
    assert kl_to_base(final, tiny_model_dir, scores_path, limit=5, progress=False) == pytest.approx(trained)


def test_kl_on_the_other_tasks_prompts_reads_the_base_models_own_answers(tiny_model_dir, scores_path, tmp_path):
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    from robust_sft.training.config import TrainConfig
    from robust_sft.training.trainer import train

    rows = [{"id": f"o/{i}", "prompt": f"Say something about {w}.", "completion": f"{w} is a word, {i} times."}
            for i, w in enumerate(["apples", "rivers", "tiles"])]
    rows.append({"id": "o/empty", "prompt": "Say nothing.", "completion": ""})  # no answer token: left out
    log = tmp_path / "base_answers.jsonl"
    log.write_text("".join(json.dumps(r) + "\n" for r in rows))
    fresh = get_peft_model(AutoModelForCausalLM.from_pretrained(tiny_model_dir),
                           LoraConfig(r=4, lora_alpha=8, target_modules="all-linear"))
    fresh.save_pretrained(tmp_path / "fresh")
    untrained = kl_to_base(tmp_path / "fresh", tiny_model_dir, scores_path, limit=2, progress=False,
                           other_answers={"o": log})
    assert abs(untrained["kl_other_prompts"]) < 1e-6 and untrained["kl_other_tokens"] > 10
    final = train(TrainConfig(model=tiny_model_dir, data=scores_path, output_dir=str(tmp_path / "trained"),
                              mask="none", max_steps=3, learning_rate=1e-2, per_device_train_batch_size=8,
                              progress=False))
    trained = kl_to_base(final, tiny_model_dir, scores_path, limit=2, progress=False,
                         other_answers={"o": log, "p": log})
    expected = _brute_force_answer_kl(final, tiny_model_dir, rows[:2])
    assert trained["kl_other_prompts_by_task"] == pytest.approx({"o": expected, "p": expected})
    assert trained["kl_other_prompts"] == pytest.approx(expected) and expected > 1e-4


def _brute_force_answer_kl(adapter, base_dir, rows):
    """Mean KL over the answer tokens of (prompt, completion) rows, from two separately loaded models."""
    from robust_sft.models.loading import load_model, load_tokenizer

    tok = load_tokenizer(base_dir)
    tuned, base = load_model(base_dir, adapter=str(adapter), device="cpu"), load_model(base_dir, device="cpu")
    total, tokens = 0.0, 0
    with torch.no_grad():
        for row in rows:
            prompt = tok.apply_chat_template([{"role": "user", "content": row["prompt"]}], tokenize=False,
                                             add_generation_prompt=True)
            whole = tok.apply_chat_template([{"role": "user", "content": row["prompt"]},
                                             {"role": "assistant", "content": row["completion"]}], tokenize=False)
            n_prompt = len(tok(prompt, add_special_tokens=False)["input_ids"])
            ids = torch.tensor(tok(whole, add_special_tokens=False)["input_ids"])[None]
            end = ids[0].tolist().index(tok.eos_token_id, n_prompt)  # the answer, up to its end of turn
            answer = [n_prompt <= t <= end for t in range(1, ids.shape[1])]  # position t predicts token t + 1
            trained = torch.tensor(answer)
            p, q = tuned(input_ids=ids).logits[0, :-1][trained], base(input_ids=ids).logits[0, :-1][trained]
            total += float(kl_rows(p, q).sum())
            tokens += int(trained.sum())
    return total / tokens


def _brute_force_kl(adapter, base_dir, scores_path, limit):
    """The same mean KL from two separately loaded models' full logits, one example at a time."""
    from robust_sft.masking.policies import IGNORE_INDEX, MaskPolicy
    from robust_sft.models.loading import load_model
    from robust_sft.training.data import load_training_data

    tuned, base = load_model(base_dir, adapter=str(adapter), device="cpu"), load_model(base_dir, device="cpu")
    data = load_training_data(scores_path, MaskPolicy(kind="none"))
    total, tokens = 0.0, 0
    with torch.no_grad():
        for ids, labels in list(zip(data.input_ids, data.labels))[:limit]:
            ids = torch.as_tensor(ids)[None]
            trained = torch.as_tensor(labels[1:] != IGNORE_INDEX)  # position t predicts token t + 1
            p, q = tuned(input_ids=ids).logits[0, :-1][trained], base(input_ids=ids).logits[0, :-1][trained]
            total += float(kl_rows(p, q).sum())
            tokens += int(trained.sum())
    return {"kl_to_base": total / tokens, "kl_tokens": tokens, "kl_examples": limit}


# --------------------------------------------------------------------------------------------- a whole run


class LoraAndFullExperiment(Experiment):
    """A run whose gt variant trains a LoRA adapter and whose oracle variant fine-tunes every weight."""

    def train_options(self, variant, seed):
        options = super().train_options(variant, seed)
        return {**options, "finetuning": "full"} if variant.name == "oracle" else options


MIXED_TRAIN = {"max_steps": 2, "num_train_epochs": 1, "per_device_train_batch_size": 8, "learning_rate": 1e-3,
               "logging_steps": 1}


@pytest.fixture(scope="module")
def mixed_run(tmp_path_factory, tiny_model_dir):
    run_dir = tmp_path_factory.mktemp("run")
    config = mini_config(tiny_model_dir, methods=["gt", "oracle"], lr_sweep={}, train=MIXED_TRAIN)
    LoraAndFullExperiment(config, run_dir, progress=False).run()
    return run_dir


def test_analyze_cli_measures_lora_and_full_units_and_a_second_call_recomputes_nothing(mixed_run, capsys):
    from robust_sft.cli import main

    assert main(["analyze", str(mixed_run)]) == 0
    assert "rho(BWT, kl_to_base)" in capsys.readouterr().out
    analysis = json.loads((mixed_run / "analysis.json").read_text())
    results = json.loads((mixed_run / "results.json").read_text())
    assert analysis["computed_units"] == 2
    lora, full = analysis["methods"]["gt"]["seeds"]["0"], analysis["methods"]["oracle"]["seeds"]["0"]
    assert (lora["finetuning"], full["finetuning"]) == ("lora", "full")
    assert "lm_head.weight" in full["matrices"] and "lm_head.weight" not in lora["matrices"]
    for row, variant in ((lora, "gt"), (full, "oracle")):
        assert row["delta_norm_total"] > 0 and len(row["delta_norm_per_layer"]) == 2
        assert row["kl_to_base"] > 0 and row["kl_examples"] == 16
        assert set(row["kl_other_prompts_by_task"]) == {"test/nonempty", "test/has_space"}
        assert row["kl_other_prompts"] > 0 and row["kl_other_tokens"] > 0
        assert row["effective_rank_mean"] >= 1 and row["effective_rank_weighted"] >= 1
        assert [r["step"] for r in row["loss_curve"]] == [1, 2] and row["final_train_loss"] == row["loss_curve"][-1]["loss"]
        assert row["bwt"] == results["methods"][variant]["seeds"]["0"]["bwt"]
        assert row["ti"] == results["methods"][variant]["seeds"]["0"]["ti"]
    # the final/ model the evaluation used is the one measured: its tensors against the base's
    tuned = _base_state(str(mixed_run / "models" / "oracle" / "seed0" / "final"))
    base = _base_state(full["base_model"])
    name = "model.layers.1.mlp.down_proj.weight"
    assert full["matrices"][name]["norm"] == pytest.approx((tuned[name] - base[name]).norm().item(), rel=1e-5)
    assert set(analysis["correlations"]) == {"delta_norm_total", "effective_rank_mean", "kl_to_base",
                                             "kl_other_prompts", "final_train_loss"}
    assert all(c["n"] == 2 for c in analysis["correlations"].values())  # two units: too few for a rho
    for figure in ("mechanism_scatter", "delta_norm_per_layer", "loss_curves"):
        assert (mixed_run / "figures" / f"{figure}.png").stat().st_size > 1000

    cached = {p: p.stat().st_mtime_ns for p in (mixed_run / "analysis").rglob("*.json")}
    assert len(cached) == 2
    assert main(["analyze", str(mixed_run)]) == 0
    again = json.loads((mixed_run / "analysis.json").read_text())
    assert again["computed_units"] == 0
    assert {p: p.stat().st_mtime_ns for p in cached} == cached
    assert again["methods"] == analysis["methods"]

    # a damaged cache file is measured again, alone
    (mixed_run / "analysis" / "gt" / "seed0.json").write_text("{")
    repaired = analyze_run(mixed_run, progress=False)
    assert repaired["computed_units"] == 1 and repaired["methods"] == analysis["methods"]

    # another KL subset is another analysis: both units again, on the first 4 examples
    limited = analyze_run(mixed_run, kl_limit=4, progress=False, out=mixed_run / "analysis_kl4.json")
    assert limited["computed_units"] == 2
    assert limited["methods"]["gt"]["seeds"]["0"]["kl_examples"] == 4


def test_a_run_without_results_still_analyses(mixed_run, tmp_path):
    copy = tmp_path / "run"
    shutil.copytree(mixed_run, copy, ignore=shutil.ignore_patterns("results.json", "analysis*"))
    analysis = analyze_run(copy, kl_limit=2, progress=False)
    rows = [row for m in analysis["methods"].values() for row in m["seeds"].values()]
    assert len(rows) == 2 and all("bwt" not in row and "ti" not in row for row in rows)
    assert all(row["delta_norm_total"] > 0 for row in rows)
    assert all(c["rho"] is None and c["n"] == 0 and c["within"]["r"] is None
               for c in analysis["correlations"].values())
    assert (copy / "figures" / "mechanism_scatter.png").exists()


def test_a_broken_unit_is_named_and_the_units_before_it_stay_cached(mixed_run, tmp_path, capsys):
    from robust_sft.cli import main

    copy = tmp_path / "run"
    shutil.copytree(mixed_run, copy, ignore=shutil.ignore_patterns("analysis*"))
    (copy / "models" / "oracle" / "seed0" / "final" / "model.safetensors").unlink()
    assert main(["analyze", str(copy), "--kl_limit", "2"]) == 1
    error = capsys.readouterr().err
    assert "analyze oracle seed 0" in error and "model.safetensors" in error
    assert (copy / "analysis" / "gt" / "seed0.json").exists() and not (copy / "analysis.json").exists()


def test_units_measure_their_models_as_they_finish_so_the_measures_outlive_the_weights(mixed_run, tiny_model_dir,
                                                                                      tmp_path):
    """analyze_units: each unit measures its model right after its evaluation; the run directory can then lose
    its weights (another machine, another session) and the analysis still has every unit, measured identically."""
    measured_later = analyze_run(mixed_run, kl_limit=3, progress=False, out=tmp_path / "later.json")
    copy = tmp_path / "run"
    shutil.copytree(mixed_run, copy, ignore=shutil.ignore_patterns("analysis*"))
    config = mini_config(tiny_model_dir, methods=["gt", "oracle"], lr_sweep={}, train=MIXED_TRAIN,
                         analyze_units=True, kl_limit=3)
    # units evaluated before the option was on are measured on the next pass, nothing trained or evaluated again
    LoraAndFullExperiment(config, copy, progress=False).run()
    cached = sorted(str(p.relative_to(copy)) for p in (copy / "analysis").rglob("*.json"))
    assert cached == ["analysis/gt/seed0.json", "analysis/oracle/seed0.json"]
    assert (json.loads((copy / "results.json").read_text())["methods"]["gt"]
            == json.loads((mixed_run / "results.json").read_text())["methods"]["gt"])
    for final in copy.glob("models/*/seed0/final"):
        shutil.rmtree(final)
    LoraAndFullExperiment(config, copy, progress=False).run()  # no weights: neither trains nor fails
    assert not list(copy.glob("models/*/seed0/final"))
    analysis = analyze_run(copy, kl_limit=3, progress=False)
    assert analysis["computed_units"] == 0 and analysis["skipped"] == []
    for variant in ("gt", "oracle"):
        row, later = analysis["methods"][variant]["seeds"]["0"], measured_later["methods"][variant]["seeds"]["0"]
        assert row["kl_to_base"] == pytest.approx(later["kl_to_base"]) and row["kl_examples"] == 3
        assert row["delta_norm_total"] == pytest.approx(later["delta_norm_total"])


def test_a_run_dir_without_models_is_a_clear_error(tmp_path):
    with pytest.raises(FileNotFoundError, match="no models/ directory"):
        analyze_run(tmp_path, progress=False)


def test_a_base_model_that_is_not_on_disk_is_a_clear_error(tiny_model_dir, tmp_path):
    with pytest.raises(FileNotFoundError, match="neither a directory nor a model in the Hugging Face cache"):
        full_deltas(tiny_model_dir, tmp_path / "missing")
