"""Grading throughput of the math think/answer grader, and its bounds on adversarial responses.

    QA_PACK_DATA_DIR=../shared/data /work/venv/bin/python bench/bench_math_grader.py            # both parts
    QA_PACK_DATA_DIR=../shared/data /work/venv/bin/python bench/bench_math_grader.py --part throughput --n 5000

Throughput: N responses built from MATH-500 and GSM8K golds (correct in several forms, perturbed into
wrong-but-close answers, badly formatted), graded three ways side by side in one run:
  - ``pack, 1 worker``: ``grade_response`` with one ``Grader`` (what the lm-eval tasks do per doc);
  - ``pack, 2 workers``: the same split over two threads, each with its own ``Grader``;
  - ``math-verify only``: the CS336-style gate, then math-verify in-process on the main thread for every
    formatted response (its own SIGALRM timeouts), as a baseline.
Adversarial: huge exponents, deep nesting, 1 MB responses, unbalanced tags, unicode; every item is
timed, and the run reports the slowest item and whether any went past the 5 s bound.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import statistics
import sys
import threading
import time
from collections import Counter
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from qa_tasks import math_grader as mg
from qa_tasks import math_think as mt

ITEM_BOUND_S = 5.0


def golds() -> list[str]:
    return [d["gold"] for d in mt.build_docs("math500")] + [d["gold"] for d in mt.build_docs("gsm8k")]


def perturb(gold: str, rng: random.Random) -> str:
    """A wrong-but-close answer: one digit changed, or a sign / operator flipped."""
    digits = [i for i, c in enumerate(gold) if c.isdigit()]
    if digits:
        i = rng.choice(digits)
        return gold[:i] + str((int(gold[i]) + rng.randint(1, 9)) % 10) + gold[i + 1:]
    for a, b in (("+", "-"), ("-", "+"), ("\\pi", "2\\pi"), ("x", "y")):
        if a in gold:
            return gold.replace(a, b, 1)
    return gold + "+1"


def build_responses(n: int, seed: int = 0) -> list[tuple[str, str, str]]:
    """(kind, response, gold) triples; kinds: correct, perturbed, unformatted."""
    rng = random.Random(seed)
    pool = golds()
    correct = (" Let me compute. </think> <answer> {g} </answer>",
               " So we get it. </think> <answer> The final answer is $\\boxed{{{g}}}$. </answer>",
               " Done. </think> <answer> ${g}$ </answer>\nUser: more text after the answer",
               " Thinking step by step. </think> <answer> \\boxed{{{g}}} </answer>")
    unformatted = ("The answer is {g}.", " r </think>\n<answer> {g} </answer>", " r </think> <answer> {g}",
                   " r <answer> {g} </answer>", " r </think> {g}")
    out = []
    for i in range(n):
        gold = pool[rng.randrange(len(pool))]
        roll = rng.random()
        if roll < 0.45:
            out.append(("correct", rng.choice(correct).format(g=gold), gold))
        elif roll < 0.8:
            out.append(("perturbed", rng.choice(correct).format(g=perturb(gold, rng)), gold))
        else:
            out.append(("unformatted", rng.choice(unformatted).format(g=gold), gold))
    return out


def adversarial() -> list[tuple[str, str, str]]:
    mb = 1 << 20
    wrap = " r </think> <answer> {} </answer>".format
    items = [
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
    return [(name, response, gold) for name, response, gold in items]


# --- graders under test -----------------------------------------------------------------------------

def grade_all(items, workers: int) -> tuple[list[mg.ResponseGrade], list[float]]:
    results: list = [None] * len(items)
    times: list[float] = [0.0] * len(items)
    graders = [mg.Grader().start() for _ in range(workers)]

    def run(k: int) -> None:
        g = graders[k]
        for i in range(k, len(items), workers):
            t = time.perf_counter()
            results[i] = mg.grade_response(items[i][1], items[i][2], g)
            times[i] = time.perf_counter() - t

    threads = [threading.Thread(target=run, args=(k,)) for k in range(workers)]
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    for g in graders:
        g.close()
    return results, times


def math_verify_only(items) -> list[bool]:
    """Baseline: CS336 gate, then math-verify in-process (main thread, its own SIGALRM timeouts)."""
    from math_verify import parse, verify

    out = []
    for _, response, gold in items:
        if "</think> <answer>" in response and "</answer>" in response:
            answer = response.split("<answer>")[-1].replace("</answer>", "")
            out.append(bool(verify(parse(f"${gold}$"), parse(answer))))
        else:
            out.append(False)
    return out


def throughput(n: int) -> dict:
    items = build_responses(n)
    kinds = Counter(kind for kind, _, _ in items)
    report = {"n": n, "kinds": dict(kinds)}
    for workers in (1, 2):
        t = time.perf_counter()
        grades, times = grade_all(items, workers)
        wall = time.perf_counter() - t
        report[f"pack_{workers}w"] = {
            "wall_s": round(wall, 2), "items_per_s": round(n / wall, 1), "max_item_s": round(max(times), 3),
            "p50_item_ms": round(statistics.median(times) * 1000, 3),
            "accuracy_by_kind": {k: round(sum(g.correct for g, (kk, _, _) in zip(grades, items) if kk == k) / c, 4)
                                 for k, c in kinds.items()},
            "methods": dict(Counter(g.method for g in grades)),
            "timeouts": sum(g.timed_out for g in grades),
        }
    t = time.perf_counter()
    baseline = math_verify_only(items)
    wall = time.perf_counter() - t
    report["math_verify_only"] = {
        "wall_s": round(wall, 2), "items_per_s": round(n / wall, 1),
        "accuracy_by_kind": {k: round(sum(b for b, (kk, _, _) in zip(baseline, items) if kk == k) / c, 4)
                             for k, c in kinds.items()},
    }
    report["speedup_1w_vs_math_verify_only"] = round(report["math_verify_only"]["wall_s"] / report["pack_1w"]["wall_s"], 2)
    report["speedup_2w_vs_1w"] = round(report["pack_1w"]["wall_s"] / report["pack_2w"]["wall_s"], 2)
    return report


def adversarial_report() -> dict:
    items = adversarial()
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
    parser.add_argument("--json", type=Path, help="also write the report here")
    args = parser.parse_args(argv)
    report = {"timeout_s": mg.timeout_from_env(), "cpus": os.cpu_count()}
    if args.part in ("all", "throughput"):
        report["throughput"] = throughput(args.n)
    if args.part in ("all", "adversarial"):
        report["adversarial"] = adversarial_report()
    text = json.dumps(report, indent=1)
    print(text)
    if args.json:
        args.json.write_text(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
