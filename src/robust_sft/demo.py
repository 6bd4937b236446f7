"""`robust-sft demo`: the core pipeline end to end on a small local model, no download needed.

score -> stats -> mask -> train (GT and STM through the same trainer) -> a short summary.
"""

from __future__ import annotations

import json
from pathlib import Path

from robust_sft.artifacts import write_json, write_jsonl


def _demo_rows(n: int = 64) -> list[dict]:
    from robust_sft.tiny import training_corpus

    lines = training_corpus(3 * n, seed=11)
    return [{"id": f"ex{i}", "prompt": lines[i], "answer": lines[n + i] + " " + lines[2 * n + i]} for i in range(n)]


def run_demo(out: str | Path) -> dict:
    from robust_sft.masking import MaskPolicy
    from robust_sft.masked_data import write_masked
    from robust_sft.scoring import ScoreConfig, load_scores, score
    from robust_sft.stats import format_table, plot_histogram, summarize
    from robust_sft.tiny import save_tiny
    from robust_sft.training import TrainConfig, train

    out = Path(out)
    model_dir = out / "model"
    if not (model_dir / "config.json").exists():
        save_tiny(model_dir, hidden_size=64, num_layers=2, num_heads=4)
    data = out / "data" / "gt.jsonl"
    if not data.exists():
        write_jsonl(data, _demo_rows())
    scores_path = out / "scores" / "gt.parquet"
    if not scores_path.exists():
        score(ScoreConfig(model=str(model_dir), data=str(data), out=str(scores_path)))
    scores = load_scores(scores_path)
    summary = summarize(scores)
    plot_histogram({"GT": scores}, out / "figures" / "token_ppl_hist.png", tau=None)
    print(format_table({"GT": summary}))

    # A random tiny model finds every token surprising, so mask by ratio (20%, the paper's sweet spot).
    policy = MaskPolicy(kind="ratio", ratio=0.2)
    mask_report = write_masked(str(scores_path), str(out / "data" / "stm.parquet"), policy)
    results = {"stats": summary, "mask": mask_report, "train": {}}
    for method, kwargs in {"gt": {"mask": "none"}, "stm": {"mask": "ratio", "ratio": 0.2}}.items():
        run_dir = out / "models" / method
        if not (run_dir / "train_summary.json").exists():
            train(TrainConfig(model=str(model_dir), data=str(scores_path), output_dir=str(run_dir),
                              num_train_epochs=1, learning_rate=1e-3, per_device_train_batch_size=8, **kwargs))
        trained = json.loads((run_dir / "train_summary.json").read_text())
        results["train"][method] = {k: trained[k] for k in ("train_loss", "trained_tokens", "mask_report")}
    write_json(out / "results.json", results)
    print(f"\nmasked {100 * mask_report['masked_fraction']:.1f}% of answer tokens (tau={mask_report['tau']:.3g}); "
          f"trained GT on {results['train']['gt']['trained_tokens']} and STM on "
          f"{results['train']['stm']['trained_tokens']} tokens. Artifacts in {out}")
    return results
