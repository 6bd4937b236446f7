"""Base accuracies of a model on the drill tasks, per task and split, with a few completions shown.

    PYTHONPATH=src python docs/real/probes/base_accuracy.py --model DIR --out runs/real-probe [--limit N]

Writes accuracies.json and per-sample logs under --out (robust_sft.evaluation.evaluate_model) and prints a table.
"""

import argparse
import json
from pathlib import Path

import robust_sft.tasks.drills  # noqa: F401  (registers the drills when the installed plug-ins do not)
from robust_sft.evaluation import evaluate_model

parser = argparse.ArgumentParser()
parser.add_argument("--model", required=True)
parser.add_argument("--out", required=True)
parser.add_argument("--limit", type=int, default=None, help="examples per task (default: all)")
parser.add_argument("--tasks", nargs="+", default=list(robust_sft.tasks.drills.DRILL_TASKS))
parser.add_argument("--split", default="test")
args = parser.parse_args()
accuracies = {}
for task in args.tasks:  # one at a time, so a failing task loses nothing measured before it
    accuracies |= evaluate_model(args.model, [task], split=args.split, limit=args.limit, log_dir=f"{args.out}/{task}",
                                 batch_size=64, progress=False)
    print(task, accuracies[task], flush=True)
print(json.dumps(accuracies, indent=1))
for task in args.tasks:
    log = next(Path(args.out, task).glob('*.jsonl'), Path('-'))
    if log.exists():
        rows = [json.loads(line) for line in log.read_text().splitlines()][:3]
        print(task, [str(r)[:200] for r in rows])
