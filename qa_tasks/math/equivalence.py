"""Equivalence of two answers past the cheap checks: math-verify, then sympy.

Slow and unbounded (math-verify and sympy can run for minutes or exhaust memory on adversarial
answers such as ``10^{10^{10}}``): only ever called inside the bounded worker (``math_worker``).
"""

from __future__ import annotations

import re

from qa_tasks.math.normalize import Verdict, latex_form, normalize_answer, quick_verdict

__all__ = ["equivalent_unbounded", "math_verify_form"]

_SAFE_EXPR = re.compile(r"^[0-9a-z+\-*/^().,\s]*$")
_SAFE_NAMES = {"sqrt", "pi", "e", "i", "x", "y", "z", "n", "k", "a", "b", "c", "t", "sin", "cos", "tan", "log",
               "ln", "exp", "oo"}
_MIXED_FRAC = re.compile(r"(\d)\\frac\{(\d+)\}\{(\d+)\}")  # mixed number 1\frac{4}{5}
_FRAC = re.compile(r"\\[dt]?frac\{([^{}]*)\}\{([^{}]*)\}")
_SQRT = re.compile(r"\\sqrt\{([^{}]*)\}")
_WORD = re.compile(r"[a-z]+")
_PLAIN = (("\\pi", "pi"), ("\\cdot", "*"), ("\\times", "*"), ("\\infty", "oo"), ("{", "("), ("}", ")"),
          ("\\ln", "ln"), ("\\log", "log"), ("\\sin", "sin"), ("\\cos", "cos"), ("\\tan", "tan"))


def _latex_to_plain(s: str) -> str | None:
    """A sympy-parsable form of simple LaTeX, or None when the text is outside that safe subset."""
    s = normalize_answer(s)
    s = _MIXED_FRAC.sub(r"(\1+\2/\3)", s)
    s = _FRAC.sub(r"((\1)/(\2))", s)
    s = _SQRT.sub(r"sqrt(\1)", s)
    for old, new in _PLAIN:
        s = s.replace(old, new)
    s = s.lower()
    if "\\" in s or not _SAFE_EXPR.match(s) or "__" in s:
        return None
    if any(name not in _SAFE_NAMES for name in _WORD.findall(s)):
        return None
    return s


def _sympy_equal(gold: str, pred: str) -> bool | None:
    """Symbolic equality of two simple answers; None when either is outside the parsable subset."""
    g, p = _latex_to_plain(gold), _latex_to_plain(pred)
    if not g or not p:
        return None
    import sympy
    from sympy.parsing.sympy_parser import (
        convert_xor,
        implicit_multiplication_application,
        parse_expr,
        standard_transformations,
    )

    transformations = standard_transformations + (implicit_multiplication_application, convert_xor)
    local = {"e": sympy.E, "i": sympy.I, "ln": sympy.log}
    try:
        gv = parse_expr(g, transformations=transformations, local_dict=local)
        pv = parse_expr(p, transformations=transformations, local_dict=local)
        if isinstance(gv, tuple) or isinstance(pv, tuple):
            return isinstance(gv, tuple) and isinstance(pv, tuple) and len(gv) == len(pv) and all(
                sympy.simplify(a - b) == 0 for a, b in zip(gv, pv))
        return bool(sympy.simplify(gv - pv) == 0)
    except Exception:  # noqa: BLE001 - any parse/simplify failure means "cannot tell"
        return None


def _exact_number(value) -> bool:
    import sympy

    return isinstance(value, sympy.Expr) and value.is_number and not value.has(sympy.Float)


def math_verify_form(text: str) -> str:
    """What math-verify parses: unicode as LaTeX, wrapped in ``$…$`` unless it holds math delimiters
    already (an escaped ``\\$`` is not one)."""
    text = latex_form(text)
    unescaped = text.replace("\\$", "")
    return text if "$" in unescaped or "\\(" in text or "\\[" in text else f"${text}$"


def equivalent_unbounded(pred: str, gold: str) -> Verdict:
    """Full equivalence test with no time bound (cheap checks, then math-verify, then sympy)."""
    quick = quick_verdict(pred, gold)
    if quick is not None:
        return quick
    from math_verify import parse, verify

    try:
        gold_parsed = parse(math_verify_form(gold), parsing_timeout=None)
        pred_parsed = parse(math_verify_form(pred), parsing_timeout=None)
    except Exception:  # noqa: BLE001 - math-verify raising is "no parse", not a crash
        gold_parsed = pred_parsed = []
    if gold_parsed and pred_parsed:
        try:
            same = bool(verify(gold_parsed, pred_parsed, timeout_seconds=None))
        except Exception:  # noqa: BLE001
            same = False
        if same and _exact_number(gold_parsed[0]) and _exact_number(pred_parsed[0]):
            # float rounding inside math-verify equates 1/2^99 and 1/2^98: confirm exactly
            try:
                exact = bool((gold_parsed[0] - pred_parsed[0]).equals(0))
            except Exception:  # noqa: BLE001
                exact = False
            return Verdict(exact, "sympy")
        if same:
            return Verdict(True, "math_verify")
        return Verdict(False, "math_verify")
    fallback = _sympy_equal(gold, pred)  # only where math-verify could not read one of the answers
    return Verdict(fallback, "sympy") if fallback is not None else Verdict(False, "none")
