"""Scripted responders for the math think/answer tasks (``--model scripted``).

    --model_args responder=tests.toolkit.math_responders:responder,mode=gold,log=PATH

Golds are read straight from the raw files (MATH-500 ``answer``, GSM8K text after ``####``, the
last ``\\boxed{}`` of a MATH ``solution``), not through the pack's loaders. Modes:

- ``gold``: formatted responses carrying the gold (plain, boxed, or followed by a second answer
  block that must be ignored);
- ``unformatted``: one of ``UNFORMATTED`` per question (each with its known failure kinds), the gold
  always present so a lenient gate would show up as correct answers;
- ``mixed``: gold, wrong (formatted, answer "-987654321") or unformatted, by question;
- ``spacing``: formatted answers that test whitespace between digits (``tricky_answer``): a
  multi-digit integer gold written with its digits apart ("1 8" for 18, must be wrong) or in an
  equivalent form ("x = 18", "\\$18.00"), a fraction gold above 1 as a mixed number ("4 2/3"
  for 14/3, must be correct).

``unformatted=<source>`` (math500, gsm8k or hendrycks_math) switches the questions of that data set
to ``unformatted`` whatever the mode, so one lm_eval run can cover both behaviours.

``kind_of(answer)`` tells a test which template produced a logged answer.
"""

from __future__ import annotations

import json
import os
import re
import zlib
from pathlib import Path

__all__ = ["GOLD_TEMPLATES", "UNFORMATTED", "WRONG_TEMPLATE", "MathResponder", "kind_of", "responder",
           "tricky_answer"]

GOLD_TEMPLATES = (
    " Let me work it out step by step. </think> <answer> {gold} </answer>",
    " Adding things up carefully. </think> <answer> The answer is $\\boxed{{{gold}}}$. </answer>",
    " Short reasoning. </think> <answer> {gold} </answer> Next question: <answer> -987654321 </answer>",
)
WRONG_TEMPLATE = " I am fairly sure. </think> <answer> -987654321 </answer>"
# (template, failure kinds the grader must report)
UNFORMATTED = (
    ("The answer is {gold}.", ("missing_think_close", "missing_answer_open", "missing_answer_close")),
    (" reasoning done </think> {gold}", ("missing_answer_open", "missing_answer_close")),
    (" newline between </think>\n<answer> {gold} </answer>", ("wrong_order",)),
    (" no space between </think><answer> {gold} </answer>", ("wrong_order",)),
    (" never closed the thought <answer> {gold} </answer>", ("missing_think_close",)),
    (" cut off by the token limit </think> <answer> {gold}", ("missing_answer_close",)),
    (" answer first <answer> {gold} </answer> </think>", ("wrong_order",)),
)


def _last_boxed(text: str) -> str:
    start = text.rindex("\\boxed{") + len("\\boxed{")
    depth = 1
    for i in range(start, len(text)):
        depth += {"{": 1, "}": -1}.get(text[i], 0)
        if depth == 0:
            return text[start:i]
    raise ValueError("unbalanced \\boxed{}")


def _golds() -> dict[str, tuple[str, str]]:
    """question -> (gold, source)."""
    root = Path(os.environ["QA_PACK_DATA_DIR"]) / "math"
    golds: dict[str, tuple[str, str]] = {}
    for line in (root / "math500_test.jsonl").read_text(encoding="utf-8").splitlines():
        row = json.loads(line)
        golds[row["problem"].strip()] = (row["answer"], "math500")
    for line in (root / "gsm8k_test.jsonl").read_text(encoding="utf-8").splitlines():
        row = json.loads(line)
        golds[row["question"].strip()] = (row["answer"].split("####")[-1].strip(), "gsm8k")
    fixture = os.environ.get("QA_PACK_HENDRYCKS_MATH_DIR")
    if fixture:
        for path in sorted(Path(fixture).glob("*/test.jsonl")):
            for line in path.read_text(encoding="utf-8").splitlines():
                row = json.loads(line)
                golds[row["problem"].strip()] = (_last_boxed(row["solution"]), "hendrycks_math")
    return golds


def kind_of(answer: str) -> tuple[str, tuple[str, ...]]:
    """('gold'|'wrong'|'unformatted', expected failure kinds) for a logged answer."""
    for template, failures in UNFORMATTED:
        head = template.split("{gold}")[0]
        tail = template.split("{gold}")[1]
        if answer.removeprefix("<think>").startswith(head) and answer.endswith(tail):
            return "unformatted", failures
    return ("wrong" if "-987654321 </answer>" in answer and "Next question" not in answer else "gold"), ()


_IMPROPER = re.compile(r"^\\[dt]?frac\{(\d+)\}\{(\d+)\}$|^(\d+)/(\d+)$")


def tricky_answer(gold: str, h: int) -> tuple[str, bool]:
    """(answer, whether the grader must call it correct) for the ``spacing`` mode."""
    if re.fullmatch(r"\d{2,}", gold):
        return [(" ".join(gold), False), (f"x = {gold}", True), (f"\\${gold}.00", True)][h % 3]
    improper = _IMPROPER.match(gold.strip())
    if improper:
        num, den = (int(g) for g in improper.groups() if g)
        if num > den and num % den:
            return (f"{num // den} {num % den}/{den}", True) if h % 2 else (f"{num // den}\\frac{{{num % den}}}{{{den}}}", True)
    return gold, True


class MathResponder:
    def __init__(self, mode: str = "gold", unformatted: str = "") -> None:
        if mode not in ("gold", "unformatted", "mixed", "spacing"):
            raise ValueError(f"unknown mode {mode!r}")
        self.mode = mode
        self.unformatted_source = unformatted
        self.golds = _golds()

    def _question(self, context: str) -> str:
        matches = [q for q in self.golds if q in context]
        if not matches:
            raise KeyError(f"no known question in the prompt: {context[-200:]!r}")
        return max(matches, key=len)

    def generate(self, context: str, gen_kwargs: dict) -> str:
        question = self._question(context)
        gold, source = self.golds[question]
        h = zlib.crc32(question.encode())
        mode = self.mode if self.mode != "mixed" else ("gold", "wrong", "unformatted")[h % 3]
        if source == self.unformatted_source:
            mode = "unformatted"
        if mode == "spacing":
            text = GOLD_TEMPLATES[0].format(gold=tricky_answer(gold, h)[0])
        elif mode == "gold":
            text = GOLD_TEMPLATES[h % len(GOLD_TEMPLATES)].format(gold=gold)
        elif mode == "wrong":
            text = WRONG_TEMPLATE
        else:
            text = UNFORMATTED[(h // 3) % len(UNFORMATTED)][0].format(gold=gold)
        # the base prompt already opened <think>; a chat reply opens its own
        return text if context.rstrip().endswith("<think>") else "<think>" + text


def responder(mode: str = "gold", unformatted: str = "", **_ignored) -> MathResponder:
    return MathResponder(mode, unformatted)
