"""The pack's math grader against plain math-verify on model-like responses, and its bounds.

    QA_PACK_DATA_DIR=../shared/data python -m bench.bench_math_grader --n 5000 --repeats 5
    QA_PACK_DATA_DIR=../shared/data python -m bench.bench_math_grader --part adversarial

Throughput: N responses built (seeded) from MATH-500 and GSM8K golds the way a model writes them:
the gold rewritten in an equivalent form (``\\frac{1}{2}``, ``\\dfrac12``, ``0.5``, ``1/2``, ``50\\%``,
``4 2/3``, ``x = 5``, units, ``\\left( … \\right)``, reordered sums and solution lists) or a near miss
(one digit changed, off by one, a sign flipped, a tuple reversed, a rounded decimal), inside the usual
templates (plain, ``\\boxed{}`` in a sentence, ``$…$`` followed by more text), plus badly formatted
ones. No response pastes the gold verbatim, so few are settled by a plain string compare. Two arms,
interleaved A B A B … over ``--repeats`` rounds on the same items:

- ``pack``: ``grade_responses`` with one started ``Grader`` (one worker round trip for the batch,
  the per-item bound kept inside the worker);
- ``math_verify``: the same gate and answer extraction, then ``verify(parse(gold), parse(span))``
  in-process on the main thread (math-verify's own SIGALRM timeouts), ``$…$``-wrapped.

bench.harness reports wall and CPU time (the pack's CPU includes its worker's), the median and range of
each and of the per-repeat ratio, the load average around the run, and how the verdicts
of the two arms compare on equivalent forms and near misses. Adversarial: huge exponents, deep
nesting, 1 MB responses, unbalanced tags, unicode; each item timed, nothing may hang.
"""

from __future__ import annotations

import argparse
import json
import random
import threading
import time
from collections import Counter
from decimal import Decimal
from fractions import Fraction

from bench.harness import SMOKE_REPEATS, add_arguments, compare
from qa_tasks import math as mt
from qa_tasks.math import grader as mg
from qa_tasks.math.normalize import exact_value, normalize_answer

ITEM_BOUND_S = 5.0
TEMPLATES = (" Let me compute. </think> <answer> {a} </answer>",
             " So we get it. </think> <answer> The final answer is $\\boxed{{{a}}}$. </answer>",
             " Done. </think> <answer> ${a}$ </answer>\nUser: more text after the answer",
             " Thinking step by step. </think> <answer> \\boxed{{{a}}} </answer>")
UNFORMATTED = ("The answer is {a}.", " r </think>\n<answer> {a} </answer>", " r </think> <answer> {a}",
               " r <answer> {a} </answer>", " r </think> {a}")


def golds() -> list[str]:
    return [d["gold"] for d in mt.build_docs("math500")] + [d["gold"] for d in mt.build_docs("gsm8k")]


# --- model-like rewrites ------------------------------------------------------------------------------

def _decimal(v: Fraction) -> str:
    """v as a model writes a decimal (``0.375``, ``2760000``), never in exponent notation."""
    if v.denominator == 1:
        return str(v.numerator)
    exact = Decimal(v.numerator) / Decimal(v.denominator)  # exact whenever the expansion terminates
    short = exact.quantize(Decimal("1e-12"))
    return format(exact if short == exact else exact.quantize(Decimal("1e-6")), "f")  # 1/3: rounded


def _number_forms(v: Fraction) -> list[str]:
    """Equivalent ways a model writes the exact number v."""
    sign, a = ("-" if v < 0 else ""), abs(v)
    p, q = a.numerator, a.denominator
    if q == 1:
        forms = [f"{sign}{p}.0", f"x = {sign}{p}", f"{sign}{p} \\text{{ units}}", f"{sign}\\frac{{{2 * p}}}{{2}}"]
        if p >= 1000:
            forms.append(f"{sign}{p:,}")
        return forms
    forms = [f"{sign}\\dfrac{{{p}}}{{{q}}}", f"{sign}{p}/{q}", f"{sign}\\frac{{{2 * p}}}{{{2 * q}}}"]
    if p < 10 and q < 10:
        forms.append(f"{sign}\\dfrac{p}{q}")
    if p > q:
        forms.append(f"{sign}{p // q} {p % q}/{q}")
    d = q
    for f in (2, 5):
        while d % f == 0:
            d //= f
    if d == 1:
        forms.append(f"{sign}{_decimal(a)}")
        if (a * 100).denominator == 1:
            forms.append(f"{sign}{a * 100}\\%")
    return forms


def _top_level_split(s: str, sep: str) -> list[str]:
    parts, depth, start = [], 0, 0
    for i, ch in enumerate(s):
        depth += ch in "({[" and 1 or (ch in ")}]" and -1 or 0)
        if depth == 0 and s.startswith(sep, i):
            parts.append(s[start:i])
            start = i + len(sep)
    return [*parts, s[start:]]


def _expression_forms(g: str) -> list[str]:
    """Equivalent rewrites of a non-numeric gold."""
    forms = [f"\\displaystyle {g}", g.replace("\\frac", "\\dfrac") if "\\frac" in g else f"{{{g}}}"]
    terms = _top_level_split(g, "+")
    if len(terms) == 2 and all(t.strip() for t in terms) and not terms[1].lstrip().startswith("-"):
        forms.append(f"{terms[1].strip()} + {terms[0].strip()}")
    items = _top_level_split(g, ",")
    if len(items) > 1 and g[:1] not in "([" and "=" not in g:  # a list of solutions: order is free
        forms.append(", ".join(reversed([i.strip() for i in items])))
    if g.startswith("(") and g.endswith(")"):
        forms.append(f"\\left{g[:-1]}\\right)")
    return forms


def near_misses(g: str, v: Fraction | None, rng: random.Random) -> list[str]:
    """Wrong-but-close answers."""
    out = []
    if v is not None:
        out += [str(v + 1) if v.denominator == 1 else f"\\frac{{{v.numerator + 1}}}{{{v.denominator}}}",
                str(-v) if v else "1", _decimal(v * 10)]
        if v.denominator not in (1, 2, 4, 5, 8, 10):
            out.append(f"{float(v):.2f}")  # rounded too far
    digits = [i for i, c in enumerate(g) if c.isdigit()]
    if digits:
        i = rng.choice(digits)
        out.append(g[:i] + str((int(g[i]) + rng.randint(1, 9)) % 10) + g[i + 1:])
    for a, b in (("+", "-"), ("-", "+"), ("\\pi", "2\\pi")):
        if a in g:
            out.append(g.replace(a, b, 1))
    items = _top_level_split(g[1:-1], ",") if g[:1] in "([" else []
    if len(items) > 1:
        out.append(g[0] + ",".join(reversed(items)) + g[-1])
    return out or [g + "+1"]


def build_responses(n: int, seed: int = 0) -> list[tuple[str, str, str]]:
    """(kind, response, gold) triples; kinds: equivalent, near_miss, unformatted."""
    rng = random.Random(seed)
    pool = golds()
    out = []
    for _ in range(n):
        gold = pool[rng.randrange(len(pool))]
        value = exact_value(normalize_answer(gold))
        roll = rng.random()
        if roll < 0.55:
            forms = [f for f in (_number_forms(value[0]) if value else _expression_forms(gold)) if f != gold]
            kind, answer = "equivalent", rng.choice(forms or [f"\\displaystyle {gold}"])
        elif roll < 0.9:
            kind, answer = "near_miss", rng.choice(near_misses(gold, value[0] if value else None, rng))
        else:
            out.append(("unformatted", rng.choice(UNFORMATTED).format(a=gold), gold))
            continue
        out.append((kind, rng.choice(TEMPLATES).format(a=answer), gold))
    return out


# --- the two arms, interleaved by bench.harness ----------------------------------------------------

def pack_arm(grader: mg.Grader, item_sets: list):
    """grade_responses with a started Grader (its start-up, paid once per lm_eval run, is not timed);
    repeat k grades item_sets[k]. Returns (verdicts, methods, timeouts)."""
    it = iter(item_sets)

    def run() -> tuple[list[bool], list[str], int]:
        grades = mg.grade_responses([(response, gold) for _, response, gold in next(it)], grader)
        return [g.correct for g in grades], [g.method for g in grades], sum(g.timed_out for g in grades)
    return run


def math_verify_arm(item_sets: list):
    """Same gate and extraction, then plain math-verify in-process (main thread, its own timeouts)."""
    from math_verify import parse, verify

    it = iter(item_sets)

    def run() -> tuple[list[bool], list[str], int]:
        out = []
        for _, response, gold in next(it):
            span = mg.extract_answer(response) if mg.check_format(response).ok else None
            out.append(bool(span) and bool(verify(parse(f"${gold}$"), parse(f"${span}$"))))
        return out, [], 0
    return run


def agreement(items, verdicts: dict[str, list[bool]]) -> dict:
    """Share graded correct per response kind, per arm, and a few items where the arms disagree."""
    kinds = Counter(kind for kind, _, _ in items)
    out = {name: {k: round(sum(v for v, (kk, _, _) in zip(vs, items) if kk == k) / c, 4) for k, c in kinds.items()}
           for name, vs in verdicts.items()}
    a, b = verdicts.values()
    differ = [(kind, mg.extract_answer(r), gold, x) for (kind, r, gold), x, y in zip(items, a, b) if x != y]
    out["disagreements"] = len(differ)
    out["examples (kind, answer, gold, pack verdict)"] = differ[:10]
    return out


SLOW = ("math_verify", "sympy", "none", "timeout")


def throughput(n: int, repeats: int) -> None:
    """All responses (a new seed per repeat), then only those that reach math-verify in the pack."""
    from math_verify import parse, verify

    verify(parse("$\\frac{1}{2}$"), parse("$0.5$"))  # build math-verify's parser before any timing
    item_sets = [build_responses(n, seed) for seed in range(repeats)]
    items = item_sets[-1]
    print(f"{n} responses per repeat (a new seed each): {dict(Counter(kind for kind, _, _ in items))}; gold "
          f"verbatim {sum(mg.extract_answer(r) == g for _, r, g in items)}; per-item bound {mg.timeout_from_env()} s")
    t0 = time.perf_counter()
    with mg.Grader() as grader:
        grader.start()
        print(f"worker start-up (not timed): {time.perf_counter() - t0:.2f} s")
        report = compare({"pack": pack_arm(grader, item_sets), "math-verify": math_verify_arm(item_sets)},
                         repeats=repeats)
        print(report.markdown(ratio=("math-verify", "pack")))
        (verdicts, methods, _), (mv, _, _) = report.values("pack")[-1], report.values("math-verify")[-1]
        print(f"pack methods (last repeat): {dict(Counter(methods))}; timeouts in all repeats: "
              f"{sum(v[2] for v in report.values('pack'))}")
        print("agreement:", json.dumps(agreement(items, {"pack": verdicts, "math-verify": mv}), default=str))
        slow = [item for item, method in zip(items, methods) if method in SLOW]  # the slow path only
        if slow:
            print(f"\nslow path alone: the {len(slow)} items of the last repeat the pack sends to math-verify")
            slow_report = compare({"pack": pack_arm(grader, [slow] * repeats),
                                   "math-verify": math_verify_arm([slow] * repeats)}, repeats=repeats)
            print(slow_report.markdown(ratio=("math-verify", "pack")))


# --- adversarial responses: every item must come back within its bound ------------------------------

def adversarial() -> list[tuple[str, str, str]]:
    mb = 1 << 20
    wrap = " r </think> <answer> {} </answer>".format
    return [
        ("power tower 10^{10^{10}}", wrap("10^{10^{10}}"), "5"),
        ("power tower 9^{9^{9^{9}}}", wrap("9^{9^{9^{9}}}"), "2"),
        ("2^{2^{2^{2^{2^{2}}}}}", wrap("\\boxed{2^{2^{2^{2^{2^{2}}}}}}"), "7"),
        ("plain 10**10**10", wrap("10**10**10"), "3"),
        ("factorial 100000!", wrap("100000!"), "1"),
        ("huge gold vs huge pred", wrap("10^{10^{9}}+1"), "10^{10^{9}}"),
        ("deep braces x5000", wrap("{" * 5000 + "1" + "}" * 5000), "1"),
        ("deep fractions x300", wrap("\\frac{1}{" * 300 + "2" + "}" * 300), "\\frac12"),
        ("deep parentheses x3000", wrap("(" * 3000 + "1" + ")" * 3000), "1"),
        ("1 MB reasoning, short answer", " " + "x" * mb + " </think> <answer> 18 </answer>", "18"),
        ("1 MB answer span", wrap("1+" * (mb // 2) + "1"), "18"),
        ("1 MB boxed, unbalanced", wrap("\\boxed{" + "1" * mb), "1"),
        ("1 MB of </think>", "</think>" * (mb // 8), "1"),
        ("1 MB no tags", "a" * mb, "1"),
        ("1 MB of unit words", wrap("dollars " * (mb // 8)), "1"),
        ("2000 chars of repeated units", wrap("5" + "\\text{ cm}" * 200), "5"),
        ("2000 chars of malformed units", wrap("5" + "\\text{ cm" * 222), "5"),
        ("100k <answer> opens", " r </think> <answer>" + "<answer>" * 100_000 + " 5 </answer>", "5"),
        ("100k </answer> closes only", "</answer>" * 100_000, "5"),
        ("unbalanced tags", " r </think> <answer> </think> <answer> <answer> 5 </think>", "5"),
        ("alternating tags 50k", "</think> <answer> </answer>" * 50_000, "5"),
        ("unicode full-width digits", wrap("\uff11\uff18"), "18"),
        ("unicode emoji", wrap("\U0001F600 = 18"), "18"),
        ("unicode RTL and combining", wrap("\u202e81\u0301\u0327"), "18"),
        ("unicode CJK", wrap("\u5341\u516b"), "18"),
        ("null bytes", wrap("1\x008"), "18"),
        ("latex commands soup", wrap("\\" * 10_000), "1"),
        ("many dollars", wrap("$" * 100_001), "1"),
        ("matrix 60x60", wrap("\\begin{pmatrix}" + "\\\\".join(["&".join(["x"] * 60)] * 60) + "\\end{pmatrix}"), "1"),
        ("polynomial (x+1)^{200}", wrap("(x+1)^{200}"), "(1+x)^{200}"),
        ("symbolic integral", wrap("\\int_0^{\\infty} e^{-x^{x}} dx"), "1"),
        ("very long sum", wrap("+".join(f"\\frac{{{i}}}{{{i + 1}}}" for i in range(2000))), "1"),
    ]


def adversarial_report(smoke: bool = False) -> dict:
    items = adversarial()[3:5] if smoke else adversarial()
    rows = []
    done = threading.Event()
    with mg.Grader() as g:
        g.start()

        def run() -> None:
            for name, response, gold in items:
                t = time.perf_counter()
                grade = mg.grade_response(response, gold, g)
                rows.append({"item": name, "seconds": round(time.perf_counter() - t, 3), "format_ok": grade.format_ok,
                             "correct": grade.correct, "method": grade.method, "timed_out": grade.timed_out})
            done.set()

        thread = threading.Thread(target=run, daemon=True)
        t = time.perf_counter()
        thread.start()
        finished = done.wait(timeout=len(items) * ITEM_BOUND_S)  # watchdog: nothing may hang
        wall = time.perf_counter() - t
    return {"items": len(items), "finished": finished, "wall_s": round(wall, 2),
            "max_item_s": max(r["seconds"] for r in rows) if rows else None,
            "over_bound": [r["item"] for r in rows if r["seconds"] > ITEM_BOUND_S],
            "timeouts": sum(r["timed_out"] for r in rows), "rows": rows}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--part", choices=("all", "throughput", "adversarial"), default="all")
    parser.add_argument("--n", type=int, default=5000, help="responses in the throughput set")
    add_arguments(parser, repeats=5)
    args = parser.parse_args(argv)
    if args.smoke:
        args.n, args.repeats = 40, SMOKE_REPEATS
    if args.part in ("all", "throughput"):
        throughput(args.n, args.repeats)
    if args.part in ("all", "adversarial"):
        report = adversarial_report(smoke=args.smoke)
        print(json.dumps(report, indent=1, default=str))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
