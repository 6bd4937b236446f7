"""The results.json document of a run: every number read from the run directory (scores, train summaries,
evaluation accuracies and sample logs)."""

from __future__ import annotations

import functools
import json
import math
from pathlib import Path

import numpy as np

from robust_sft.core.artifacts import read_text
from robust_sft.evaluation.metrics import backward_transfer, mean_std, target_improvement, zero_base_tasks
from robust_sft.report.claims import judge_claims


def read_json(path: Path) -> dict:
    return json.loads(path.read_text())


def eval_accuracies(eval_dir: Path) -> dict[str, float]:
    return {task: v["accuracy"] for task, v in read_json(eval_dir / "accuracies.json").items()}


def kept_token_ppl(scores, result) -> float:
    """exp(mean NLL) over the tokens a policy's `MaskResult` keeps: the perplexity the model is trained on."""
    kept = [scores.token_nll[i][lab != -100] for i, lab in zip(result.keep_examples, result.labels)]
    values = np.concatenate(kept) if kept else np.zeros(0)
    return float(math.exp(values.mean())) if len(values) else float("nan")


def policy_mask_location(scores, result, task, tokenizer) -> dict | None:
    """Where a policy's `MaskResult` masks: inside the answer span the task's checker reads, or in the prose."""
    from robust_sft.masking.diagnostics import mask_location

    keeps = {i: np.zeros(len(ids), bool) for i, ids in enumerate(scores.input_ids)}
    keeps.update({i: labels != -100 for i, labels in zip(result.keep_examples, result.labels)})
    return mask_location(scores, keeps, task, tokenizer)


def item_correctness(eval_dir: Path, task: str) -> dict[str, bool]:
    """Per test item of a task: whether the evaluated model got it right (from the evaluation's sample log)."""
    from robust_sft.evaluation.engine import task_file_name

    path = eval_dir / f"{task_file_name(task)}.jsonl"
    rows = [json.loads(line) for line in read_text(path).splitlines() if line.strip()]
    return {row["id"]: bool(row["correct"]) for row in rows}


def sample_transitions(before: dict[str, bool], after: dict[str, bool]) -> dict:
    """Sample-wise forgetting: the share of items right before that are wrong after, and the reverse.

    Accuracy alone hides items lost and regained; these two shares show both (NaN when a side is empty).
    """
    common = before.keys() & after.keys()
    right = [i for i in common if before[i]]
    wrong = [i for i in common if not before[i]]
    lost = sum(not after[i] for i in right)
    gained = sum(after[i] for i in wrong)
    return {"right_to_wrong": lost / len(right) if right else float("nan"),
            "wrong_to_right": gained / len(wrong) if wrong else float("nan"),
            "base_right": len(right), "base_wrong": len(wrong)}


def collect_results(exp, costs: dict[str, float]) -> dict:
    """The results.json document (schema in the README)."""
    from robust_sft.masking.policies import MaskPolicy, apply_policy
    from robust_sft.models.loading import load_tokenizer
    from robust_sft.scoring.stats import summarize
    from robust_sft.scoring.token_nll import load_scores

    config = exp.config
    others = [t for t in exp.tasks if t != config.target]
    tokenizer = functools.cache(lambda: load_tokenizer(exp.base))
    base = eval_accuracies(exp.dir / "eval" / "base")
    base_items = {t: item_correctness(exp.dir / "eval" / "base", t) for t in others}
    scores = {s: load_scores(exp.scores_path(s)) for s in exp.sources}
    data = {}
    for source, sc in scores.items():
        summary = summarize(sc)
        entry = {k: summary[k] for k in ("examples", "answer_tokens", "sequence_ppl_mean", "sequence_ppl_var")}
        entry["pct_tokens_ppl_above_2.5"] = summary["pct_tokens_ppl_above"]["2.5"]
        entry["generation_seconds"] = costs.get(source, 0.0)
        entry["scoring_seconds"] = costs.get(f"score_{source}", 0.0)
        report_path = exp.data_path(source).with_suffix(".report.json")
        if report_path.exists():
            entry["generation_report"] = read_json(report_path)
        data[source] = entry

    methods = {}
    for variant in exp.variants:
        summary0 = read_json(exp.model_dir(variant, config.seeds[0]) / "train_summary.json")
        seeds = {}
        for seed in config.seeds:
            after = eval_accuracies(exp.eval_dir(variant, seed))
            train_summary = read_json(exp.model_dir(variant, seed) / "train_summary.json")
            seeds[str(seed)] = {
                "accuracies": after,
                "target_accuracy": after[config.target],
                "ti": target_improvement(base, after, config.target),
                "bwt": backward_transfer(base, after, others),
                "best_checkpoint": train_summary.get("best_checkpoint"),
                "train_loss": train_summary.get("train_loss"),
                "transitions": {t: sample_transitions(base_items[t], item_correctness(exp.eval_dir(variant, seed), t))
                                for t in others},
            }
        policy = {**exp.config.train, **dict(variant.train_overrides)}
        mask_policy = MaskPolicy(
            kind=policy.get("mask", "none"), tau=policy.get("tau", 2.5), ratio=policy.get("ratio"),
            seed=config.seeds[0] if variant.method == "stm_random" else policy.get("mask_seed", 0))
        masked = apply_policy(scores[variant.source], mask_policy)  # once: the trained ppl and the diagnostic
        kept_ppl = kept_token_ppl(scores[variant.source], masked)
        location = (policy_mask_location(scores[variant.source], masked, exp.get_task(config.target),
                                         tokenizer()) if mask_policy.kind != "none" else None)
        data_cost = costs.get(variant.source, 0.0) + (
            costs.get("score_gt", 0.0) if variant.method in ("stm", "stm_random", "stm_lowest") else 0.0)
        methods[variant.name] = {
            "method": variant.method,
            "source": variant.source,
            "tau": variant.tau,
            "loss": policy.get("loss", "nll"),
            "learning_rate": policy.get("learning_rate"),
            "lr_scale": variant.lr_scale,
            "masked_fraction": summary0["mask_report"]["masked_fraction"],
            "trained_tokens": summary0["trained_tokens"],
            "train_examples": summary0["n_train_examples"],
            "trained_token_ppl": kept_ppl,
            "data_cost_seconds": data_cost,
            "mask_location": location,
            "seeds": seeds,
            **_aggregate(seeds, exp.tasks),
            "transitions": _mean_transitions(seeds, others),
        }
    results = {
        "schema": "robust-sft/results/v1",
        "name": config.name,
        "model": exp.base,
        "target": config.target,
        "others": others,
        "seeds": config.seeds,
        "base": {"accuracies": base},
        "percentage_point_tasks": zero_base_tasks(base),  # base accuracy 0: TI/BWT terms in points
        "data": data,
        "methods": methods,
    }
    results["claims"] = judge_claims(results)
    return results


def _aggregate(seeds: dict, tasks: list[str]) -> dict:
    out = {"mean": {}, "std": {}}
    for metric in ("target_accuracy", "ti", "bwt"):
        out["mean"][metric], out["std"][metric] = mean_std(s[metric] for s in seeds.values())
    for task in tasks:
        m, s = mean_std(seed["accuracies"][task] for seed in seeds.values())
        out["mean"].setdefault("accuracies", {})[task] = m
        out["std"].setdefault("accuracies", {})[task] = s
    return out


def _mean_transitions(seeds: dict, others: list[str]) -> dict:
    """Per other task, the seed means of the right->wrong and wrong->right shares."""
    return {t: {k: float(np.mean([s["transitions"][t][k] for s in seeds.values()]))
                for k in ("right_to_wrong", "wrong_to_right")} for t in others}
