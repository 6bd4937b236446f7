"""The results.json document of a run: every number read from the run directory (plan.json, scores, train
summaries, evaluation accuracies and sample logs, cost sidecars), never from a live experiment."""

from __future__ import annotations

import functools
import math
from pathlib import Path

import numpy as np

from robust_sft.core.rundir import RunDir
from robust_sft.evaluation.metrics import backward_transfer, mean_std, target_improvement, zero_base_tasks
from robust_sft.masking.diagnostics import keeps_of, mask_location
from robust_sft.masking.inputs import mask_scores
from robust_sft.masking.policies import MaskPolicy
from robust_sft.masking.weights import soft_weights
from robust_sft.models.loading import load_tokenizer
from robust_sft.report.claims import judge_claims
from robust_sft.report.criteria import judge_criteria
from robust_sft.report.criteria import tau_grid
from robust_sft.report.intervals import (change_interval, common_items, difference_interval, frontier_gap_interval,
                                         item_matrix, optimum_interval)
from robust_sft.scoring.files import load_scores
from robust_sft.scoring.stats import summarize
from robust_sft.tasks.base import get_task

# The methods whose training set is GT masked by its score file: scoring GT is part of their data's cost.
MASKING_METHODS = ("stm", "stm_random", "stm_lowest", "stm_auto", "answer_aware", "hindsight", "stm_soft",
                   "departure_kept")


def kept_token_ppl(scores, result) -> float:
    """exp(mean NLL) over the tokens a policy's `MaskResult` keeps: the perplexity the model is trained on."""
    kept = [scores.token_nll[i][lab != -100] for i, lab in zip(result.keep_examples, result.labels)]
    values = np.concatenate(kept) if kept else np.zeros(0)
    return float(math.exp(values.mean())) if len(values) else float("nan")


def weighted_token_ppl(scores, result, tau: float, temperature: float) -> float:
    """The soft STM's `kept_token_ppl`: exp of the weighted mean NLL, each token weighted as it trains."""
    total = weight = 0.0
    for i, labels in zip(result.keep_examples, result.labels):
        w = soft_weights(scores.token_nll[i], labels != -100, tau, temperature).astype(np.float64)
        total += float(np.nansum(w * scores.token_nll[i]))
        weight += float(w.sum())
    return float(math.exp(total / weight)) if weight > 0 else float("nan")


def trained_ppl(scores, result, policy: MaskPolicy, train: dict) -> float:
    """The perplexity under the base model of what a variant trains on: the kept tokens, weighted for the soft
    STM; unknown (NaN) for sdft, which trains on the samples it draws while training."""
    if train.get("loss") == "sdft":
        return float("nan")
    if train.get("soft_temperature") is not None:
        tau = result.report["tau"] if result.report["tau"] is not None else policy.tau
        return weighted_token_ppl(scores, result, tau, train["soft_temperature"])
    return kept_token_ppl(scores, result)


def policy_mask_location(scores, result, task, tokenizer) -> dict | None:
    """Where a policy's `MaskResult` masks: inside the answer span the task's checker reads, or in the prose."""
    return mask_location(scores, keeps_of(scores, result), task, tokenizer)


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


def collect_results(run_dir: str | Path, tokenizer=None) -> dict:
    """The results.json document (schema in the README), from the run directory alone: plan.json, the scores,
    the train summaries, the evaluations and the cost sidecars. `tokenizer`: the base model's, if already loaded."""
    run = RunDir(run_dir)
    plan = run.read_plan()
    target, others = plan["target"], plan["others"]
    base = run.accuracies(run.base_eval_dir)
    base_items = {t: run.item_correctness(run.base_eval_dir, t) for t in [target, *others]}
    scores = {s: load_scores(run.scores_file(s)) for s in plan["sources"]}
    costs = run.costs(plan["sources"])
    # loaded only when a mask location needs it
    base_tokenizer = (lambda: tokenizer) if tokenizer is not None else functools.cache(lambda: _base_tokenizer(plan))
    methods, items = {}, {}
    for variant in plan["variants"]:
        name = variant["name"]
        items[name] = {seed: {t: run.item_correctness(run.eval_dir(name, seed), t) for t in [target, *others]}
                       for seed in plan["seeds"]}
        seeds = {str(seed): seed_results(run, name, seed, target, others, base, base_items, items[name][seed])
                 for seed in plan["seeds"]}
        methods[name] = {
            **variant_results(run, plan, variant, scores[variant["source"]], costs, base_tokenizer),
            "seeds": seeds,
            **_aggregate(seeds, [target, *others]),
            "transitions": _mean_transitions(seeds, others),
            "intervals": change_intervals(base_items, list(items[name].values()), target, others),
        }
    for name, versus in contrast_pairs(methods, plan.get("criteria", [])):
        methods[name].setdefault("versus", {})[versus] = contrast_intervals(
            list(items[name].values()), list(items[versus].values()), target, others)
    frontier = gt_frontier(plan)
    if len(frontier) >= 2:  # one rate and the base model would only assume a straight line
        for name in methods.keys() - set(frontier):
            methods[name]["over_gt_frontier"] = frontier_intervals(base_items, items, name, frontier, target, others)
    tau_optima = {}
    for family in sorted({v["method"] for v in plan["variants"]}):
        grid = tau_grid(list(methods), family)
        if len(grid) >= 2:
            tau_optima[family] = optimum_intervals(base_items, items, grid, target, others)
    results = {
        "schema": "robust-sft/results/v1",
        "name": plan["name"],
        "model": plan["base_model"]["path"],
        "model_gguf": plan["base_model"].get("gguf"),  # the .gguf file and its SHA-256, for a GGUF model
        "target": target,
        "others": others,
        "seeds": plan["seeds"],
        "base": {"accuracies": base},
        "percentage_point_tasks": zero_base_tasks(base),  # base accuracy 0: TI/BWT terms in points
        "data": {source: data_results(run, source, sc, costs) for source, sc in scores.items()},
        "methods": methods,
        "tau_optima": tau_optima,
    }
    results["claims"] = judge_claims(results)
    results["criteria"] = judge_criteria(plan.get("criteria", []), methods, tau_optima)
    return results


def data_results(run: RunDir, source: str, scores, costs: dict[str, float]) -> dict:
    """Table 1's row of a training set: its size and perplexity under the base model, and what it cost."""
    summary = summarize(scores)
    entry = {k: summary[k] for k in ("examples", "answer_tokens", "sequence_ppl_mean", "sequence_ppl_var")}
    entry["pct_tokens_ppl_above_2.5"] = summary["pct_tokens_ppl_above"]["2.5"]
    entry["generation_seconds"] = costs.get(source, 0.0)
    entry["scoring_seconds"] = costs.get(f"score_{source}", 0.0)
    report = run.data_report(source)
    if report is not None:
        entry["generation_report"] = report
    return entry


def seed_results(run: RunDir, variant: str, seed: int, target: str, others: list[str], base: dict[str, float],
                 base_items: dict[str, dict[str, bool]], after_items: dict[str, dict[str, bool]]) -> dict:
    """One trained model's accuracies, TI, BWT (relative and in points, with item-bootstrap intervals) and
    sample-wise forgetting against the base model."""
    after = run.accuracies(run.eval_dir(variant, seed))
    train_summary = run.train_summary(variant, seed)
    return {
        "accuracies": after,
        "target_accuracy": after[target],
        "ti": target_improvement(base, after, target),
        "bwt": backward_transfer(base, after, others),
        "intervals": change_intervals(base_items, [after_items], target, others),
        "best_checkpoint": train_summary.get("best_checkpoint"),
        "train_loss": train_summary.get("train_loss"),
        "transitions": {t: sample_transitions(base_items[t], after_items[t]) for t in others},
    }


def change_intervals(base_items: dict[str, dict[str, bool]], seeds_items: list[dict[str, dict[str, bool]]],
                     target: str, others: list[str]) -> dict:
    """TI and BWT of a variant (its seeds averaged per item), relative (ti, bwt) and in points (ti_pp, bwt_pp),
    each {estimate, interval}: paired bootstrap over the test items (report/intervals.py)."""
    def tasks(names):
        return {t: (matrix[0], after) for t, (matrix, after) in paired_items(names, [base_items], seeds_items).items()}

    ti, bwt = change_interval(tasks([target])), change_interval(tasks(others))
    return {"ti": ti["relative"], "bwt": bwt["relative"], "ti_pp": ti["pp"], "bwt_pp": bwt["pp"]}


def paired_items(tasks: list[str], left: list[dict[str, dict[str, bool]]], right: list[dict[str, dict[str, bool]]]
                 ) -> dict[str, tuple]:
    """Per task, the 0/1 (models, items) matrices of two groups of models on the items all of them answered."""
    paired = {}
    for t in tasks:
        ids = common_items(*(m[t] for m in left), *(m[t] for m in right))
        paired[t] = (item_matrix([m[t] for m in left], ids), item_matrix([m[t] for m in right], ids))
    return paired


def contrast_pairs(methods: dict, criteria: list[dict]) -> list[tuple[str, str]]:
    """The (variant, versus) differences results.json holds: every variant against GT, and those criteria name."""
    pairs = [(name, "gt") for name in methods if name != "gt" and "gt" in methods]
    pairs += [(c["method"], c["versus"]) for c in criteria if c.get("versus") and c["method"] in methods
              and c["versus"] in methods]
    return list(dict.fromkeys(pairs))


def contrast_intervals(items_a: list[dict[str, dict[str, bool]]], items_b: list[dict[str, dict[str, bool]]],
                       target: str, others: list[str]) -> dict:
    """Variant A minus variant B in points, on the same test items: the target (ti_pp) and the other tasks'
    mean (bwt_pp), each {estimate, interval} (paired bootstrap over items)."""
    return {"ti_pp": difference_interval(paired_items([target], items_a, items_b)),
            "bwt_pp": difference_interval(paired_items(others, items_a, items_b))}


def gt_frontier(plan: dict) -> list[str]:
    """GT's variants at each learning rate (plain NLL on the GT data): the frontier a method is held against."""
    return [v["name"] for v in plan["variants"] if v["method"] == "gt" and v["source"] == "gt"]


def shared_items(base_items: dict[str, dict[str, bool]], items: dict, models: list[str], task: str) -> tuple:
    """(base (items,), [model (seeds, items), ...]) 0/1 arrays of `task` on the items the base model and every
    seed of every model answered: the input of the joint bootstraps in report/intervals.py."""
    ids = common_items(base_items[task], *(seed_items[task] for m in models for seed_items in items[m].values()))
    return (item_matrix([base_items[task]], ids)[0],
            [item_matrix([seed_items[task] for seed_items in items[m].values()], ids) for m in models])


def frontier_intervals(base_items: dict[str, dict[str, bool]], items: dict, method: str, frontier: list[str],
                       target: str, others: list[str]) -> dict:
    """`method`'s TI minus the TI of GT's learning-rate frontier at its BWT, in points, {estimate, interval,
    frontier} (report/intervals.py: frontier_gap_interval), on the items every model answered."""
    models = [method, *frontier]
    return {**frontier_gap_interval(shared_items(base_items, items, models, target),
                                    {t: shared_items(base_items, items, models, t) for t in others}),
            "frontier": frontier}


def optimum_intervals(base_items: dict[str, dict[str, bool]], items: dict, grid: list[tuple[float, str]],
                      target: str, others: list[str]) -> dict:
    """The tau of a family's grid ([(tau, variant), ...]) with the highest TI + BWT in points, with its interval
    and every tau's TI + BWT (report/intervals.py: optimum_interval)."""
    models = [name for _, name in grid]
    return optimum_interval(shared_items(base_items, items, models, target),
                            {t: shared_items(base_items, items, models, t) for t in others}, [tau for tau, _ in grid])


def variant_results(run: RunDir, plan: dict, variant: dict, scores, costs: dict[str, float], base_tokenizer) -> dict:
    """What a variant trains on: its policy as plan.json records it (the first seed's), the tokens it keeps and
    their perplexity, where its mask falls, and the cost of its data."""
    first_seed = plan["seeds"][0]
    trained = run.train_summary(variant["name"], first_seed)
    policy = MaskPolicy(**variant["seeds"][str(first_seed)]["policy"])
    target = get_task(plan["target"], **plan["task_kwargs"].get(plan["target"], {}))
    hindsight, answer_aware = policy.kind == "hindsight", policy.kind == "answer_aware"
    # once: the trained ppl and the diagnostic
    masked = mask_scores(scores, policy, where=str(run.scores_file(variant["source"])),
                         hinted_scores=run.hinted_scores_file(variant["source"]) if hindsight else None,
                         task=target if answer_aware else None, tokenizer=base_tokenizer() if answer_aware else None,
                         departure_file=run.departure_file(variant["source"]) if policy.kind == "keep_departure"
                         else None)
    location = None
    if policy.kind != "none":
        location = policy_mask_location(scores, masked, target, base_tokenizer())
    data_cost = costs.get(variant["source"], 0.0) + (
        costs.get("score_gt", 0.0) if variant["method"] in MASKING_METHODS else 0.0) + (
        costs.get("score_gt_hinted", 0.0) if hindsight else 0.0)
    return {
        "method": variant["method"],
        "source": variant["source"],
        # tau auto: the value the rule chose, and the rule (the plan holds "auto")
        "tau": masked.report["tau"] if variant["tau"] == "auto" else variant["tau"],
        "tau_rule": masked.report.get("tau_rule"),
        "loss": variant["loss"],
        "learning_rate": variant["learning_rate"],
        "lr_scale": variant["lr_scale"],
        "masked_fraction": trained["mask_report"]["masked_fraction"],
        "trained_tokens": trained["trained_tokens"],
        "train_examples": trained["n_train_examples"],
        "trained_token_ppl": trained_ppl(scores, masked, policy, variant["seeds"][str(first_seed)]["train"]),
        "data_cost_seconds": data_cost,
        "mask_location": location,
    }


def _base_tokenizer(plan: dict):
    return load_tokenizer(plan["base_model"]["path"])


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
