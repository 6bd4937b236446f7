"""`robust-sft run --dry_run`: the stages and artifacts a config would produce, without loading any model."""

from __future__ import annotations

from robust_sft.report.criteria import criterion_subject


def describe_plan(exp) -> str:
    """The stages and artifacts of an `Experiment`, with example counts where knowable."""
    c, run_dir = exp.config, exp.run_dir
    tasks = [c.target, *exp.other_tasks()]
    lines = [f"experiment {c.name!r} in {exp.dir}",
             f"  model: {c.model}" + (f" ({exp.source.description(c.world)})" if exp.source else ""),
             f"  target: {c.target}; other tasks: {', '.join(tasks[1:])}",
             f"  seeds: {c.seeds}; epoch selection: "
             + ("best target validation accuracy" if c.select_best_epoch else "last epoch"),
             f"  (variant, seed) units run {c.executor.describe()}"]
    try:
        n_train = len(exp.load_examples(c.target, "train", c.train_pool or c.train_limit))
        lines.append(f"  target train examples: {n_train}" + ("" if c.train_pool is None else
                     f" prepared; each seed trains on its own draw of {min(n_train, c.train_limit)}"))
    except Exception as err:  # e.g. a Hub dataset while offline: the plan is still valid
        lines.append(f"  target train examples: unknown here ({type(err).__name__}: {str(err)[:120]})")
    lines.append("stages:")
    lines.append(f"  plan      {run_dir.plan_file}  [base model, tasks, every variant's policy and options]")
    for source in exp.sources:
        made = {"gt": "from the target's references", "oracle": "the target's answers in the model's own style"
                }.get(source, f"generated ({source}), verified")
        lines.append(f"  data      {run_dir.data_file(source)}  [{made}]")
    for source in exp.hinted_sources():
        lines.append(f"  data      {run_dir.hinted_data_file(source)}  [the same rows with the target's hints]")
    if c.train_pool is not None:
        for seed in c.seeds:
            lines.append(f"  data      {run_dir.seed_problems_file(seed)}  [the problems seed {seed} trains on]")
    for source in exp.sources:
        lines.append(f"  score     {run_dir.scores_file(source)}")
    for source in exp.hinted_sources():
        lines.append(f"  score     {run_dir.hinted_scores_file(source)}  [with the hints in the prompts: hindsight]")
    lines.append(f"  evaluate  {run_dir.base_eval_dir}  [{len(tasks)} tasks]")
    for v in exp.variants:
        overrides = ", ".join(f"{k}={val}" for k, val in v.train_overrides)
        for seed in c.seeds:
            lines.append(f"  train     {run_dir.model_dir(v.name, seed)}  [{v.source}; {overrides}]")
            lines.append(f"  evaluate  {run_dir.eval_dir(v.name, seed)}")
    lines.append(f"  report    {run_dir.results_file}, {run_dir.report_md_file}, {run_dir.figures_dir}/")
    for criterion in c.criteria:
        lines.append(f"  criterion ({criterion['id']}) {criterion_subject(criterion)}: {criterion['quantity']} "
                     f"{criterion['holds_if']}  [{criterion['claim']}]")
    lines.append(f"{len(exp.variants)} variants x {len(c.seeds)} seeds = "
                 f"{len(exp.variants) * len(c.seeds)} fine-tuning runs")
    return "\n".join(lines)
