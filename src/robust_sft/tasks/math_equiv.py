"""Whether two final answers to a maths problem are equal (MATH-style LaTeX answers).

`equivalent(predicted, gold)` accepts when any of these says equal: the normalised strings, math-verify
(`math_verify.parse`/`verify`, the project's `math` extra) when installed, or our own fallback, which
turns simple LaTeX into a sympy expression and compares symbolically. Model output is never passed to
`eval` unchecked: the fallback only parses a whitelisted alphabet and refuses huge powers.
"""

from __future__ import annotations

import re
import threading

# ---- boxed answers and wrappers -----------------------------------------------------------------

_BOXED = re.compile(r"\\(?:boxed|fbox)\s*")


def last_boxed(text: str) -> str | None:
    """Content of the last \\boxed{...} (or \\fbox{...}) with balanced braces; `\\boxed 5` too."""
    span = last_boxed_span(text)
    return None if span is None else text[span[0]:span[1]]


def last_boxed_span(text: str) -> tuple[int, int] | None:
    """(start, end) characters of the last \\boxed{...}'s content in `text` (what `last_boxed` returns), or None."""
    matches = list(_BOXED.finditer(text))
    if not matches:
        return None
    at = matches[-1].end()
    rest = text[at:]
    if rest.startswith("{"):
        content = _balanced(rest[1:])
        return None if content is None else (at + 1, at + 1 + len(content))
    token = re.match(r"[^\s$]+", rest)  # without braces LaTeX takes one token
    return (at, at + token.end()) if token else None


def _balanced(text: str) -> str | None:
    """The text up to the brace closing an already opened one, else None."""
    depth = 1
    for i, char in enumerate(text):
        depth += {"{": 1, "}": -1}.get(char, 0)
        if depth == 0:
            return text[:i]
    return None


def strip_wrappers(answer: str) -> str:
    """Remove math delimiters, \\boxed, surrounding markdown and trailing punctuation."""
    answer = answer.strip().strip("*").strip().rstrip(".").strip()
    boxed = last_boxed(answer)
    if boxed is not None:
        answer = boxed
    for left, right in (("$$", "$$"), ("$", "$"), ("\\(", "\\)"), ("\\[", "\\]")):
        if answer.startswith(left) and answer.endswith(right) and len(answer) >= len(left) + len(right):
            answer = answer[len(left):len(answer) - len(right)].strip()
    return answer.rstrip(".").strip()


# ---- normalisation ------------------------------------------------------------------------------

_TEXT = re.compile(r"\\(?:text|textbf|textrm|mbox|mathrm)\s*\{([^{}]*)\}")
_REMOVE = [
    (re.compile(r"\^\s*\{?\s*\\circ\s*\}?|\\circ|°|\\degree"), ""),  # degrees
    (re.compile(r"\\?%|\\\$|\$"), ""),  # percent and dollar signs
    (re.compile(r"\\left|\\right|\\displaystyle|\\[,;:! ]|\\q?quad|~"), ""),  # sizing and spacing
    (re.compile(r"\\[dt]frac"), r"\\frac"),
    (re.compile(r"\\frac\s*(\d)\s*(\d)"), r"\\frac{\1}{\2}"),  # \frac12
    (re.compile(r"\\frac\s*\{([^{}]*)\}\s*(\d)"), r"\\frac{\1}{\2}"),  # \frac{a}2
    (re.compile(r"\\frac\s*(\d)\s*\{"), r"\\frac{\1}{"),  # \frac1{a}
    (re.compile(r"\\sqrt\s*(\w)"), r"\\sqrt{\1}"),  # \sqrt2: LaTeX takes one token
    (re.compile(r"(\d)\{,\}(?=\d)"), r"\1"),  # 1{,}000
]
_WORD_UNITS = re.compile(r"^(-?\d[\d,]*(?:\.\d+)?)\s*(?:[A-Za-z]{2,}\.?\s*)+$")  # "9 cm", "625 dollars"
_THOUSANDS = re.compile(r"^-?\d{1,3}(,\d{3})+(\.\d+)?$")
_ASSIGNMENT = re.compile(r"^[a-zA-Z]\w*\s*=\s*(?=[^=]+$)")


def _drop_unit(match: re.Match) -> str:
    text = match.group(1)
    return "" if re.fullmatch(r"[A-Za-z .^\d]*", text) else text


def normalize(answer: str) -> str:
    """A canonical string form: no delimiters, units, spacing macros or "x =" prefix."""
    answer = strip_wrappers(answer)
    whole = _TEXT.fullmatch(answer.strip())
    if whole:
        answer = whole.group(1)
    else:
        # Text inside a larger answer is a unit ("10\text{ cm}"); a lone text answer is kept above.
        answer = _TEXT.sub(_drop_unit, answer)
    for pattern, replacement in _REMOVE:
        answer = pattern.sub(replacement, answer)
    answer = _ASSIGNMENT.sub("", answer.strip())
    answer = _WORD_UNITS.sub(r"\1", answer)
    answer = re.sub(r"\s+", "", answer).rstrip(".")
    if _THOUSANDS.match(answer):
        answer = answer.replace(",", "")
    return re.sub(r"(?<![\d.])\.(\d)", r"0.\1", answer)  # .5 -> 0.5


# ---- equivalence --------------------------------------------------------------------------------


def equivalent(predicted: str | None, gold: str, *, use_math_verify: bool = True) -> bool:
    if predicted is None or not predicted.strip():
        return False
    if normalize(predicted) == normalize(gold):
        return True
    if _explosive(predicted):
        return False
    if use_math_verify and _math_verify_equal(predicted, gold):
        return True
    return _fallback_equal(normalize(predicted), normalize(gold))


_POWER_TOWER = re.compile(r"\^\s*\{[^{}]*\^|\^\s*\{?\s*\d{4,}|\^\s*\d\s*\^")


def _explosive(answer: str) -> bool:
    """Power towers and huge exponents: exact evaluation could hang either checker."""
    return bool(_POWER_TOWER.search(answer))


def _math_verify_equal(predicted: str, gold: str) -> bool:
    try:
        from math_verify import parse, verify
    except ImportError:
        return False
    # math-verify's timeouts use signal.alarm, which only works in the main thread.
    timeout = 5 if threading.current_thread() is threading.main_thread() else None
    gold_parsed = parse(f"${strip_wrappers(gold)}$", parsing_timeout=timeout)
    predicted_parsed = parse(f"${strip_wrappers(predicted)}$", parsing_timeout=timeout)
    return bool(gold_parsed and predicted_parsed) and verify(gold_parsed, predicted_parsed,
                                                             timeout_seconds=timeout)


def _fallback_equal(predicted: str, gold: str) -> bool:
    predicted_open, predicted_items, predicted_close = _split_tuple(predicted)
    gold_open, gold_items, gold_close = _split_tuple(gold)
    if (predicted_open, predicted_close) != (gold_open, gold_close):
        return False
    if len(predicted_items) != len(gold_items):
        return False
    if len(gold_items) == 1:
        return _expr_equal(predicted_items[0], gold_items[0])
    if gold_open:  # tuples and intervals: in order
        return all(_expr_equal(p, g) for p, g in zip(predicted_items, gold_items))
    return _same_multiset(predicted_items, gold_items)  # "1,2": a list of solutions, any order


def _split_tuple(answer: str) -> tuple[str, list[str], str]:
    """Brackets and top-level comma-separated items: "[1,2)" -> ("[", ["1", "2"], ")")."""
    opening, closing = "", ""
    if len(answer) > 1 and answer[0] in "([" and answer[-1] in ")]" and _split_top(answer[1:-1]) is not None:
        opening, closing, answer = answer[0], answer[-1], answer[1:-1]
    items = _split_top(answer)
    return opening, items if items is not None else [answer], closing


def _split_top(text: str) -> list[str] | None:
    """Split at commas outside brackets/braces; None when the brackets do not balance."""
    items, depth, current = [], 0, ""
    for char in text:
        depth += 1 if char in "([{" else -1 if char in ")]}" else 0
        if depth < 0:
            return None
        if char == "," and depth == 0:
            items.append(current)
            current = ""
        else:
            current += char
    return items + [current] if depth == 0 else None


def _same_multiset(predicted: list[str], gold: list[str]) -> bool:
    remaining = list(gold)
    for item in predicted:
        match = next((g for g in remaining if _expr_equal(item, g)), None)
        if match is None:
            return False
        remaining.remove(match)
    return True


def _expr_equal(predicted: str, gold: str) -> bool:
    if predicted == gold:
        return True
    a, b = to_sympy(predicted), to_sympy(gold)
    if a is None or b is None:
        return False
    import sympy

    try:
        if a.free_symbols or b.free_symbols:
            return sympy.simplify(a - b) == 0
        return bool(abs(sympy.N(a - b)) <= 1e-6 * max(1, abs(sympy.N(b))))
    except (TypeError, ValueError, ArithmeticError, AttributeError):
        return False


# ---- simple LaTeX to sympy ----------------------------------------------------------------------

_COMMANDS = {
    "\\frac": (2, "(({0})/({1}))"),
    "\\sqrt": (1, "sqrt({0})"),
    "\\nroot": (2, "(({1})**(1/({0})))"),  # \sqrt[n]{a}, rewritten by _NTH_ROOT
}
_NTH_ROOT = re.compile(r"\\sqrt\s*\[([^\[\]]*)\]\s*\{")
_SYMBOLS = [("\\pi", " pi "), ("\\infty", " oo "), ("\\cdot", "*"), ("\\times", "*"), ("^", "**"),
            ("{", "("), ("}", ")"), ("[", "("), ("]", ")")]
_ALLOWED = re.compile(r"^[\d\w+\-*/(). ]*$")
_NAMES = {"sqrt", "pi", "oo"}


def to_sympy(latex: str):
    """A sympy expression for simple LaTeX (numbers, + - * / ^, \\frac, \\sqrt, \\pi, one-letter
    variables), or None. Refuses anything else, so the parser never sees arbitrary code."""
    if len(latex) > 200:
        return None
    text = _expand_commands(_NTH_ROOT.sub(r"\\nroot{\1}{", latex))
    if text is None:
        return None
    for old, new in _SYMBOLS:
        text = text.replace(old, new)
    words = set(re.findall(r"[A-Za-z_]\w*", text))
    if not _ALLOWED.match(text) or "__" in text or any(len(w) > 1 and w not in _NAMES for w in words):
        return None
    return _parse(text)


def _expand_commands(latex: str) -> str | None:
    """Rewrite \\frac{a}{b}, \\sqrt{a} and n-th roots (innermost first) into function syntax."""
    for _ in range(50):
        positions = [(latex.rfind(name), name) for name in _COMMANDS if latex.rfind(name) >= 0]
        if not positions:
            return latex
        start, name = max(positions)
        nargs, template = _COMMANDS[name]
        rest, args = latex[start + len(name):], []
        for _ in range(nargs):
            rest = rest.lstrip()
            if not rest.startswith("{"):
                return None
            arg = _balanced(rest[1:])
            if arg is None:
                return None
            args.append(arg)
            rest = rest[len(arg) + 2:]
        latex = latex[:start] + template.format(*args) + rest
    return None


def _parse(text: str):
    import sympy
    from sympy.parsing.sympy_parser import (
        convert_xor,
        implicit_multiplication_application,
        parse_expr,
        standard_transformations,
    )

    transformations = standard_transformations + (implicit_multiplication_application, convert_xor)
    try:
        expr = parse_expr(text, transformations=transformations, evaluate=False,
                          local_dict={"sqrt": sympy.sqrt, "pi": sympy.pi, "oo": sympy.oo})
    except Exception:  # the tokenizer and sympy raise many types on malformed input
        return None
    if not _small_powers(expr):
        return None
    try:
        return sympy.sympify(expr.doit() if hasattr(expr, "doit") else expr)
    except (TypeError, ValueError, ArithmeticError, AttributeError):
        return None


def _small_powers(expr) -> bool:
    """No power towers or huge exponents: evaluating 9^9^9 exactly would hang the checker."""
    import sympy

    for power in expr.atoms(sympy.Pow):
        # Floating-point evaluation of the exponent is cheap even for towers; exact powers are not.
        if power.exp.is_number and not abs(sympy.N(power.exp, 5)) <= 1000:
            return False
    return True
