"""Answer normalisation and the cheap exact decisions that need neither math-verify nor sympy.

Every step is linear in the answer's length (no regular expression here can backtrack over a
repeated unit), and the whole module runs inside the bounded grading worker (``math_worker``), so
even a pathological answer is stopped at the per-item time bound.

Rules that differ from CS336's grader are listed in ``qa_tasks.math.grader``'s docstring.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation, localcontext
from fractions import Fraction

__all__ = ["MAX_UNIT_WORDS", "Verdict", "exact_value", "latex_form", "normalize_answer", "quick_verdict",
           "unbalanced_braces"]


@dataclass(frozen=True)
class Verdict:
    correct: bool
    # how it was decided: empty, string, number, malformed, units, split_number, math_verify, sympy, none,
    # timeout
    method: str
    timed_out: bool = False


# Unicode a model may write, as the LaTeX math-verify and the rules below read.
_VULGAR = {"½": (1, 2), "⅓": (1, 3), "⅔": (2, 3), "¼": (1, 4), "¾": (3, 4), "⅕": (1, 5), "⅖": (2, 5),
           "⅗": (3, 5), "⅘": (4, 5), "⅙": (1, 6), "⅚": (5, 6), "⅐": (1, 7), "⅛": (1, 8), "⅜": (3, 8),
           "⅝": (5, 8), "⅞": (7, 8), "⅑": (1, 9), "⅒": (1, 10)}
_UNICODE = str.maketrans({
    **{ch: f"\\frac{{{a}}}{{{b}}}" for ch, (a, b) in _VULGAR.items()},
    "√": "\\sqrt", "−": "-", "–": "-", "×": "\\times", "·": "\\cdot", "÷": "\\div", "π": "\\pi",
    "∞": "\\infty", "⁄": "/", "°": "^\\circ", "≤": "\\le", "≥": "\\ge", "\u00a0": " ",
    **dict.fromkeys("\u200b\u200c\u200d\u2060\ufeff", ""),  # zero-width characters: invisible, not part of it
})


_SUPERSCRIPT = re.compile("[⁰¹²³⁴⁵⁶⁷⁸⁹⁻⁺]+")
_SUPERSCRIPT_DIGITS = str.maketrans("⁰¹²³⁴⁵⁶⁷⁸⁹⁻⁺", "0123456789-+")
# A whole answer in E-notation (``1.5e3``, ``1.5E+3``, ``-2.5e-4``, ``3e2``): a capital E, a decimal point
# in the mantissa or an unsigned exponent. ``2e-1`` and ``3e+2`` stay 2e - 1 and 3e + 2 (Euler's number, as
# math-verify reads them): an integer, a lower-case ``e`` and a signed integer is how those are written.
_E_NOTATION = re.compile(r"^(\s*(?:\$\s*)?)([+-]?)(\d+(?:\.\d*)?|\.\d+)([eE])([+-]?)(\d+)((?:\s*\$)?\s*)$")


def latex_form(text: str) -> str:
    """Model-written math as LaTeX: ``½`` -> ``\\frac{1}{2}``, ``√2`` -> ``\\sqrt2``, ``−`` -> ``-``,
    ``10³`` -> ``10^{3}``, and a whole answer in E-notation ``1.5e3`` -> ``1.5\\times10^{3}`` (math-verify
    reads ``1.5e3`` as 1.5 · e · 3)."""
    text = _SUPERSCRIPT.sub(lambda m: "^{" + m.group().translate(_SUPERSCRIPT_DIGITS) + "}", text.translate(_UNICODE))
    return _e_notation(text)


def _e_notation(text: str) -> str:
    """``1.5e3`` -> ``1.5\\times10^{3}`` when the whole text is one number in E-notation, else the text."""
    e = _E_NOTATION.match(text)
    if not e or not (e.group(4) == "E" or "." in e.group(3) or not e.group(5)):
        return text
    before, sign, mantissa, _, exp_sign, exp, after = e.groups()
    return f"{before}{sign}{mantissa}\\times10^{{{exp_sign.replace('+', '')}{exp}}}{after}"


# unit word -> the unit it names (singular and plural, and abbreviations, name one unit)
_UNITS = {
    "dollars": "dollar", "dollar": "dollar", "cents": "cent", "cent": "cent", "units": "unit", "unit": "unit",
    "square": "square", "sq": "square", "inches": "inch", "inch": "inch", "feet": "foot", "foot": "foot",
    "ft": "foot", "meters": "meter", "meter": "meter", "cm": "cm", "mm": "mm", "km": "km", "miles": "mile",
    "mile": "mile", "mph": "mph", "hours": "hour", "hour": "hour", "minutes": "minute", "minute": "minute",
    "seconds": "second", "second": "second", "days": "day", "day": "day", "weeks": "week", "years": "year",
    "degrees": "degree", "degree": "degree", "pounds": "pound", "pound": "pound", "lbs": "pound",
    "ounces": "ounce", "grams": "gram", "kg": "kg", "points": "point", "ways": "way", "people": "people",
    "students": "student", "marbles": "marble", "apples": "apple", "cookies": "cookie", "percent": "percent",
    "times": "times", "pages": "page", "books": "book", "eggs": "egg", "liters": "liter", "gallons": "gallon",
}
# At most this many trailing unit words are dropped, each unit once ("5 square feet"); a reply with more
# ("5 dollars dollars", "5 ways people students") is not a number with its unit and keeps them all.
MAX_UNIT_WORDS = 2
_UNIT_COMMANDS = ("\\text", "\\mbox", "\\mathrm")


def _skip_space_back(s: str, end: int) -> int:
    while end > 0 and s[end - 1].isspace():
        end -= 1
    return end


def _skip_power_back(s: str, end: int) -> int:
    """Before a trailing ``^2`` / ``^{2}`` (square and cubic units), or ``end`` when there is none."""
    if end >= 2 and s[end - 1].isdigit() and s[end - 2] == "^":
        return end - 2
    if end >= 4 and s[end - 1] == "}" and s[end - 2].isdigit() and s[end - 3] == "{" and s[end - 4] == "^":
        return end - 4
    return end


def _strip_trailing_units(s: str, seen: set[str]) -> str | None:
    """Drop trailing unit words (``5 dollars``, ``5\\text{ cm}^2``), walking back at most
    ``MAX_UNIT_WORDS`` + 1 words. ``seen`` holds the units dropped so far (by an earlier pass over the same
    answer); None when the answer ends in more unit words than that, or in one unit twice."""
    end = _skip_space_back(s, len(s))
    while end > 0:
        stop = _skip_power_back(s, end)
        if s[stop - 1] == "}":  # \text{ unit words }
            brace = s.rfind("{", 0, stop - 1)
            command = next((c for c in _UNIT_COMMANDS if s.startswith(c, brace - len(c))), None) if brace > 0 else None
            words = s[brace + 1:stop - 1].split() if command else []
            if not words or any(w.lower() not in _UNITS for w in words):
                break
            start = brace - len(command)
        else:
            word_end = stop - 1 if s[stop - 1] == "." else stop
            start = word_end
            while start > 0 and s[start - 1].isalpha():
                start -= 1
            if start == word_end or start == 0 or not s[start - 1].isspace() or s[start:word_end].lower() not in _UNITS:
                break
            words = [s[start:word_end]]
        for word in words:
            unit = _UNITS[word.lower()]
            if unit in seen or len(seen) == MAX_UNIT_WORDS:
                return None
            seen.add(unit)
        end = _skip_space_back(s, start)
    return s[:end]


_REMOVALS = (("\n", " "), ("\\!", ""), ("\\,", ""), ("\\;", ""), ("\\ ", " "), ("\\dfrac", "\\frac"),
             ("\\tfrac", "\\frac"), ("\\left", ""), ("\\right", ""), ("^{\\circ}", ""), ("^\\circ", ""),
             ("\\$", ""), ("$", ""), ("\\(", ""), ("\\)", ""), ("\\[", ""), ("\\]", ""), ("\\displaystyle", ""))
_TEXT_WRAPPER = re.compile(r"\\(?:text|textbf|mathrm|mbox|mathbf|operatorname)\{([^{}]*)\}")
_FRAC_SHORT = re.compile(r"\\frac(\d)(\d)")  # \frac12 -> \frac{1}{2}
_FRAC_HALF_SHORT = re.compile(r"\\frac\{([^{}]*)\}(\d)")  # \frac{1}2
_FRAC_SHORT_BRACE = re.compile(r"\\frac(\d)\{")  # \frac1{2}
_SQRT_SHORT = re.compile(r"\\sqrt(\w)")  # \sqrt2 -> \sqrt{2}
_SPACE = re.compile(r"\s+")
_SPACE_NOT_BETWEEN_DIGITS = re.compile(r"(?<!\d) | (?!\d)")  # "2 3" keeps its space, "x + 1" does not
_MIXED = re.compile(r"^(-?)(\d{1,300})(?: (\d{1,300})/(\d{1,300})|\\frac\{(\d{1,300})\}\{(\d{1,300})\})$")  # 3 1/4, 3\frac{1}{4}
_SIMPLE_SLASH = re.compile(r"^(-?\d+)/(\d+)$")  # 1/2 -> \frac{1}{2}
_NUMBER = re.compile(r"^-?\d+(?:\.\d+)?$")
_THOUSANDS = re.compile(r"^-?\d{1,3}(?:,\d{3})+(?:\.\d+)?$")
_VARIABLE_LHS = re.compile(r"^[a-zA-Z](?:_\{?\w+\}?)?$|^\\[a-zA-Z]+$")
_BASE_NUMBER = re.compile(r"^([0-9a-zA-Z]+)_\{?(\d+)\}?$")  # 52_8, 1011_{2}: math-verify drops the base
_SPLIT_NUMBER = re.compile(r"\d \d")


def normalize_answer(text: str) -> str:
    """Canonical string for exact comparison (MATH ``strip_string`` style, plus units and numbers).

    Whitespace between two digits is kept (``2 3`` is not ``23``); a mixed number ``3 1/4`` or
    ``3\\frac{1}{4}`` becomes the improper fraction ``\\frac{13}{4}``; scientific notation
    (``1.5e3``, ``1.5 \\times 10^{3}``, ``1.5\\cdot10^3``) becomes the plain number ``1500``. Percent signs
    are dropped (``quick_verdict`` also tries the value divided by 100). At most ``MAX_UNIT_WORDS``
    trailing unit words are dropped, each unit once; an answer with more keeps them all.
    """
    return _normalize(text)[0]


def _normalize(text: str) -> tuple[str, bool]:
    """``normalize_answer``'s string, and whether the answer ends in more unit words than may be dropped."""
    s = latex_form(text).strip()
    for old, new in _REMOVALS:
        s = s.replace(old, new)
    s = s.replace("\\%", "").replace("%", "").strip().rstrip(".").strip()
    seen: set[str] = set()  # units dropped by either pass: "5 \\textbf{cm} \\text{cm}" drops no "cm" twice
    stripped = _strip_trailing_units(s, seen)
    s = _TEXT_WRAPPER.sub(r"\1", s if stripped is None else stripped)
    if stripped is not None:
        stripped = _strip_trailing_units(s, seen)
    excess_units = stripped is None
    s = (s if excess_units else stripped).strip()
    if _enclosed_in_braces(s):  # "{6 - 5i}" (CS336's normaliser drops the pair too)
        s = s[1:-1].strip()
    if s.count("=") == 1:  # "x = 5" -> "5", only for a lone variable on the left
        lhs, rhs = s.split("=")
        if _VARIABLE_LHS.match(lhs.strip()):
            s = rhs.strip()
    s = _SPACE_NOT_BETWEEN_DIGITS.sub("", _SPACE.sub(" ", s))
    if _THOUSANDS.match(s):
        s = s.replace(",", "")
    s = _SQRT_SHORT.sub(r"\\sqrt{\1}", s)
    s = _FRAC_SHORT.sub(r"\\frac{\1}{\2}", s)
    s = _FRAC_HALF_SHORT.sub(r"\\frac{\1}{\2}", s)
    s = _FRAC_SHORT_BRACE.sub(r"\\frac{\1}{", s)
    mixed = _MIXED.match(s)
    if mixed:  # CS336 reads "3 1/4" as 3 + 1/4; the sign applies to the whole number
        sign, whole, num, den = mixed.group(1), int(mixed.group(2)), *(int(g) for g in mixed.groups()[2:] if g)
        s = f"{sign}\\frac{{{whole * den + num}}}{{{den}}}"
    slash = _SIMPLE_SLASH.match(s)
    if slash:
        s = f"\\frac{{{slash.group(1)}}}{{{slash.group(2)}}}"
    if s.startswith("."):
        s = "0" + s
    if s.startswith("-."):
        s = "-0" + s[1:]
    s = _plain_scientific(_e_notation(s))  # again: "\\$1.5e3" and "1.5e3 dollars" are E-notation now
    if _NUMBER.match(s):
        s = _canonical_number(s)
    return s, excess_units


# m \times 10^{k} (also \cdot, *) as the normaliser leaves it, E-notation included (``latex_form``)
_TIMES_TEN = re.compile(r"^(-?(?:\d+(?:\.\d*)?|\.\d+))(?:\\times|\\cdot|\*)10\^(?:\{([+-]?\d{1,3})\}|(\d))$")


def _plain_scientific(s: str) -> str:
    """``1.5\\times10^{3}`` -> ``1500`` (exactly, through ``Decimal``), so scientific notation meets the exact
    number rules: math-verify's tolerance would equate ``1.5000001\\times10^{-3}`` and ``0.0015``. Exponents
    of more than 3 digits are left to math-verify (under the time bound)."""
    sci = _TIMES_TEN.match(s)
    if not sci:
        return s
    return format(Decimal(f"{sci.group(1)}e{sci.group(2) or sci.group(3)}"), "f")


def _enclosed_in_braces(s: str) -> bool:
    """Whether the first ``{`` closes at the very end (``{a}``, not ``{a}+{b}``)."""
    if not (s.startswith("{") and s.endswith("}")):
        return False
    depth = 0
    for i, ch in enumerate(s):
        depth += 1 if ch == "{" else -1 if ch == "}" else 0
        if depth == 0:
            return i == len(s) - 1
    return False


def _canonical_number(s: str) -> str:
    """'18.00' -> '18', '-0' -> '0', '0.50' -> '0.5', '1500.0' -> '1500': one string per value, exactly
    (the precision covers every digit; no int conversion, which is quadratic and limited to 4300 digits)."""
    with localcontext() as ctx:
        ctx.prec = len(s) + 1
        try:
            value = Decimal(s)
        except InvalidOperation:
            return s
        return "0" if value.is_zero() else format(value.normalize(), "f")


def unbalanced_braces(text: str) -> bool:
    """True when the unescaped ``{`` / ``}`` of a LaTeX answer do not pair up (``5\\text{ cm\\text{ cm``)."""
    depth = 0
    for ch in text.replace("\\{", "").replace("\\}", ""):
        if ch == "{":
            depth += 1
        elif ch == "}":
            depth -= 1
            if depth < 0:
                return True
    return depth != 0


_MAX_EXACT_CHARS = 1000  # Fraction arithmetic past this is quadratic (and int() stops at 4300 digits)
_FRAC = re.compile(r"^(-?)\\frac\{(-?\d+)\}\{(-?\d+)\}$")


def exact_value(normalized: str) -> tuple[Fraction, bool] | None:
    """(value, exact) of a normalised plain number or ``\\frac{a}{b}``; exact is False for a decimal
    with a fractional part (math-verify compares those with a tolerance). None for anything else, and for
    text longer than ``_MAX_EXACT_CHARS`` (``_number_verdict`` compares two long plain numbers as strings)."""
    if len(normalized) > _MAX_EXACT_CHARS:
        return None
    if _NUMBER.match(normalized):
        value = Fraction(Decimal(normalized))
        return value, value.denominator == 1
    frac = _FRAC.match(normalized)
    if frac and int(frac.group(3)) != 0:
        value = Fraction(int(frac.group(2)), int(frac.group(3)))
        return (-value if frac.group(1) else value), True
    return None


def _terminates(value: Fraction) -> bool:
    """Whether the value has a finite decimal expansion (its denominator is 2^a 5^b)."""
    d = value.denominator
    for p in (2, 5):
        while d % p == 0:
            d //= p
    return d == 1


def _same_number(p: tuple[Fraction, bool], g: tuple[Fraction, bool]) -> bool | None:
    """Exact answer where one exists: two exact values, or a decimal against a value that terminates."""
    if p[0] == g[0]:
        return True
    if (p[1] or _terminates(g[0])) and (g[1] or _terminates(p[0])):  # a decimal meets a finite expansion
        return False
    return None  # 0.33 against 1/3: math-verify's tolerance decides


def _number_verdict(pred: str, gold: str, p: str, g: str) -> Verdict | None:
    if _NUMBER.match(p) and _NUMBER.match(g) and "%" not in pred + gold:
        return Verdict(p == g, "number")  # canonical decimals: equal values are equal strings, at any length
    pv, gv = exact_value(p), exact_value(g)
    if pv is None or gv is None:
        return None
    same = _same_number(pv, gv)
    if same:
        return Verdict(True, "number")
    for text, value, other in ((pred, pv, gv), (gold, gv, pv)):  # "50\%" is also 1/2
        if "%" in text:
            scaled = _same_number((value[0] / 100, value[1]), other)
            if scaled:
                return Verdict(True, "number")
            if scaled is None:
                same = None
    return None if same is None else Verdict(False, "number")


def quick_verdict(pred: str | None, gold: str) -> Verdict | None:
    """Decide without math-verify when possible: empty or malformed answer, equal normalised
    strings, numbers and fractions compared exactly; None when the slow path must decide."""
    if pred is None or not pred.strip():
        return Verdict(False, "empty")
    if unbalanced_braces(pred) and not unbalanced_braces(gold):
        return Verdict(False, "malformed")
    (p, p_excess), (g, g_excess) = _normalize(pred), _normalize(gold)
    if p_excess and not g_excess:  # "5 dollars dollars": not a number and its unit
        return Verdict(False, "units")
    if p and p == g:
        return Verdict(True, "string")
    if _SPLIT_NUMBER.search(p):  # "2 3" is neither 23 nor 2 + 3 nor 6
        return Verdict(False, "split_number")
    base_p, base_g = _BASE_NUMBER.match(p), _BASE_NUMBER.match(g)
    if base_p and base_g:
        return Verdict(base_p.groups() == base_g.groups(), "string")
    return _number_verdict(pred, gold, p, g)
