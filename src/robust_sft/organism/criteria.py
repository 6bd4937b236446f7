"""World v5's design criteria (docs/organism_v5.md) as checks of a build's report (its base_eval.json).

Fixed before any v5 build ran. Each check returns the misses as sentences (empty: the criterion holds), so a test
or the kernel table can say which task and which figure broke it. Not part of the organism's definition key.
"""

from __future__ import annotations

REBUILD_TOLERANCE = 0.05  # A1: every task within this of the shipped build (failed on other CPUs: docs/organism_v5.md)
DEPARTURE_P = (0.01, 0.3)  # B1: median p of the departure token over the target's training GT
TARGET_RANGE = (0.15, 0.45)  # B2: base target accuracy
OTHER_RANGE = (0.40, 0.90)  # B3: base accuracy of each other task
MIN_TEST_ITEMS = 300  # B3: test items per other task
TAUGHT_MIN = 0.95  # B4: accuracy on the items pretraining teaches, per other task
HINTED_MIN = 0.80  # B5: target accuracy with the answer hinted in the prompt
REWRITE_MIN = 0.5  # C3: greedy rewrites of GT answers that are correct


def _outside(value: float, bounds: tuple[float, float]) -> bool:
    return not bounds[0] <= value <= bounds[1]


def design_misses(report: dict) -> list[str]:
    """B1-B5 and C3's rewrite check on one build's report: each criterion it misses, with the figure."""
    misses = []
    target = report["target"]
    departure = report["departure_p"]["median"]
    if _outside(departure, DEPARTURE_P):
        misses.append(f"B1 departure-token median p {departure:.2g} outside {DEPARTURE_P}")
    if _outside(report["accuracy"][target], TARGET_RANGE):
        misses.append(f"B2 {target} {report['accuracy'][target]:.3f} outside {TARGET_RANGE}")
    for task, accuracy in report["accuracy"].items():
        if task == target:
            continue
        if report["n"][task] < MIN_TEST_ITEMS:
            misses.append(f"B3 {task} has {report['n'][task]} test items (< {MIN_TEST_ITEMS})")
        if _outside(accuracy, OTHER_RANGE):
            misses.append(f"B3 {task} {accuracy:.3f} outside {OTHER_RANGE}")
        taught = report["by_kind"][task]["taught"]
        if taught < TAUGHT_MIN:
            misses.append(f"B4 {task} taught items {taught:.3f} < {TAUGHT_MIN}")
    if report["hinted_target_accuracy"] < HINTED_MIN:
        misses.append(f"B5 hinted {target} {report['hinted_target_accuracy']:.3f} < {HINTED_MIN}")
    if report["rewrite_accuracy"] < REWRITE_MIN:
        misses.append(f"C3 rewrites of GT correct {report['rewrite_accuracy']:.3f} < {REWRITE_MIN}")
    return misses


def rebuild_misses(accuracy: dict[str, float], shipped: dict[str, float],
                   tolerance: float = REBUILD_TOLERANCE) -> list[str]:
    """A1: each task whose rebuilt base accuracy lands further than `tolerance` from the shipped build's."""
    return [f"{task} {accuracy[task]:.3f} vs shipped {value:.3f} (tolerance {tolerance})"
            for task, value in shipped.items() if abs(accuracy[task] - value) > tolerance]


def finetune_misses(oracle: dict[str, float], gt: dict[str, float]) -> list[str]:
    """C1 and C2 from one seed's TI and BWT (% relative to the base model) of the oracle and of GT."""
    misses = []
    if not oracle["ti"] > 50:
        misses.append(f"C1 oracle TI {oracle['ti']:+.1f} % (needs > +50 %)")
    if not oracle["bwt"] >= -5:
        misses.append(f"C1 oracle BWT {oracle['bwt']:+.1f} % (needs >= -5 %)")
    if not gt["bwt"] <= -20:
        misses.append(f"C2 GT BWT {gt['bwt']:+.1f} % (needs <= -20 %)")
    return misses
