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

- ``hostile``: GSM8K's integer golds written the way careless or adversarial replies write them
  (``hostile_answer``): scientific notation, a long run of unit words, a zero-width character, a 1 MB
  thought, a nested tag, a hedge, upper-case tags, each with the verdict a careful grader gives.

- ``truncate`` (needs ``tokenizer=PATH``, a folder ``AutoTokenizer`` loads): by question (``truncation_kind``),
  a reply cut off while thinking that is exactly ``max_gen_toks`` tokens of that tokenizer (``cap``: it hit the
  budget), a formatted gold reply of ``max_gen_toks - 1`` tokens (``one_short``: stopped just before it), or
  a short formatted gold reply (``short``); ``exactly_n_tokens`` builds the first two.

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

__all__ = ["GOLD_TEMPLATES", "HOSTILE_KINDS", "TRUNCATION_KINDS", "UNFORMATTED", "WRONG_TEMPLATE", "MathResponder",
           "exactly_n_tokens", "hostile_answer", "kind_of", "responder", "tricky_answer", "truncation_kind"]

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


HOSTILE_KINDS = ("scientific", "times ten", "unit words", "zero width", "1 MB thought", "nested tag", "hedge",
                 "upper-case tags")


def hostile_answer(gold: str, h: int) -> tuple[str, str, bool]:
    """(kind, the reply after the prompt's "<think>", whether a careful grader calls it correct) for the
    ``hostile`` mode; golds that are not integers of two or more digits get a plain correct reply."""
    if not (gold.isdigit() and len(gold) >= 2):
        return "plain", f" plain. </think> <answer> {gold} </answer>", True
    mantissa, exp = f"{gold[0]}.{gold[1:].rstrip('0') or '0'}", len(gold) - 1
    replies = (
        (f" sci. </think> <answer> {mantissa}e{exp} </answer>", True),
        (f" sci. </think> <answer> {mantissa} \\times 10^{{{exp}}} </answer>", True),
        (f" units. </think> <answer> {gold}" + " dollars" * 300 + " </answer>", False),
        (f" zero width. </think> <answer> \u200b{gold} </answer>", True),
        (" " + "x " * 500_000 + f"</think> <answer> {gold} </answer>", True),
        (f" nested. </think> <answer> <answer> {gold} </answer>", True),
        (f" hedge. </think> <answer> {gold} or maybe {int(gold) + 1} </answer>", False),
        (f" other case. </think> <ANSWER> {gold} </ANSWER>", False),
    )
    k = h % len(replies)
    return (HOSTILE_KINDS[k], *replies[k])


TRUNCATION_KINDS = ("cap", "one_short", "short")


def truncation_kind(question: str) -> str:
    """Which reply the ``truncate`` mode gives to ``question``: one of ``TRUNCATION_KINDS``."""
    return TRUNCATION_KINDS[zlib.crc32(question.encode()) % len(TRUNCATION_KINDS)]


def exactly_n_tokens(tokenizer, n: int, head: str, tail: str = "") -> str:
    """``head`` + filler thinking + ``tail`` cut so that the text re-encodes (no special tokens) to exactly ``n``
    tokens of ``tokenizer``; raises when no cut does (the test would then not test what it says)."""
    def count(text: str) -> int:
        return len(tokenizer.encode(text, add_special_tokens=False))

    body = tokenizer.encode(head + " and then I add the next number to the running total" * (n + 8),
                            add_special_tokens=False)
    k = max(0, n - count(tail))
    for cut in sorted(range(max(0, k - 6), k + 7), key=lambda c: abs(c - k)):
        text = tokenizer.decode(body[:cut], clean_up_tokenization_spaces=False) + tail
        if "\nUser:" not in text and count(text) == n:
            return text
    raise ValueError(f"no text of exactly {n} tokens from {head!r} ... {tail!r}")


class MathResponder:
    def __init__(self, mode: str = "gold", unformatted: str = "", tokenizer: str = "") -> None:
        if mode not in ("gold", "unformatted", "mixed", "spacing", "hostile", "truncate"):
            raise ValueError(f"unknown mode {mode!r}")
        if mode == "truncate" and not tokenizer:
            raise ValueError("mode truncate needs tokenizer=PATH")
        self.mode = mode
        self.unformatted_source = unformatted
        self.golds = _golds()
        if tokenizer:
            from transformers import AutoTokenizer

            self.tokenizer = AutoTokenizer.from_pretrained(tokenizer)

    def _truncate(self, question: str, gold: str, gen_kwargs: dict) -> str:
        budget = int(gen_kwargs["max_gen_toks"])
        kind = truncation_kind(question)
        if kind == "cap":  # cut off mid-thought at the budget: no stop string, no closing tags
            return exactly_n_tokens(self.tokenizer, budget, " Let me think")
        if kind == "one_short":  # a whole answer that stopped one token before the budget
            return exactly_n_tokens(self.tokenizer, budget - 1, " Let me think",
                                    f" </think> <answer> {gold} </answer>")
        return GOLD_TEMPLATES[0].format(gold=gold)

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
        if mode == "truncate":
            return self._truncate(question, gold, gen_kwargs)  # base prompts only: no "<think>" added
        if mode == "spacing":
            text = GOLD_TEMPLATES[0].format(gold=tricky_answer(gold, h)[0])
        elif mode == "hostile":
            text = hostile_answer(gold, h)[1]
        elif mode == "gold":
            text = GOLD_TEMPLATES[h % len(GOLD_TEMPLATES)].format(gold=gold)
        elif mode == "wrong":
            text = WRONG_TEMPLATE
        else:
            text = UNFORMATTED[(h // 3) % len(UNFORMATTED)][0].format(gold=gold)
        # the base prompt already opened <think>; a chat reply opens its own
        return text if context.rstrip().endswith("<think>") else "<think>" + text


def responder(mode: str = "gold", unformatted: str = "", tokenizer: str = "", **_ignored) -> MathResponder:
    return MathResponder(mode, unformatted, tokenizer)
