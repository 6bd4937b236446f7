"""A config's own pre-registered criteria, judged from results.json's intervals.

An experiment config may state, before it runs, what would count as each of its claims holding:

    criteria:
      - id: P
        claim: the positive control learns the target
        method: oracle            # a variant name of the run (gt, stm@2.5, gt_lr1e-04, ...)
        quantity: ti_pp           # ti_pp / bwt_pp (percentage points), ti / bwt (relative %), or
                                  # ti_pp_over_gt_frontier (TI minus GT's learning-rate frontier at its BWT),
                                  # or best_tau (method: a family, stm: the tau of its grid with the highest
                                  # TI + BWT in points, with its interval)
        holds_if: lower > 0       # lower / upper / estimate of the 95 % interval, then > < >= <=, then a number
      - id: S1
        claim: STM at 2.5 forgets less than GT
        method: stm@2.5
        versus: gt                # the paired difference method - versus (pp quantities only)
        quantity: bwt_pp
        holds_if: lower > 0
        requires: [P]             # counted only when these criteria held

Each criterion is judged held / not held / not tested (its variant did not run, or an interval is NaN) / not
counted (a criterion it requires did not hold). The config is committed before the run, so the git history shows
the criteria came first.
"""

from __future__ import annotations

import math
import operator

from robust_sft.core.config_types import ConfigError

QUANTITIES = ("ti_pp", "bwt_pp", "ti", "bwt", "ti_pp_over_gt_frontier", "best_tau")
FRONTIER = "ti_pp_over_gt_frontier"  # needs GT at two or more learning rates (lr_sweep)
BEST_TAU = "best_tau"  # its method is a family with two or more taus (stm, stm_soft)
BOUNDS = ("lower", "upper", "estimate")
COMPARISONS = {">": operator.gt, "<": operator.lt, ">=": operator.ge, "<=": operator.le}
FIELDS = ("id", "claim", "method", "quantity", "holds_if", "versus", "requires")


def parse_rule(rule: str, where: str) -> tuple[str, str, float]:
    """`"lower > 0"` -> ("lower", ">", 0.0); anything else is a ConfigError naming `where`."""
    parts = str(rule).split()
    if len(parts) != 3 or parts[0] not in BOUNDS or parts[1] not in COMPARISONS:
        raise ConfigError(f"{where}: holds_if must read '<{'|'.join(BOUNDS)}> <{'|'.join(COMPARISONS)}> <number>', "
                          f"not {rule!r}")
    try:
        value = float(parts[2])
    except ValueError:
        raise ConfigError(f"{where}: holds_if's threshold must be a number, not {parts[2]!r}") from None
    return parts[0], parts[1], value


def check_criteria(criteria: list, where: str = "criteria") -> list[dict]:
    """The `criteria:` list, each entry checked (fields, quantity, rule, ids unique, requires known and earlier)."""
    if not isinstance(criteria, list):
        raise ConfigError(f"{where} must be a list of criteria, not {type(criteria).__name__}")
    checked, seen = [], set()
    for i, entry in enumerate(criteria):
        at = f"{where}[{i}]"
        if not isinstance(entry, dict):
            raise ConfigError(f"{at} must be a mapping with {', '.join(FIELDS[:5])}")
        unknown = sorted(set(entry) - set(FIELDS))
        missing = [f for f in FIELDS[:5] if f not in entry]
        if unknown or missing:
            raise ConfigError(f"{at}: " + "; ".join(
                ([f"unknown field(s) {unknown}"] if unknown else []) + ([f"missing {missing}"] if missing else [])))
        cid = str(entry["id"])
        at = f"{where}[{i}] ({cid})"
        if cid in seen:
            raise ConfigError(f"{at}: id {cid!r} is used twice")
        if entry["quantity"] not in QUANTITIES:
            raise ConfigError(f"{at}: quantity must be one of {', '.join(QUANTITIES)}, not {entry['quantity']!r}")
        if entry.get("versus") is not None and entry["quantity"] not in ("ti_pp", "bwt_pp"):
            raise ConfigError(f"{at}: a difference between methods (versus) is in points: use ti_pp or bwt_pp")
        parse_rule(entry["holds_if"], at)
        requires = [str(r) for r in entry.get("requires") or []]
        unknown_required = [r for r in requires if r not in seen]
        if unknown_required:
            raise ConfigError(f"{at}: requires {unknown_required}, which are not criteria listed before it")
        seen.add(cid)
        checked.append({"id": cid, "claim": str(entry["claim"]), "method": str(entry["method"]),
                        "quantity": entry["quantity"], "holds_if": str(entry["holds_if"]),
                        "versus": None if entry.get("versus") is None else str(entry["versus"]),
                        "requires": requires})
    return checked


def check_criteria_variants(criteria: list[dict], variants: list[str], gt_rates: int = 0) -> None:
    """Every method a criterion names is a variant of the run, and a frontier criterion has GT at two or more
    learning rates (`gt_rates`), so a typo or a missing lr_sweep fails at --dry_run, not after the run."""
    for c in criteria:
        if c["quantity"] == BEST_TAU:
            if len(tau_grid(variants, c["method"])) < 2:
                raise ConfigError(f"criteria ({c['id']}): {BEST_TAU} reads a family's tau grid; {c['method']!r} "
                                  "has fewer than two taus in this run (method: stm, with taus: [...])")
            continue
        if c["quantity"] == FRONTIER and gt_rates < 2:
            raise ConfigError(f"criteria ({c['id']}): {FRONTIER} needs GT at two or more learning rates; this run "
                              f"has {gt_rates} (add lr_sweep: {{gt: [...]}})")
        for name in filter(None, (c["method"], c["versus"])):
            if name not in variants:
                raise ConfigError(f"criteria ({c['id']}): {name!r} is not a variant of this run; the variants are "
                                  f"{', '.join(variants)}")


def tau_grid(variants: list[str], family: str) -> list[tuple[float, str]]:
    """A family's variants at numeric taus, in order of tau: "stm@2.5", "stm@10", ... (not stm@auto, and not the
    learning-rate control's stm@2.5_lr...)."""
    grid = []
    for name in variants:
        prefix, _, tau = name.partition("@")
        if prefix == family and "_lr" not in tau:
            try:
                grid.append((float(tau), name))
            except ValueError:
                continue
    return sorted(grid)


def criterion_subject(criterion: dict) -> str:
    """What a criterion reads: its variant, or the difference of two ("stm@2.5 minus gt")."""
    return criterion["method"] + (f" minus {criterion['versus']}" if criterion["versus"] else "")


def criterion_value(criterion: dict, methods: dict, tau_optima: dict | None = None) -> dict | None:
    """The estimate and interval a criterion reads from results' methods (or tau_optima, for best_tau); None when
    its variant did not run."""
    if criterion["quantity"] == BEST_TAU:
        return (tau_optima or {}).get(criterion["method"])
    method = methods.get(criterion["method"])
    if method is None:
        return None
    if criterion["versus"] is not None:
        return method.get("versus", {}).get(criterion["versus"], {}).get(criterion["quantity"])
    if criterion["quantity"] == FRONTIER:
        return method.get("over_gt_frontier")
    return method.get("intervals", {}).get(criterion["quantity"])


def judge_criterion(criterion: dict, value: dict | None, statuses: dict[str, str],
                    missing: str = "its variant did not run") -> dict:
    """One criterion's status and evidence; `statuses` holds the statuses of the criteria judged before it, and
    `missing` says why there is no value when `value` is None."""
    bound, comparison, threshold = parse_rule(criterion["holds_if"], criterion["id"])
    failed_requirements = [r for r in criterion["requires"] if statuses.get(r) != "held"]
    if value is None:
        status, evidence = "not tested", missing
    else:
        lower, upper = value["interval"]
        read = {"lower": lower, "upper": upper, "estimate": value["estimate"]}[bound]
        evidence = (f"tau {value['estimate']:g} [{lower:g}, {upper:g}]" if criterion["quantity"] == BEST_TAU
                    else f"{value['estimate']:+.1f} [{lower:+.1f}, {upper:+.1f}]")
        if math.isnan(read):
            status = "not tested"
        elif failed_requirements:
            status = "not counted"
            evidence += f"; requires {', '.join(failed_requirements)}, which did not hold"
        else:
            status = "held" if COMPARISONS[comparison](read, threshold) else "not held"
    return {**criterion, "status": status, "evidence": evidence}


def judge_criteria(criteria: list[dict], methods: dict, tau_optima: dict | None = None) -> list[dict]:
    """Every criterion in order (a criterion may require earlier ones)."""
    judged, statuses = [], {}
    for criterion in criteria:
        missing = ("GT ran at fewer than two learning rates" if criterion["quantity"] == FRONTIER
                   and criterion["method"] in methods else "its variant did not run")
        entry = judge_criterion(criterion, criterion_value(criterion, methods, tau_optima), statuses, missing)
        statuses[criterion["id"]] = entry["status"]
        judged.append(entry)
    return judged
