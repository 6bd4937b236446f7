"""Mutation check of the claim rules: flip each comparison in report/claims.py, one at a time, and see
whether the claim tests notice.

Each mutant negates one comparison operator (`>` becomes `<=`, `==` becomes `!=`, `in` becomes `not in`, ...;
each link of a chain like `a > b > c` separately) in a copy of src/ under a temporary directory; the tests run
against that copy (PYTHONPATH) with `pytest -x -q`. A mutant is killed when the tests fail. Prints one row per
mutant and the score; exits 1 when fewer than --threshold of the mutants are killed.

With --boundary each mutant moves one line instead (`>` becomes `>=`, `<=` becomes `<`): the tests must hold each
rule at its equality case. Two of those mutants cannot change a verdict, so expect 2 survivors there:
`bwt < 0` beside `bwt + sd < 0` in claim (b1) (a std is >= 0), and `oracle_ti > 0` behind `oracle_ti and`.

    .venv/bin/python scripts/mutate_claims.py [--boundary] [--tests tests/test_claims.py] [--threshold 0.9]

Standard library only; run it before calling a change to the claims done.
"""

from __future__ import annotations

import argparse
import ast
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
MODULE = Path("robust_sft") / "report" / "claims.py"
NEGATION = {ast.Gt: ast.LtE, ast.LtE: ast.Gt, ast.Lt: ast.GtE, ast.GtE: ast.Lt, ast.Eq: ast.NotEq,
            ast.NotEq: ast.Eq, ast.In: ast.NotIn, ast.NotIn: ast.In, ast.Is: ast.IsNot, ast.IsNot: ast.Is}
BOUNDARY = {ast.Gt: ast.GtE, ast.GtE: ast.Gt, ast.Lt: ast.LtE, ast.LtE: ast.Lt}
SYMBOL = {ast.Gt: ">", ast.LtE: "<=", ast.Lt: "<", ast.GtE: ">=", ast.Eq: "==", ast.NotEq: "!=", ast.In: "in",
          ast.NotIn: "not in", ast.Is: "is", ast.IsNot: "is not"}


def comparisons(tree: ast.Module, flip: dict) -> list[tuple[str, ast.Compare, int]]:
    """(function, comparison node, index of its operator) for every operator `flip` maps, in every function of
    the module (one per claim, and the helpers they share)."""
    found = []
    for function in tree.body:
        if isinstance(function, ast.FunctionDef):
            for node in ast.walk(function):
                if isinstance(node, ast.Compare):
                    found += [(function.name, node, i) for i, op in enumerate(node.ops) if type(op) in flip]
    return sorted(found, key=lambda f: (f[1].lineno, f[1].col_offset, f[2]))


def mutant_source(source: str, number: int, flip: dict) -> str:
    """The module with comparison `number` (in the order of `comparisons`) flipped."""
    tree = ast.parse(source)
    _, node, i = comparisons(tree, flip)[number]
    node.ops[i] = flip[type(node.ops[i])]()
    return ast.unparse(tree)


def tests_pass(src: Path, tests: list[str]) -> bool:
    env = {**os.environ, "PYTHONPATH": str(src)}
    run = subprocess.run([sys.executable, "-m", "pytest", "-x", "-q", "-p", "no:cacheprovider", *tests],
                         cwd=REPO, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return run.returncode == 0


def imported_from(src: Path) -> Path:
    """Where `robust_sft.report.claims` comes from with `src` first on the path (must be the copy, not the checkout)."""
    out = subprocess.run([sys.executable, "-c", "import robust_sft.report.claims as r; print(r.__file__)"], cwd=REPO,
                         env={**os.environ, "PYTHONPATH": str(src)}, capture_output=True, text=True, check=True)
    return Path(out.stdout.strip())


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--boundary", action="store_true", help="move each order comparison's line (> to >=)")
    parser.add_argument("--tests", nargs="+", default=["tests/test_claims.py"])
    parser.add_argument("--threshold", type=float, default=0.9)
    args = parser.parse_args(argv)

    flip = BOUNDARY if args.boundary else NEGATION
    source = (REPO / "src" / MODULE).read_text()
    sites = comparisons(ast.parse(source), flip)
    with tempfile.TemporaryDirectory(prefix="mutate_claims_") as tmp:
        src = Path(tmp) / "src"
        shutil.copytree(REPO / "src", src, ignore=shutil.ignore_patterns("__pycache__", "*.egg-info"))
        target = src / MODULE
        if imported_from(src) != target:
            sys.exit(f"the copy is not what Python imports (got {imported_from(src)}): check the editable install")
        target.write_text(ast.unparse(ast.parse(source)))
        if not tests_pass(src, args.tests):
            sys.exit("the tests fail on the unmutated (unparsed) module: fix them before mutating")
        survivors = 0
        print(f"{'#':>3}  {'line':>4}  {'function':<36} {'mutation':<15} {'result':<9} comparison")
        for number, (function, node, i) in enumerate(sites):
            target.write_text(mutant_source(source, number, flip))
            killed = not tests_pass(src, args.tests)
            survivors += not killed
            op = type(node.ops[i])
            text = " ".join(ast.get_source_segment(source, node).split())
            print(f"{number:>3}  {node.lineno:>4}  {function:<36} {SYMBOL[op] + ' -> ' + SYMBOL[flip[op]]:<15} "
                  f"{'killed' if killed else 'SURVIVED':<9} {text[:70]}")
    total = len(sites)
    score = (total - survivors) / total
    print(f"\nkilled {total - survivors} of {total} mutants: {100 * score:.1f} % "
          f"(threshold {100 * args.threshold:.0f} %)")
    return 0 if score >= args.threshold else 1


if __name__ == "__main__":
    sys.exit(main())
