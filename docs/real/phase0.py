"""Phase 0 of issue 17: the paper's MBPP training data (374 conversations) under SmolLM2-135M-Instruct.

    OMP_NUM_THREADS=1 PYTHONPATH=src python docs/real/phase0.py [--paper_data ../shared/paper-data]

Makes, under docs/real/phase0/ (every step is skipped when its output exists, so a killed run resumes):

  work/gt.jsonl, work/gt.parquet            `robust-sft data` and `robust-sft score`: the GT conversations, scored
  work/greedy/                              `robust-sft evaluate` on the first --probe train problems: the model's
                                            greedy answers (chat template, MBPP's stop strings), checked
  work/greedy.jsonl, work/greedy.parquet    those answers as training rows, scored (unverified: a reference row)
  work/self_output*.jsonl, work/rephrase*   `robust-sft generate` on the first --so_limit prompts (--so_n samples
                                            each) and the first --re_limit prompts, and their scores
  work/argmax.json                          per GT example, the model's top-1 token at every answer position given
                                            the GT prefix (one forward pass): the departure token
  phase0.json, tables.md                    Table 1, shares above tau by token class, departure and end-of-turn
  inspect.html                              `robust-sft inspect` of the scored files

The departure token of an example is the first answer token where the GT leaves the model's own greedy answer to
the same prompt. Greedy decoding picks the top-1 token at each step, so up to the departure the greedy answer and
the GT share their prefix, and the departure is the first answer position where the GT token is not the model's
top-1 given the GT prefix: one forward pass per example finds it for all 374 (7 minutes of one core here), where
generating 374 greedy answers would take about 55 (the probe: 176 s for 20). The --probe greedy answers check
the two against each other.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

from robust_sft.core.artifacts import write_json, write_jsonl, write_text
from robust_sft.masking.diagnostics import TOKEN_CLASSES, first_difference, token_classes
from robust_sft.models.gguf import smollm2_gguf
from robust_sft.scoring.files import load_scores, sequence_perplexity
from robust_sft.scoring.stats import summarize

TAUS = (2.5, 10, 100)
# The authors' Llama-3-8B-Instruct figures on MBPP train (PAPER.md): sequence ppl mean (variance).
PAPER = {"GT": (4.83, 7.04), "Rephrase": (1.69, 0.16), "Self-Output": (1.16, 0.01)}
PAPER_PCT_ABOVE_2_5 = 21.2

parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
parser.add_argument("--paper_data", default="../shared/paper-data")
parser.add_argument("--out", default="docs/real/phase0")
# The defaults are what fitted this machine's budget (about 40 minutes of one core for the whole of Phase 0; see
# docs/real/README.md): a batch of 32 sampled answers of up to 512 tokens took about 5 minutes of one core, so
# Self-Output at n=4 on all 374 prompts would take about 4 hours (at the paper's n=32 about 30), Rephrase about 1.
parser.add_argument("--probe", type=int, default=20, help="greedy answers generated for the first K prompts")
parser.add_argument("--so_n", type=int, default=4, help="Self-Output samples per prompt (the paper: 32)")
parser.add_argument("--so_limit", type=int, default=20, help="Self-Output on the first K prompts (0: all)")
parser.add_argument("--re_limit", type=int, default=20, help="Rephrase on the first K prompts (0: all)")
args = parser.parse_args()

OUT = Path(args.out)
WORK = OUT / "work"
WORK.mkdir(parents=True, exist_ok=True)
MODEL = str(smollm2_gguf())
TRAIN = f"{args.paper_data}/mbpp_ground_truth_train.jsonl"
ENV = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
TIMES_PATH = WORK / "seconds.json"
TIMES = json.loads(TIMES_PATH.read_text()) if TIMES_PATH.exists() else {}


def cli(name: str, *argv: str) -> None:
    """One `robust-sft` verb in a subprocess (one thread), timed into work/seconds.json."""
    start = time.perf_counter()
    print("+ robust-sft", " ".join(argv), flush=True)
    subprocess.run([sys.executable, "-m", "robust_sft.cli", *argv], check=True, env=ENV)
    TIMES[name] = round(time.perf_counter() - start, 1)
    write_json(TIMES_PATH, TIMES)


def step(output: Path, name: str, *argv: str) -> bool:
    """Run a verb unless its output exists; True when the output is there afterwards."""
    if not output.exists():
        cli(name, *argv)
    return output.exists()


def generated(method: str, tag: str, limit: int | None, n: int = 1) -> Path | None:
    """Self-Output or Rephrase rows (`robust-sft generate`), scored; None when no sample passed the checker."""
    rows = WORK / f"{tag}.jsonl"
    report = rows.with_suffix(".report.json")
    if not report.exists():
        extra = ["--limit", str(limit)] if limit else []
        extra += ["--n", str(n)] if method == "self_output" else []
        try:
            cli(tag, "generate", "--model", MODEL, "--task", "mbpp", "--task_path", TRAIN, "--split", "train",
                "--method", method, "--out", str(rows), *extra)
        except subprocess.CalledProcessError:
            if not report.exists():  # a set where nothing passed still writes its report
                raise
    if not rows.exists():
        return None
    scored = rows.with_suffix(".parquet")
    step(scored, f"score {tag}", "score", "--model", MODEL, "--data", str(rows), "--out", str(scored), "--no_progress")
    return scored


# ------------------------------------------------------------------------------------------------- the steps

step(WORK / "gt.jsonl", "data", "data", "--task", "mbpp", "--split", "train", "--task_path", TRAIN,
     "--out", str(WORK / "gt.jsonl"))
step(WORK / "gt.parquet", "score gt", "score", "--model", MODEL, "--data", str(WORK / "gt.jsonl"),
     "--out", str(WORK / "gt.parquet"), "--no_progress")

greedy_dir = WORK / "greedy"
if not (greedy_dir / "accuracies.json").exists():
    cli("greedy probe", "evaluate", "--model", MODEL, "--tasks", "mbpp", "--split", "train", "--limit",
        str(args.probe), "--task_paths", f"mbpp={TRAIN}", "--out", str(greedy_dir))
if not (WORK / "greedy.jsonl").exists():
    log = next(greedy_dir.glob("*.jsonl"))
    write_jsonl(WORK / "greedy.jsonl", [{"id": r["id"], "prompt": r["prompt"], "answer": r["completion"],
                                         "correct": r["correct"]}
                                        for r in map(json.loads, log.read_text().splitlines())])
step(WORK / "greedy.parquet", "score greedy", "score", "--model", MODEL, "--data", str(WORK / "greedy.jsonl"),
     "--out", str(WORK / "greedy.parquet"), "--no_progress")

so_tag = f"self_output_n{args.so_n}" + (f"_first{args.so_limit}" if args.so_limit else "")
re_tag = "rephrase" + (f"_first{args.re_limit}" if args.re_limit else "")
runs = {"Self-Output": generated("self_output", so_tag, args.so_limit, args.so_n),
        "Rephrase": generated("rephrase", re_tag, args.re_limit)}


def argmax_pass(path: Path) -> dict:
    """Per GT example: the model's top-1 token (and its probability) at each scored answer position, given the GT
    prefix, with the NLL of the GT token recomputed from the same logits (a check on the score file)."""
    if path.exists():
        return json.loads(path.read_text())
    import torch

    from robust_sft.models.loading import load_model

    torch.set_num_threads(1)
    start = time.perf_counter()
    scores = load_scores(WORK / "gt.parquet")
    model = load_model(MODEL, dtype="float32", device="cpu")
    out = {}
    with torch.inference_mode():
        for i, example_id in enumerate(scores.ids):
            ids = torch.as_tensor(scores.input_ids[i], dtype=torch.long)[None]
            logits = model(input_ids=ids).logits[0].float()
            pos = np.flatnonzero(scores.answer_mask[i] & ~np.isnan(scores.token_nll[i]))
            at = torch.as_tensor(pos - 1)  # the logits at position p-1 predict token p
            logp = torch.log_softmax(logits[at], dim=-1)
            top = logp.argmax(-1)
            targets = ids[0, torch.as_tensor(pos)]
            six = lambda t: [float(f"{x:.6g}") for x in t.tolist()]  # noqa: E731  (6 digits keep the file small)
            out[example_id] = {"top1": top.tolist(), "top1_p": six(logp.max(-1).values.exp()),
                               "nll": six(-logp.gather(-1, targets[:, None]).squeeze(-1))}
    TIMES["argmax pass"] = round(time.perf_counter() - start, 1)
    write_json(TIMES_PATH, TIMES)
    write_json(path, out)
    return out


top1 = argmax_pass(WORK / "argmax.json")

# ------------------------------------------------------------------------------------------------- analysis

from robust_sft.models.loading import load_tokenizer  # noqa: E402
from robust_sft.report.inspect import token_strings  # noqa: E402

tokenizer = load_tokenizer(MODEL)
special = set(tokenizer.all_special_ids)


def quantiles(values, qs=(0.1, 0.25, 0.5, 0.75, 0.9)) -> dict:
    values = np.asarray(values, np.float64)
    return {str(q): float(np.quantile(values, q)) for q in qs} if len(values) else {}


def answer_tokens(scores, i):
    """(ids, nll, texts, classes) of example i's scored answer tokens."""
    pos = np.flatnonzero(scores.answer_mask[i] & ~np.isnan(scores.token_nll[i]))
    ids = scores.input_ids[i][pos]
    strings = token_strings(tokenizer, ids)
    texts = [strings[int(t)] for t in ids]
    classes = token_classes(texts, [int(t) in special for t in ids])
    return ids, scores.token_nll[i][pos].astype(np.float64), texts, classes


def by_class(scores) -> dict:
    """Per token class: tokens, share of answer tokens, % of the class above each tau, share of all tokens above
    each tau that is of this class; and the end-of-turn token's NLLs."""
    nll_of = {c: [] for c in TOKEN_CLASSES}
    texts_above = {c: {} for c in TOKEN_CLASSES}  # class -> token text -> count above tau 2.5
    for i in range(len(scores)):
        _, nll, texts, classes = answer_tokens(scores, i)
        for c, v, text in zip(classes, nll, texts):
            nll_of[c].append(v)
            if v > math.log(2.5):
                texts_above[c][text] = texts_above[c].get(text, 0) + 1
    total = sum(len(v) for v in nll_of.values())
    above_total = {t: sum(int((np.asarray(v) > math.log(t)).sum()) for v in nll_of.values()) for t in TAUS}
    table = {}
    for c, values in nll_of.items():
        v = np.asarray(values)
        table[c] = {"tokens": len(v), "pct_of_answer_tokens": 100 * len(v) / total,
                    "median_nll": float(np.median(v)) if len(v) else None,
                    **{f"pct_above_{t}": (100 * float((v > math.log(t)).mean()) if len(v) else None) for t in TAUS},
                    **{f"pct_of_tokens_above_{t}": 100 * int((v > math.log(t)).sum()) / max(above_total[t], 1)
                       for t in TAUS},
                    "commonest_above_2.5": sorted(texts_above[c].items(), key=lambda kv: (-kv[1], kv[0]))[:6]}
    eot = np.asarray(nll_of["end_of_turn"])
    end_of_turn = {"tokens": len(eot), "median_nll": float(np.median(eot)) if len(eot) else None,
                   "median_p": float(np.exp(-np.median(eot))) if len(eot) else None,
                   "nll_quantiles": quantiles(eot), **{f"pct_above_{t}": 100 * float((eot > math.log(t)).mean())
                                                        for t in TAUS if len(eot)}}
    return {"classes": table, "end_of_turn": end_of_turn}


def table1_row(scores, ids=None) -> dict:
    keep = [i for i, e in enumerate(scores.ids) if ids is None or e in ids]
    ppl = np.array([sequence_perplexity(scores.answer_nll(i)) for i in keep])
    tokens = np.concatenate([scores.answer_nll(i) for i in keep])
    no_eot = []  # the same without the end-of-turn token (a stop string cuts greedy answers where it is unlikely)
    for i in keep:
        pos = np.flatnonzero(scores.answer_mask[i] & ~np.isnan(scores.token_nll[i]))
        content = np.array([int(t) not in special for t in scores.input_ids[i][pos]], bool)
        no_eot.append(sequence_perplexity(scores.token_nll[i][pos][content]))
    return {"examples": len(keep), "answer_tokens": int(len(tokens)), "sequence_ppl_mean": float(ppl.mean()),
            "sequence_ppl_var": float(ppl.var()), "sequence_ppl_median": float(np.median(ppl)),
            "sequence_ppl_mean_without_end_of_turn": float(np.nanmean(no_eot)),
            **{f"pct_tokens_above_{t}": 100 * float((tokens > math.log(t)).mean()) for t in TAUS}}


gt = load_scores(WORK / "gt.parquet")
files = {"GT": gt, "Greedy (first %d, unverified)" % args.probe: load_scores(WORK / "greedy.parquet")}
for name, path in runs.items():
    if path is not None:
        files[f"{name} ({path.stem})"] = load_scores(path)

table1 = {}
for name, scores in files.items():
    table1[name] = {**table1_row(scores), "paper": PAPER.get(name.split(" (")[0])}
    if name != "GT":
        table1[name]["gt_same_prompts"] = table1_row(gt, set(scores.ids))
    assert abs(table1[name]["sequence_ppl_mean"] - summarize(scores, TAUS)["sequence_ppl_mean"]) < 1e-9

# The tau at which STM masks the paper's share of GT answer tokens (21.2 %), and its 20-25 % "sweet spot".
gt_tokens = np.concatenate([gt.answer_nll(i) for i in range(len(gt))]).astype(np.float64)
tau_for_share = {str(share): float(np.exp(np.quantile(gt_tokens, 1 - share / 100)))
                 for share in (20, PAPER_PCT_ABOVE_2_5, 25)}

reports = {p.stem.replace(".report", ""): json.loads(p.read_text()) for p in sorted(WORK.glob("*.report.json"))}
greedy_acc = json.loads((greedy_dir / "accuracies.json").read_text())
classes = {name: by_class(scores) for name, scores in files.items()}

# The departure token: first answer position where the GT token is not the model's top-1.
departures, nll_check = [], 0.0
for i, example_id in enumerate(gt.ids):
    ids, nll, texts, cls = answer_tokens(gt, i)
    a = top1[example_id]
    nll_check = max(nll_check, float(np.max(np.abs(np.asarray(a["nll"]) - nll))))
    d = first_difference([int(t) for t in ids], a["top1"])
    if d is None:
        departures.append({"id": example_id, "position": None, "answer_tokens": len(ids)})
        continue
    model_text = token_strings(tokenizer, [a["top1"][d]])[a["top1"][d]]
    departures.append({"id": example_id, "position": d, "answer_tokens": len(ids), "relative": d / len(ids),
                       "gt_token": texts[d], "gt_nll": float(nll[d]), "class": cls[d], "model_token": model_text,
                       "model_p": a["top1_p"][d],
                       "nll_rest_mean": float(nll[d + 1:].mean()) if d + 1 < len(nll) else None,
                       "nll_before_mean": float(nll[:d].mean()) if d else None})
found = [d for d in departures if d["position"] is not None]
dep_nll = np.array([d["gt_nll"] for d in found])
all_nll = np.concatenate([gt.answer_nll(i) for i in range(len(gt))])
departure = {
    "examples": len(departures), "with_departure": len(found),
    "position_quantiles": quantiles([d["position"] for d in found]),
    "pct_at_first_token": 100 * float(np.mean([d["position"] == 0 for d in found])),
    "relative_position_quantiles": quantiles([d["relative"] for d in found]),
    "gt_nll_quantiles": quantiles(dep_nll), "gt_ppl_median": float(np.exp(np.median(dep_nll))),
    **{f"pct_above_{t}": 100 * float((dep_nll > math.log(t)).mean()) for t in TAUS},
    "all_gt_tokens_pct_above": {str(t): 100 * float((all_nll > math.log(t)).mean()) for t in TAUS},
    "class_counts": {c: sum(d["class"] == c for d in found) for c in TOKEN_CLASSES},
    "model_p_quantiles": quantiles([d["model_p"] for d in found]),
    "median_mean_nll_before": float(np.median([d["nll_before_mean"] for d in found
                                                if d["nll_before_mean"] is not None])),
    "median_mean_nll_after": float(np.median([d["nll_rest_mean"] for d in found if d["nll_rest_mean"] is not None])),
    "max_abs_nll_difference_vs_score_file": nll_check,
    "most_common": sorted({(d["gt_token"], d["model_token"]) for d in found},  # by count, ties by text
                          key=lambda pair: (-sum((d["gt_token"], d["model_token"]) == pair for d in found), pair))[:12],
}
departure["most_common"] = [{"gt": g, "model": m, "count": sum((d["gt_token"], d["model_token"]) == (g, m)
                                                               for d in found)} for g, m in departure["most_common"]]

# The check: departures from the top-1 pass against real greedy answers (the --probe ones), token for token.
from robust_sft.data.examples import Example, tokenize_examples  # noqa: E402

greedy_rows = [json.loads(line) for line in (WORK / "greedy.jsonl").read_text().splitlines()]
tok = tokenize_examples(tokenizer, [Example(r["id"], [{"role": "user", "content": r["prompt"]},
                                                      {"role": "assistant", "content": r["answer"]}])
                                    for r in greedy_rows], 4096, progress=False)
by_id = {d["id"]: d for d in departures}
gt_index = {e: i for i, e in enumerate(gt.ids)}
check = []
for r, t in zip(greedy_rows, tok):
    greedy_ids = [x for x, m in zip(t.input_ids, t.answer_mask) if m]
    gt_ids = [int(x) for x in answer_tokens(gt, gt_index[r["id"]])[0]]
    d_gen = first_difference(gt_ids, greedy_ids)
    check.append({"id": r["id"], "from_generation": d_gen, "from_top1": by_id[r["id"]]["position"]})
agree = sum(c["from_generation"] == c["from_top1"] for c in check)

result = {
    "model": str(MODEL), "data": TRAIN, "taus": TAUS, "seconds": TIMES,
    "paper_llama3_8b": {"table1": PAPER, "pct_tokens_above_2.5": PAPER_PCT_ABOVE_2_5},
    "table1": table1, "gt_tau_for_pct_masked": tau_for_share, "generation_reports": reports,
    "greedy_probe_accuracy": greedy_acc,
    "token_classes": classes, "departure": departure,
    "departure_check": {"examples": len(check), "agree": agree, "rows": check},
    "departures": departures,
}
write_json(OUT / "phase0.json", result)


# ------------------------------------------------------------------------------------------------- tables

def f(x, digits=2):
    return "-" if x is None else f"{x:.{digits}f}"


lines = ["# Phase 0: the paper's MBPP training data under SmolLM2-135M-Instruct", "",
         "Made by `docs/real/phase0.py`; numbers in `phase0.json`. Paper: Llama-3-8B-Instruct (PAPER.md).", "",
         "## Table 1: sequence perplexity (exp of mean answer-token NLL, end-of-turn included), over examples", "",
         "| data | examples | mean (var) | median | mean without end-of-turn | % tokens > 2.5 | > 10 | > 100 "
         "| GT on the same prompts: mean (var) "
         "| Llama-3-8B (paper): mean (var) |", "|---|---|---|---|---|---|---|---|---|---|"]
for name, row in table1.items():
    same = row.get("gt_same_prompts")
    paper = row["paper"]
    lines.append(f"| {name} | {row['examples']} | {f(row['sequence_ppl_mean'])} ({f(row['sequence_ppl_var'])}) "
                 f"| {f(row['sequence_ppl_median'])} | {f(row['sequence_ppl_mean_without_end_of_turn'])} "
                 f"| {f(row['pct_tokens_above_2.5'], 1)} "
                 f"| {f(row['pct_tokens_above_10'], 1)} | {f(row['pct_tokens_above_100'], 1)} "
                 f"| {(f(same['sequence_ppl_mean']) + ' (' + f(same['sequence_ppl_var']) + ')') if same else '-'} "
                 f"| {(f(paper[0]) + ' (' + f(paper[1]) + ')') if paper else '-'} |")
lines += ["", f"Paper: {PAPER_PCT_ABOVE_2_5} % of GT answer tokens above tau 2.5. Here STM masks 20 / "
          f"{PAPER_PCT_ABOVE_2_5} / 25 % of the GT answer tokens at tau "
          + " / ".join(f(v) for v in tau_for_share.values()) + ".", "",
          "Generation (`robust-sft generate`, T 0.7, top_p 0.95, 512 new tokens, no stop strings):", ""]
lines += ["| set | prompts | kept | samples | correct samples | seconds |", "|---|---|---|---|---|---|"]
for tag, rep in reports.items():
    lines.append(f"| {tag} | {rep['prompts']} | {rep['kept']} | {rep.get('samples', rep['prompts'])} "
                 f"| {rep.get('correct_samples', rep['kept'])} | {rep['seconds']:.0f} |")
acc = greedy_acc["mbpp"]
lines += ["", f"Greedy answers (`robust-sft evaluate`, first {args.probe} train problems, MBPP's stop strings): "
          f"{acc['n_correct']} of {acc['n']} pass.", "",
          "Seconds of one core per step (`work/seconds.json`): " + ", ".join(
              f"{k} {v:.0f}" for k, v in TIMES.items() if isinstance(v, (int, float)))
          + f"; total {sum(v for v in TIMES.values() if isinstance(v, (int, float))) / 60:.1f} min.", ""]
for name, data in classes.items():
    lines += [f"## Token classes: {name}", "",
              "| class | tokens | % of answer tokens | median NLL | % of class > 2.5 | > 10 | > 100 "
              "| % of all tokens > 2.5 | > 10 | > 100 |", "|---|---|---|---|---|---|---|---|---|---|"]
    for c, row in data["classes"].items():
        lines.append(f"| {c} | {row['tokens']} | {f(row['pct_of_answer_tokens'], 1)} | {f(row['median_nll'])} | "
                     + " | ".join(f(row[f"pct_above_{t}"], 1) for t in TAUS) + " | "
                     + " | ".join(f(row[f"pct_of_tokens_above_{t}"], 1) for t in TAUS) + " |")
    lines += ["", "Commonest token texts above tau 2.5, per class: " + "; ".join(
        f"{c}: " + ", ".join(f"{t!r} x{n}" for t, n in row["commonest_above_2.5"])
        for c, row in data["classes"].items() if row["commonest_above_2.5"]) + "."]
    e = data["end_of_turn"]
    lines += ["", f"End-of-turn: {e['tokens']} tokens, median NLL {f(e['median_nll'])} (p {f(e['median_p'])}), "
              f"quantiles {', '.join(q + ': ' + f(v) for q, v in e['nll_quantiles'].items())}.", ""]
d = departure
lines += ["## The departure token (GT vs the model's greedy answer)", "",
          f"{d['with_departure']} of {d['examples']} GT answers leave the model's greedy path (the others are the "
          "model's own greedy answer token for token).", "",
          "- position in the answer: quantiles "
          f"{', '.join(q + ': ' + f(v, 0) for q, v in d['position_quantiles'].items())}; "
          f"{f(d['pct_at_first_token'], 1)} % at the first answer token",
          f"- relative position: {', '.join(q + ': ' + f(v) for q, v in d['relative_position_quantiles'].items())}",
          f"- NLL of the GT token there: {', '.join(q + ': ' + f(v) for q, v in d['gt_nll_quantiles'].items())} "
          f"(median perplexity {f(d['gt_ppl_median'])}); above tau 2.5 / 10 / 100: "
          + " / ".join(f(d[f'pct_above_{t}'], 1) for t in TAUS) + " % (all GT answer tokens: "
          + " / ".join(f(v, 1) for v in d["all_gt_tokens_pct_above"].values()) + " %)",
          "- the model's own token there has p: "
          f"{', '.join(q + ': ' + f(v) for q, v in d['model_p_quantiles'].items())}",
          f"- mean NLL of an answer's tokens before the departure / after it, median over examples: "
          f"{f(d['median_mean_nll_before'])} / {f(d['median_mean_nll_after'])}",
          "- class of the departure token: " + ", ".join(f"{c} {n}" for c, n in d["class_counts"].items()),
          "- most common (GT token, model's token): " + ", ".join(f"({m['gt']!r}, {m['model']!r}) x{m['count']}"
                                                                  for m in d["most_common"]),
          f"- check: on the {len(check)} greedy answers generated, the departure from the generated tokens equals "
          f"the top-1 pass's in {agree} of {len(check)}; the top-1 pass's NLLs differ from the score file's by at "
          f"most {nll_check:.2g}", ""]
write_text(OUT / "tables.md", "\n".join(lines))
print("\n".join(lines))

# ------------------------------------------------------------------------------------------------- inspect page

page = OUT / "inspect.html"
if not page.exists():
    named = [f"GT={WORK / 'gt.parquet'}"]
    for name, path in runs.items():
        if path is not None:
            named.append(f"{name}={path}")
    cli("inspect", "inspect", "--scores", *named, "--span_task", "mbpp", "--tau", "2.5", "--out", str(page),
        "--title", "The paper's MBPP training data under SmolLM2-135M-Instruct")
print(f"{page}: {page.stat().st_size / 1e6:.2f} MB")
