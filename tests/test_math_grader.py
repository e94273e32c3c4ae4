"""Table-driven tests of the math grader (qa_tasks.math.grader) and metric assembly (qa_tasks.math).

Grading cases name the gold by where it comes from in the shared data ("math500:<line index>" is the
``answer`` field of math/math500_test.jsonl, "gsm8k:<i>" the number after "####" in gsm8k_test.jsonl),
so every gold is real. Format cases cover each failure kind alone and in combination.
"""

from __future__ import annotations

import json
import os
import signal
from pathlib import Path

import pytest

from qa_tasks import math as mt
from qa_tasks.errors import QAPackError
from qa_tasks.math import grader as mg
from tests.toolkit.env import DATA_DIR

T, F = True, False
FIXTURE = os.path.join(os.path.dirname(__file__), "fixtures", "hendrycks_math")


def _rows(name: str) -> list[dict]:
    with open(DATA_DIR / "math" / name, encoding="utf-8") as f:
        return [json.loads(line) for line in f if line.strip()]


MATH500 = _rows("math500_test.jsonl")
GSM8K = _rows("gsm8k_test.jsonl")


def gold_of(source: str) -> str:
    name, index = source.split(":")
    row = (MATH500 if name == "math500" else GSM8K)[int(index)]
    return row["answer"] if name == "math500" else row["answer"].split("####")[-1].strip()


@pytest.fixture(scope="module")
def grader():
    with mg.Grader() as g:
        yield g


# (gold source, predicted answer, equivalent?)
GRADING_CASES = [
    # MATH-500 golds (index into math500_test.jsonl)
    ("math500:0", "(3, \\frac{\\pi}{2})", T), ("math500:0", "\\left(3,\\frac{\\pi}2\\right)", T),
    ("math500:0", "(3, \\pi/2)", T), ("math500:0", "(3, \\pi)", F), ("math500:0", "(\\frac{\\pi}{2}, 3)", F),
    ("math500:1", "p-q", T), ("math500:1", "-q + p", T), ("math500:1", "q - p", F),
    ("math500:2", "14/3", T), ("math500:2", "\\dfrac{14}{3}", T), ("math500:2", "\\frac{13}{3}", F),
    ("math500:2", "4.67", F),
    ("math500:4", "Evelyn", T), ("math500:4", "\\text{Evelyn}", T), ("math500:4", "Brenda", F),
    ("math500:7", "90", T), ("math500:7", "90^{\\circ}", T), ("math500:7", "90 degrees", T), ("math500:7", "89^\\circ", F),
    ("math500:8", "3\\sqrt{13}", T), ("math500:8", "\\sqrt{117}", T), ("math500:8", "3\\sqrt{12}", F),
    ("math500:15", "6-5i", T), ("math500:15", "6 + 5i", F),
    ("math500:16", "-50", T), ("math500:16", "\u221250", T), ("math500:16", "50", F),
    ("math500:17", "\\pi", T), ("math500:17", "3.14159", F),
    ("math500:23", "5", T), ("math500:23", "x = 5", T), ("math500:23", "6", F),
    ("math500:25", "-2, 1", T), ("math500:25", "1, 2", F),
    ("math500:31", "11\\sqrt{2}", T), ("math500:31", "\\sqrt{242}", T), ("math500:31", "11\\sqrt{3}", F),
    ("math500:33", "0.3888", T), ("math500:33", "\\frac{243}{624}", F),
    ("math500:36", "7, 5, 3", T), ("math500:36", "3, 5", F),
    ("math500:44", "\\frac54", T), ("math500:44", "5/4", T), ("math500:44", "1.250", T), ("math500:44", "1.26", F),
    ("math500:53", "-\\pi/6", T), ("math500:53", "\\frac{-\\pi}{6}", T), ("math500:53", "\\frac{\\pi}{6}", F),
    ("math500:54", "\\frac{3}{20}", T), ("math500:54", "0.150", T), ("math500:54", "1.5", F),
    ("math500:60", "(6, 31, -1)", T), ("math500:60", "(6,31,1)", F),
    ("math500:73", "\\frac{3}{4}\\sqrt{3}", T), ("math500:73", "\\frac{3\\sqrt3}{4}", T), ("math500:73", "\\frac{\\sqrt{3}}{4}", F),
    ("math500:96", "1\\pm\\sqrt{19}", T), ("math500:96", "1 + \\sqrt{19}", F),
    ("math500:99", "\\begin{pmatrix} -\\frac{1}{3} \\\\ \\frac{2}{3} \\\\ \\frac{5}{3} \\end{pmatrix}", T),
    ("math500:99", "\\begin{pmatrix} 1/3 \\\\ 2/3 \\\\ 5/3 \\end{pmatrix}", F),
    ("math500:103", "(3, 4]", T), ("math500:103", "[3,4]", F), ("math500:103", "(3,4)", F),
    ("math500:106", "4/3", T), ("math500:106", "\\frac{4}{3}", T), ("math500:106", "\\frac34", F),
    ("math500:157", "1.2", T), ("math500:157", "6/5", T),
    ("math500:164", "-\\sqrt3", T), ("math500:164", "\\sqrt{3}", F),
    ("math500:166", "\\frac{270}{7}", T), ("math500:166", "270/7", T), ("math500:166", "\\frac{270}{7}^\\circ", T),
    ("math500:176", "0.0000672", T), ("math500:176", "6.72 \\times 10^{-5}", T), ("math500:176", "0.000672", F),
    ("math500:184", "(2, \\infty)", T), ("math500:184", "[2,\\infty)", F),
    ("math500:198", "10080", T), ("math500:198", "10,080", T), ("math500:198", "10,800", F),
    ("math500:217", "11111111100", T), ("math500:217", "11,111,111,100", T), ("math500:217", "11111111110", F),
    ("math500:219", "\\frac12", T), ("math500:219", "0.5", T), ("math500:219", "1/2", T), ("math500:219", "\\dfrac{1}{2}", T),
    ("math500:219", "\\tfrac12", T), ("math500:219", "0.50", T), ("math500:219", "2", F), ("math500:219", "0.51", F),
    ("math500:227", "C", T), ("math500:227", "(C)", T), ("math500:227", "\\text{(C)}", T), ("math500:227", "D", F),
    ("math500:228", "288\\pi", T), ("math500:228", "\\pi \\cdot 288", T), ("math500:228", "288", F),
    ("math500:235", "5/9", T), ("math500:235", "\\frac{5}{9}", T), ("math500:235", "0.5", F),
    ("math500:242", "32348", T), ("math500:242", "\\$32,348", T), ("math500:242", "32,348 dollars", T), ("math500:242", "32,349", F),
    ("math500:242", "\\frac{64696}{2}", T),
    ("math500:248", "\\begin{pmatrix}-1&0\\\\0&-1\\end{pmatrix}", T),
    ("math500:248", "\\begin{pmatrix}1&0\\\\0&1\\end{pmatrix}", F),
    ("math500:257", "864", T), ("math500:257", "864 \\text{ inches}^2", T), ("math500:257", "846", F),
    ("math500:264", "\\frac{9}{5}", T), ("math500:264", "1.8", T), ("math500:264", "\\frac{4}{5}", F),
    ("math500:274", "2\\pi + 18", T), ("math500:274", "18+\\pi", F),
    ("math500:284", "3\\pm2\\sqrt2", T), ("math500:284", "3+2\\sqrt{2}", F),
    ("math500:293", "(\\frac35, \\frac83]", T), ("math500:293", "(0.6, \\frac{8}{3}]", T), ("math500:293", "[\\frac35,\\frac83]", F),
    ("math500:301", "5.4", T), ("math500:301", "5.4 cents", T), ("math500:301", "0.054", F),
    ("math500:307", "(-\\infty,0]", T), ("math500:307", "(-\\infty, 0)", F),
    ("math500:318", "\\frac{9a+11}{20}", T), ("math500:318", "\\frac{11}{20} + \\frac{9a}{20}", T), ("math500:318", "\\frac{11+9a}{21}", F),
    ("math500:343", "58500", T), ("math500:343", "58,500", T), ("math500:343", "585", F),
    ("math500:347", "6r^2 - 4r - 24", T), ("math500:347", "2(3r^2-2r-12)", T), ("math500:347", "6r^2-4r+24", F),
    ("math500:358", "ellipse", T), ("math500:358", "hyperbola", F),
    ("math500:380", "(0,9)\\cup(9,36)", T), ("math500:380", "(0,36)", F),
    ("math500:383", "[-2,7]", T), ("math500:383", "[-2, 7]", T), ("math500:383", "(-2,7)", F),
    ("math500:382", "20000/\\pi", T), ("math500:382", "\\frac{2000}{\\pi}", F),
    ("math500:499", "106", T), ("math500:499", "106^{\\circ}", T), ("math500:499", "74", F),
    ("math500:430", "\\frac92", T), ("math500:430", "9/2", T), ("math500:430", "4.50", T), ("math500:430", "4.6", F),
    ("math500:30", "52_8", T), ("math500:30", "52_{8}", T), ("math500:30", "53_8", F), ("math500:30", "52_9", F),
    ("math500:20", "9i+6", T), ("math500:20", "6-9i", F),
    ("math500:51", "x^5-x^4+x^3-x^2+x-1", T), ("math500:51", "x^5+x^4+x^3+x^2+x+1", F),
    ("math500:470", "27,648", T), ("math500:470", "27648.0", T), ("math500:470", "27647", F),
    # GSM8K golds (index into gsm8k_test.jsonl)
    ("gsm8k:0", "18", T), ("gsm8k:0", "\\$18", T), ("gsm8k:0", "18 dollars", T), ("gsm8k:0", "18.00", T),
    ("gsm8k:0", "$18$", T), ("gsm8k:0", "17", F), ("gsm8k:0", "81", F), ("gsm8k:0", "1.8", F), ("gsm8k:0", "180", F),
    ("gsm8k:2", "70,000", T), ("gsm8k:2", "\\$70,000", T), ("gsm8k:2", "70000.0", T), ("gsm8k:2", "7000", F),
    ("gsm8k:14", "60\\%", T), ("gsm8k:14", "60%", T), ("gsm8k:14", "60 percent", T), ("gsm8k:14", "40\\%", F),
    ("gsm8k:146", "2125", T), ("gsm8k:146", "2,125", T), ("gsm8k:146", "2,126", F),
    ("gsm8k:489", "-10", T), ("gsm8k:489", "\u221210", T), ("gsm8k:489", "10", F),
    ("gsm8k:611", "1450000", T), ("gsm8k:611", "1,450,000", T), ("gsm8k:611", "1,405,000", F),
    ("gsm8k:1113", "-3", T), ("gsm8k:1113", "3", F),
]


def test_enough_real_grading_cases():
    assert len(GRADING_CASES) >= 100
    assert sum(1 for *_, e in GRADING_CASES if not e) >= 40  # wrong-but-close answers too


@pytest.mark.parametrize("source,pred,expected", GRADING_CASES,
                         ids=[f"{s}-{p[:30]}" for s, p, _ in GRADING_CASES])
def test_equivalence(grader, source, pred, expected):
    verdict = grader.equivalent(pred, gold_of(source))
    assert verdict.correct is expected, verdict
    assert not verdict.timed_out


@pytest.mark.parametrize("source,pred,expected", GRADING_CASES[::7])
def test_equivalence_through_a_formatted_response(grader, source, pred, expected):
    response = f" Working it out. </think> <answer> {pred} </answer>"
    grade = mg.grade_response(response, gold_of(source), grader)
    assert grade.format_ok and grade.correct is expected and grade.answer == pred.strip()
    boxed = mg.grade_response(f" ok </think> <answer> So the answer is $\\boxed{{{pred}}}$. </answer>",
                              gold_of(source), grader)
    assert boxed.correct is expected and boxed.answer == pred.strip()


# (name, response, format ok, failure kinds, extracted answer)
ALL3 = ("missing_think_close", "missing_answer_open", "missing_answer_close")
FORMAT_CASES = [
    ("canonical", " 2 + 3 = 5 </think> <answer> 5 </answer>", T, (), "5"),
    ("chat opens its own think", "<think> 2 + 3 = 5 </think> <answer> 5 </answer>", T, (), "5"),
    ("no inner spaces", " r </think> <answer>5</answer>", T, (), "5"),
    ("newlines inside answer", " r </think> <answer>\n5\n</answer>", T, (), "5"),
    ("dollar math inside answer", " r </think> <answer> $5$ </answer>", T, (), "$5$"),
    ("boxed inside answer", " r </think> <answer> \\boxed{5} </answer>", T, (), "5"),
    ("boxed fraction in a sentence", " r </think> <answer> The answer is \\boxed{\\frac{1}{2}}. </answer>", T, (),
     "\\frac{1}{2}"),
    ("last of two boxes", " r </think> <answer> \\boxed{4} or rather \\boxed{5} </answer>", T, (), "5"),
    ("nested boxes", " r </think> <answer> \\boxed{\\boxed{3}} </answer>", T, (), "3"),
    ("fbox", " r </think> <answer> \\fbox{5} </answer>", T, (), "5"),
    ("boxed with a space", " r </think> <answer> $\\boxed 5$ </answer>", T, (), "5"),
    ("unbalanced box gives no answer", " r </think> <answer> \\boxed{5 </answer>", T, (), None),
    ("empty box gives no answer", " r </think> <answer> \\boxed{} </answer>", T, (), None),
    ("empty answer", " r </think> <answer> </answer>", T, (), None),
    ("whitespace answer", " r </think> <answer> \n\t </answer>", T, (), None),
    ("text after the answer is ignored", " r </think> <answer> 5 </answer> User: next <answer> 7 </answer>", T, (), "5"),
    ("first of two gated blocks", " r </think> <answer> 4 </answer> no wait </think> <answer> 5 </answer>", T, (), "4"),
    ("re-opened answer inside the block", " r </think> <answer> 3 <answer> 7 </answer>", T, (), "7"),
    ("draft answer in the thinking", "<answer>2</answer> hmm </think> <answer> 3 </answer>", T, (), "3"),
    ("several think closes", " a </think> b </think> <answer> 3 </answer>", T, (), "3"),
    ("close only before the gate (CS336)", " </answer> x </think> <answer> 9", T, (), "9"),
    ("close only before the gate, empty", " </answer> </think> <answer>", T, (), None),
    ("double close", " r </think> <answer> 5 </answer></answer>", T, (), "5"),
    ("end-of-turn token after", "<think> r </think> <answer> 5 </answer><|im_end|>", T, (), "5"),
    ("unicode answer", " r </think> <answer> \u03c0 </answer>", T, (), "\u03c0"),
    ("long reasoning", " " + "step " * 20000 + "</think> <answer> 5 </answer>", T, (), "5"),
    ("nested answer tags", " r </think> <answer> 3 <answer> 5 </answer></answer>", T, (), "5"),
    ("many re-opened answer tags", " r </think> <answer>" + "<answer>" * 10000 + " 5 </answer>", T, (), "5"),
    ("gate again inside the block", " r </think> <answer> </think> <answer> 5 </answer>", T, (), "5"),
    ("empty block, answer after it", " r </think> <answer></answer> 5", T, (), None),
    ("upper-case tags inside the block", " r </think> <answer> <ANSWER>5</ANSWER> </answer>", T, (),
     "<ANSWER>5</ANSWER>"),
    ("a long run of spaces in the block", " r </think> <answer> 5" + " " * 100_000 + "</answer>", T, (), "5"),
    ("zero-width space in the answer", " r </think> <answer> \u200b5 </answer>", T, (), "\u200b5"),
    ("NUL after the gate", " r </think> <answer>\x00</answer>", T, (), "\x00"),
    # missing_think_close
    ("answer tags without think close", " r <answer> 5 </answer>", F, ("missing_think_close",), None),
    ("malformed think close", " r < /think> <answer> 5 </answer>", F, ("missing_think_close",), None),
    ("think close with a space", " r </think > <answer> 5 </answer>", F, ("missing_think_close",), None),
    ("upper-case think close", " r </THINK> <answer> 5 </answer>", F, ("missing_think_close",), None),
    # missing_answer_open
    ("malformed answer open", " r </think> < answer> 5 </answer>", F, ("missing_answer_open",), None),
    ("answer close without open", " r </think> 5 </answer>", F, ("missing_answer_open",), None),
    # missing_answer_close
    ("truncated after the answer", " r </think> <answer> 5", F, ("missing_answer_close",), None),
    ("truncated inside the close tag", " r </think> <answer> 5 </ans", F, ("missing_answer_close",), None),
    ("malformed answer close", " r </think> <answer> 5 </ answer>", F, ("missing_answer_close",), None),
    ("truncated right after the gate", " r </think> <answer>", F, ("missing_answer_close",), None),
    # wrong_order
    ("no space", " r </think><answer> 5 </answer>", F, ("wrong_order",), None),
    ("newline", " r </think>\n<answer> 5 </answer>", F, ("wrong_order",), None),
    ("blank line", " r </think>\n\n<answer> 5 </answer>", F, ("wrong_order",), None),
    ("two spaces", " r </think>  <answer> 5 </answer>", F, ("wrong_order",), None),
    ("tab", " r </think>\t<answer> 5 </answer>", F, ("wrong_order",), None),
    ("non-breaking space", " r </think>\u00a0<answer> 5 </answer>", F, ("wrong_order",), None),
    ("answer before think close", " r <answer> 5 </answer> </think>", F, ("wrong_order",), None),
    ("text between", " r </think> so <answer> 5 </answer>", F, ("wrong_order",), None),
    # combinations
    ("no tags at all", "The answer is 5.", F, ALL3, None),
    ("empty response", "", F, ALL3, None),
    ("whitespace response", "  \n ", F, ALL3, None),
    ("chat model stuck thinking", "<think> still thinking", F, ALL3, None),
    ("upper-case tags", " r </THINK> <ANSWER> 5 </ANSWER>", F, ALL3, None),
    ("boxed only", " so \\boxed{5}", F, ALL3, None),
    ("think close only", " r </think> 5", F, ("missing_answer_open", "missing_answer_close"), None),
    ("answer open only", " r <answer> 5", F, ("missing_think_close", "missing_answer_close"), None),
    ("answer close only", " r 5 </answer>", F, ("missing_think_close", "missing_answer_open"), None),
    ("newline and truncated", " r </think>\n<answer> 5", F, ("missing_answer_close", "wrong_order"), None),
    ("no space and truncated", " r </think><answer> 5", F, ("missing_answer_close", "wrong_order"), None),
    ("open before close, truncated", " r <answer> 5 </think>", F, ("missing_answer_close", "wrong_order"), None),
]


def test_enough_format_cases_covering_every_kind():
    assert len(FORMAT_CASES) >= 50
    seen = {kind for *_, kinds, _ in FORMAT_CASES for kind in kinds}
    assert seen == set(mg.FAILURE_KINDS)
    for kind in mg.FAILURE_KINDS:  # each kind also appears alone
        assert any(kinds == (kind,) for *_, kinds, _ in FORMAT_CASES), kind


@pytest.mark.parametrize("name,response,ok,kinds,answer", FORMAT_CASES, ids=[c[0] for c in FORMAT_CASES])
def test_format_gate(name, response, ok, kinds, answer):
    check = mg.check_format(response)
    assert (check.ok, check.failures) == (ok, kinds)
    assert check.ok == ("</think> <answer>" in response and "</answer>" in response)  # CS336, literally
    assert mg.extract_answer(response) == answer if ok else True


@pytest.mark.parametrize("name,response,ok,kinds,answer", FORMAT_CASES, ids=[c[0] for c in FORMAT_CASES])
def test_rates_add_up_for_every_response(grader, name, response, ok, kinds, answer):
    metrics = mt.score_response(response, "5", grader)
    assert metrics["accuracy"] + metrics["wrong_answer_rate"] + metrics["format_failure_rate"] == 1.0
    assert metrics["format_accuracy"] == float(ok)
    assert {k for k in mg.FAILURE_KINDS if metrics[k]} == set(kinds)
    assert metrics["response_chars"] == len(response)
    # gold 5: right exactly when the extracted answer is 5 ("$5$" included)
    assert metrics["accuracy"] == float(answer is not None and mg.normalize_answer(answer) == "5")
    key = "response_chars_correct" if metrics["accuracy"] else "response_chars_incorrect"
    assert metrics[key] == len(response) and len({"response_chars_correct", "response_chars_incorrect"} & set(metrics)) == 1


def test_unformatted_response_with_the_gold_is_not_correct(grader):
    """The gate comes first: a right answer in the wrong format counts as a format failure."""
    metrics = mt.score_response(" 5 </think>\n<answer> 5 </answer>", "5", grader)
    assert metrics["accuracy"] == 0.0 and metrics["format_failure_rate"] == 1.0 and metrics["wrong_order"] == 1.0


def test_summarize_matches_the_lm_eval_aggregation(grader):
    responses = [(" r </think> <answer> 18 </answer>", "18"), (" r </think> <answer> 17 </answer>", "18"),
                 ("18", "18"), (" r </think> <answer> \\frac12 </answer>", "0.5")]
    rows = [mt.score_response(r, g, grader) for r, g in responses]
    summary = mt.summarize(rows)
    assert summary["accuracy"] == 0.5 and summary["wrong_answer_rate"] == 0.25 and summary["format_failure_rate"] == 0.25
    assert summary["accuracy"] + summary["wrong_answer_rate"] + summary["format_failure_rate"] == 1.0
    assert summary["n"] == 4 and summary["grader_timeouts"] == 0
    assert summary["response_chars_correct"] == (len(responses[0][0]) + len(responses[3][0])) / 2
    assert summary["response_chars_incorrect"] == (len(responses[1][0]) + 2) / 2
    assert summary["missing_think_close"] == 0.25 and summary["wrong_order"] == 0.0


# --- gold extraction ----------------------------------------------------------------------------

def test_gsm8k_gold_is_the_number_after_the_marks():
    for row in GSM8K:
        gold = mg.gold_from_gsm8k(row["answer"])
        assert gold == row["answer"].split("####")[-1].strip().replace(",", "")
        assert gold.lstrip("-").isdigit()
    with pytest.raises(ValueError):
        mg.gold_from_gsm8k("no final answer line")


def test_math_gold_from_answer_field_or_last_box():
    agree = 0
    for row in MATH500:
        assert mg.gold_from_math(row) == row["answer"].strip()
        boxed = mg.gold_from_math({"solution": row["solution"]})  # the hendrycks_math row shape
        assert boxed
        agree += mg.normalize_answer(boxed) == mg.normalize_answer(row["answer"])
    assert agree >= 0.95 * len(MATH500)
    assert mg.gold_from_math({"solution": "no box here"}) is None


@pytest.mark.parametrize("text,expected", [
    ("$\\boxed{5}$", "5"), ("\\boxed{\\frac{1}{2}}", "\\frac{1}{2}"), ("a \\boxed{1} b \\boxed{2}", "2"),
    ("\\boxed{\\{1,2\\}}", "\\{1,2\\}"), ("\\boxed 7$", "7"), ("\\fbox{x}", "x"), ("\\boxed{", None),
    ("no box", None), ("\\boxed", None),
])
def test_last_boxed(text, expected):
    assert mg.last_boxed(text) == expected


# --- the bounded worker ---------------------------------------------------------------------------

def test_timeout_counts_as_wrong_and_the_grader_recovers():
    with mg.Grader(timeout_s=0.5) as g:
        verdict = g.equivalent("10^{10^{10}}", "5")
        assert verdict == mg.Verdict(False, "timeout", timed_out=True) and g.timeouts == 1
        assert g.equivalent("\\frac{9}{5}", "1\\frac{4}{5}").correct  # same worker, still usable
        metrics = mt.score_response(" r </think> <answer> 9^{9^{9^{9}}} </answer>", "2", g)
        assert metrics["grader_timeouts"] == 1.0 and metrics["wrong_answer_rate"] == 1.0 and g.timeouts == 2


def test_a_stuck_worker_is_killed_and_replaced():
    """A worker that stops answering (as when C code ignores the soft alarm) hits the hard bound."""
    with mg.Grader(timeout_s=0.3) as g:
        g.start()
        stuck = g._worker.proc
        os.kill(stuck.pid, signal.SIGSTOP)
        verdicts = g.equivalent_many([("1+x", "x+1"), ("2", "2"), ("3", "4")])  # stuck on the first item
        assert [v.method for v in verdicts] == ["timeout", "string", "number"]  # the rest still graded
        assert stuck.poll() is not None  # killed
        assert g.equivalent("1+x", "x+1").correct and g.timeouts == 1


def test_a_dead_worker_is_restarted_without_counting_a_timeout(grader):
    before = grader.timeouts
    grader.start()
    grader._worker.proc.kill()
    grader._worker.proc.wait()
    assert grader.equivalent("2x+2", "2(x+1)").correct and grader.timeouts == before


def test_grading_runs_off_the_main_thread(grader):
    """math-verify's own SIGALRM timeouts would fail here; the worker process makes threads fine."""
    import threading

    results = []
    thread = threading.Thread(target=lambda: results.append(grader.equivalent("\\sqrt{50}", "5\\sqrt{2}")))
    thread.start()
    thread.join()
    assert results == [mg.Verdict(True, results[0].method)] and results[0].correct


def test_bad_timeout_is_rejected(monkeypatch):
    with pytest.raises(ValueError):
        mg.Grader(timeout_s=0)
    monkeypatch.setenv(mg.TIMEOUT_ENV, "soon")
    with pytest.raises(QAPackError, match="QA_PACK_MATH_TIMEOUT_S=soon is not a positive number"):
        mg.Grader()
    monkeypatch.setenv(mg.TIMEOUT_ENV, "0.75")
    assert mg.Grader().timeout_s == 0.75  # no worker is started until an item needs one


# --- prompts and data -----------------------------------------------------------------------------

def test_r1_zero_prompt_and_completion_round_trip(grader):
    row = mt.load_gsm8k("train")[0]
    prompt = mt.r1_zero_prompt(row["question"])
    assert prompt.endswith("\nAssistant: <think>") and f"\nUser: {row['question']}\n" in prompt
    assert prompt.startswith("A conversation between User and Assistant.")
    completion = mt.r1_zero_completion(row["reasoning"], row["answer"])
    assert completion.startswith(" ") and completion.endswith(" </answer>")
    assert mt.score_response(completion, row["answer"], grader)["accuracy"] == 1.0


def test_chat_messages_and_completion(grader):
    messages = mt.chat_messages("What is 2+3?")
    assert [m["role"] for m in messages] == ["user"]
    assert "What is 2+3?" in messages[0]["content"] and "<think>" in messages[0]["content"]
    assert mt.score_response(mt.chat_completion("2+3=5", "5"), "5", grader)["accuracy"] == 1.0


def test_gsm8k_loader():
    test, train = mt.load_gsm8k("test"), mt.load_gsm8k("train")
    assert (len(test), len(train)) == (1319, 7473)
    for row in test + train:
        assert set(row) == {"question", "reasoning", "answer"}
        assert "####" not in row["reasoning"] and "<<" not in row["reasoning"] and row["reasoning"]
    assert test[0]["answer"] == "18"
    with pytest.raises(QAPackError, match="split"):
        mt.load_gsm8k("validation")


def test_math500_docs():
    docs = mt.build_docs("math500")
    assert len(docs) == 500 and docs[0]["gold"] == MATH500[0]["answer"]
    assert all(set(d) == {"id", "question", "gold", "subject", "level"} for d in docs)
    assert len({d["id"] for d in docs}) == 500


def test_hendrycks_loader_reads_the_local_layout(monkeypatch):
    monkeypatch.setenv(mt.HENDRYCKS_ENV, FIXTURE)
    mt.load_hendrycks_math.cache_clear()
    try:
        docs = mt.build_docs("hendrycks_math")
    finally:
        mt.load_hendrycks_math.cache_clear()
    assert len(docs) == 14 and {d["subject"] for d in docs} == set(mt.HENDRYCKS_SUBJECTS)
    by_id = {d["id"]: d for d in docs}
    assert by_id["hendrycks_math/algebra/1"]["gold"] == "\\frac{3}{4}"
    assert by_id["hendrycks_math/counting_and_probability/1"]["gold"] == "\\dfrac{1}{4}"
    assert by_id["hendrycks_math/algebra/0"]["level"] == "Level 1"


def test_hendrycks_loader_errors(monkeypatch, tmp_path):
    monkeypatch.setenv(mt.HENDRYCKS_ENV, str(tmp_path / "nowhere"))
    mt.load_hendrycks_math.cache_clear()
    with pytest.raises(QAPackError, match=mt.HENDRYCKS_ENV):
        mt.load_hendrycks_math()
    (tmp_path / "algebra").mkdir()
    (tmp_path / "algebra" / "test.jsonl").write_text(json.dumps({"problem": "p", "solution": "s \\boxed{1}"}) + "\n")
    monkeypatch.setenv(mt.HENDRYCKS_ENV, str(tmp_path))
    with pytest.raises(QAPackError, match="counting_and_probability/test.jsonl is missing"):
        mt.load_hendrycks_math()
    for subject in mt.HENDRYCKS_SUBJECTS[1:]:
        (tmp_path / subject).mkdir()
        (tmp_path / subject / "test.jsonl").write_text(json.dumps({"problem": "p", "solution": "no box"}) + "\n")
    with pytest.raises(QAPackError, match="no .*boxed"):
        mt.load_hendrycks_math()
    mt.load_hendrycks_math.cache_clear()


def test_hendrycks_without_a_local_copy_goes_to_the_hub(monkeypatch):
    """The shared data has no MATH copy: the Hub is tried, and offline that fails as one clear line."""
    monkeypatch.delenv(mt.HENDRYCKS_ENV, raising=False)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_DATASETS_OFFLINE", "1")
    mt.load_hendrycks_math.cache_clear()
    with pytest.raises(QAPackError) as info:
        mt.load_hendrycks_math()
    mt.load_hendrycks_math.cache_clear()
    message = str(info.value)
    assert "EleutherAI/hendrycks_math" in message and "QA_PACK_DATA_DIR" in message and "\n" not in message


def test_malformed_gsm8k_file_is_one_clear_error(monkeypatch, tmp_path):
    (tmp_path / "math").mkdir()
    (tmp_path / "math" / "gsm8k_test.jsonl").write_text(json.dumps({"question": "q", "answer": "no marks"}) + "\n")
    monkeypatch.setenv("QA_PACK_DATA_DIR", str(tmp_path))
    mt.load_gsm8k.cache_clear()
    try:
        with pytest.raises(QAPackError, match="row 1 has no '#### <number>'"):
            mt.load_gsm8k("test")
    finally:
        mt.load_gsm8k.cache_clear()


@pytest.mark.parametrize("task,source", [("math500_think", "math500"), ("gsm8k_think_chat", "gsm8k"),
                                         ("hendrycks_math_think", "hendrycks_math"), ("squad_v1", None)])
def test_each_math_task_names_its_data_set(task, source):
    from qa_tasks.harness.task_index import task_options

    assert task_options(task).get("source") == source  # what the preflight and the loader read


def test_readme_failure_examples_match_the_grader():
    """The examples table in tasks_yaml/math/README.md is what the grader reports."""
    text = (Path(__file__).resolve().parent.parent / "tasks_yaml" / "math" / "README.md").read_text(encoding="utf-8")
    table = text.split("### One example of each failure kind")[1].split("And the passing ones")[0]
    rows = [line for line in table.splitlines() if line.startswith("| `")]
    assert len(rows) >= 8
    seen = set()
    for row in rows:
        response_cell, kinds_cell = row.strip("|").rsplit("|", 1)
        response = response_cell.strip().split("`")[1].replace("\\n", "\n")
        kinds = tuple(k.strip(" `") for k in kinds_cell.split(","))
        assert mg.check_format(response).failures == kinds, row
        seen.update(kinds)
    assert seen == set(mg.FAILURE_KINDS)


# --- where the pack departs from CS336's r1_zero_reward_fn (see qa_tasks.math.grader) ----------------

def _formatted(answer: str) -> str:
    return f" r </think> <answer> {answer} </answer>"


def cs336_answer(response: str) -> str:
    """CS336's extraction, literally: after the last <answer>, every </answer> deleted."""
    return response.split("<answer>")[-1].replace("</answer>", "")


# (name, response, gold, pack verdict); every row is a case CS336 (or math-verify) decides otherwise
CS336_DEPARTURES = [
    ("first gated block counts, not the last <answer>",
     " r </think> <answer> 4 </answer> User: next <answer> 7 </answer>", "4", T),
    ("a later block is ignored", " r </think> <answer> 4 </answer> User: next <answer> 7 </answer>", "7", F),
    ("digits apart are not one number", _formatted("2 3"), "23", F),
    ("digits apart are not their sum (CS336 2+3, math-verify 5)", _formatted("2 3"), "5", F),
    ("three digits apart are not 123", _formatted("1 2 3"), "123", F),
    ("three digits apart are not their product (math-verify 6)", _formatted("1 2 3"), "6", F),
    ("spaced thousands are not read", _formatted("10 080"), "10080", F),
    ("mixed number as CS336 reads it (math-verify 1)", _formatted("3 1/4"), "\\frac{13}{4}", T),
    ("mixed number is not 31/4", _formatted("3 1/4"), "\\frac{31}{4}", F),
    ("negative mixed number is -13/4 (CS336 -11/4)", _formatted("-3 1/4"), "-\\frac{13}{4}", T),
    ("negative mixed number is not -11/4", _formatted("-3 1/4"), "-\\frac{11}{4}", F),
    ("LaTeX mixed number with a space", _formatted("3 \\frac{1}{4}"), "3.25", T),
    ("unbalanced braces are malformed (math-verify reads 5)", _formatted("5\\text{ cm\\text{ cm"), "5", F),
    ("vulgar fraction", _formatted("\u00bd"), "\\frac{1}{2}", T),
    ("vulgar fraction after a whole number", _formatted("3\u00be"), "15/4", T),
    ("vulgar fraction, wrong value", _formatted("\u00bc"), "\\frac{1}{2}", F),
    ("square root sign", _formatted("\u221a2"), "\\sqrt{2}", T),
    ("square root sign with braces", _formatted("\u221a{50}"), "5\\sqrt{2}", T),
    ("percent of a fraction", _formatted("50\\%"), "\\frac12", T),
    ("percent of the number itself", _formatted("50\\%"), "50", T),
    ("percent, wrong", _formatted("50\\%"), "0.6", F),
    ("two exact numbers math-verify rounds together", _formatted("\\frac{1}{2^{99}}"), "\\frac{1}{2^{98}}", F),
    ("digits in another base", _formatted("52_9"), "52_8", F),
    ("a unit twice is not a number and its unit (math-verify reads 5)", _formatted("5\\text{ cm}\\text{ cm}"), "5", F),
    ("scientific notation is the number", _formatted("1.5e3"), "1500", T),
]


@pytest.mark.parametrize("name,response,gold,expected", CS336_DEPARTURES, ids=[c[0] for c in CS336_DEPARTURES])
def test_departures_from_cs336(grader, name, response, gold, expected):
    grade = mg.grade_response(response, gold, grader)
    assert grade.format_ok and grade.correct is expected and not grade.timed_out, grade


def test_the_answer_block_differs_from_cs336_extraction():
    response = CS336_DEPARTURES[0][1]
    assert mg.extract_answer(response) == "4" and cs336_answer(response).strip() == "7"


def test_readme_lists_every_departure():
    """tasks_yaml/math/README.md's departures section names each rule the table above tests."""
    text = (Path(__file__).resolve().parent.parent / "tasks_yaml" / "math" / "README.md").read_text(encoding="utf-8")
    section = text.split("### Where the pack departs from CS336")[1].split("\n## ")[0]
    for needle in ("first", "2 3", "3 1/4", "-3 1/4", "5\\text{ cm\\text{ cm", "½", "√", "50\\%", "1/2^99", "52_8",
                   "5\\text{ cm}\\text{ cm}", "1.5e3"):
        assert needle in section, needle


@pytest.mark.parametrize("text,expected", [
    ("2 3", "2 3"), ("1  2\t3", "1 2 3"), ("x + 1", "x+1"), ("3 1/4", "\\frac{13}{4}"), ("-3 1/4", "-\\frac{13}{4}"),
    ("3\\frac{1}{4}", "\\frac{13}{4}"), ("\u00bd", "\\frac{1}{2}"), ("\u221a2", "\\sqrt{2}"), ("\u22125", "-5"),
    ("5 \\text{ cm}^2", "5"), ("5 dollars dollars", "5dollarsdollars"), ("dollars", "dollars"), ("10 080", "10 080"),
    ("5 square feet", "5"), ("5 ft feet", "5ftfeet"), ("5 \\textbf{cm} \\text{ cm}", "5cm"), ("1.5e3", "1500"),
    ("1.5E+3", "1500"), ("1.5 \\cdot 10^3", "1500"), ("6.72 \\times 10^{-5}", "0.0000672"), ("2e-1", "2e-1"),
    ("1.5\u00d710\u00b3", "1500"), ("5\u200b", "5"), ("1500.0", "1500"), ("-0.0", "0"),
    ("18.00", "18"), ("x = 5", "5"), ("\\$1,000", "1000"), ("{6 - 5i}", "6-5i"), ("{a}+{b}", "{a}+{b}"),
])
def test_normalize_answer(text, expected):
    assert mg.normalize_answer(text) == expected


def test_long_answers_of_repeated_units_are_graded_within_the_bound(grader):
    """Clean-up is linear: a 1 MB answer of unit words is decided well inside the bound, and wrong (more
    unit words than a number and its unit have)."""
    verdict = grader.equivalent("18" + " dollars" * 131_072, "18")
    assert verdict == mg.Verdict(False, "units")
    verdict = grader.equivalent("5" + "\\text{ cm" * 200_000, "5")
    assert verdict == mg.Verdict(False, "malformed")


def test_clean_up_runs_in_the_worker_not_the_caller(grader, monkeypatch):
    """Normalisation is inside the per-item bound: the caller never calls it."""
    from qa_tasks.math import normalize as math_normalize

    def boom(*args):
        raise AssertionError("normalisation ran in the caller")

    monkeypatch.setattr(math_normalize, "normalize_answer", boom)
    monkeypatch.setattr(math_normalize, "quick_verdict", boom)
    monkeypatch.setattr(mg, "quick_verdict", boom)
    assert grader.equivalent("\\$18.00", "18").correct
    assert mg.grade_response(_formatted("2 3"), "23", grader).method == "split_number"


def test_a_batch_keeps_the_bound_per_item():
    items = [(_formatted("\\frac{14}{3}"), "4 2/3"), (_formatted("10^{10^{10}}"), "5"), ("no format", "1"),
             (_formatted("x = 5"), "5"), (_formatted(""), "5")]
    with mg.Grader(timeout_s=0.5) as g:
        grades = mg.grade_responses(items, g)
        assert [x.correct for x in grades] == [T, F, F, T, F]
        assert [x.method for x in grades] == ["string", "timeout", "format", "string", "empty"]
        assert g.timeouts == 1


# --- hostile answers: scientific notation, unit words, odd unicode, huge and empty answers -----------------

# (name, predicted answer, gold source or literal gold, correct, Verdict.method)
HOSTILE_ANSWERS = [
    # issue: scientific notation is a number (E-notation, \times / \cdot / * 10^k, superscripts), decided exactly
    ("E-notation vs LaTeX gold", "1.5e3", "1.5 \\times 10^{3}", T, "string"),
    ("capital E with sign vs LaTeX gold", "1.5E+3", "1.5 \\times 10^{3}", T, "string"),
    ("cdot vs LaTeX gold", "1.5 \\cdot 10^3", "1.5 \\times 10^{3}", T, "string"),
    ("E-notation vs plain gold", "1.5e3", "1500", T, "string"),
    ("capital E vs plain gold", "1.5E+3", "1500", T, "string"),
    ("capital E, no sign", "1.5E3", "1500", T, "string"),
    ("cdot vs plain gold", "1.5 \\cdot 10^3", "1500", T, "string"),
    ("star vs plain gold", "1.5*10^3", "1500", T, "string"),
    ("mantissa above ten", "15 \\times 10^{2}", "1500", T, "string"),
    ("integer mantissa, unsigned exponent", "3e2", "300", T, "string"),
    ("zero-padded exponent", "1.5e+03", "1500", T, "string"),
    ("mantissa without integer part", ".5e1", "5", T, "string"),
    ("negative exponent", "1.5e-3", "0.0015", T, "string"),
    ("negative exponent vs fraction", "1.5e-3", "\\frac{3}{2000}", T, "number"),
    ("negative number", "-2.5e-4", "-0.00025", T, "string"),
    ("dollar-wrapped", "$1.5e3$", "1500", T, "string"),
    ("escaped dollar before it", "\\$1.5e3", "1500", T, "string"),
    ("unit after it", "1.5e3 dollars", "1500", T, "string"),
    ("unicode times and superscript", "1.5\u00d710\u00b3", "1500", T, "string"),
    ("unicode dot and superscript", "1.5\u00b710\u00b3", "1500", T, "string"),
    ("unicode negative superscript", "6.72\u00d710\u207b\u2075", "math500:176", T, "string"),
    ("E-notation vs real gold", "6.72e-5", "math500:176", T, "string"),
    ("E-notation vs thousands gold", "1.45e6", "gsm8k:611", T, "string"),
    ("LaTeX vs GSM8K gold", "7 \\times 10^4", "gsm8k:2", T, "string"),
    ("E-notation, wrong power", "7e3", "gsm8k:2", F, "number"),
    ("E-notation, off by one", "1.5e3", "1501", F, "number"),
    ("E-notation is not its mantissa", "1.5e3", "1.5", F, "number"),
    ("within math-verify's tolerance, still wrong", "1.5000001e-3", "0.0015", F, "number"),
    ("LaTeX within math-verify's tolerance, still wrong", "1.5000001 \\times 10^{-3}", "0.0015", F, "number"),
    ("big exponent, through math-verify", "1e100", "10^{100}", T, "sympy"),
    ("four-digit exponent, through math-verify", "1e9999", "10^{9999}", T, "sympy"),
    ("tiny is not zero", "1e-999", "0", F, "math_verify"),
    ("x is a variable, not times", "1.5 x 10^3", "1500", F, "math_verify"),
    ("2e-1 is 2e - 1 (Euler's number)", "2e-1", "0.2", F, "math_verify"),
    ("2e-1 is 2e - 1, as the gold writes it", "2e-1", "2e - 1", T, "string"),
    ("two exponents", "1.5e3e3", "1500", F, "math_verify"),
    # issue: unit words are dropped at most twice, each unit once; more is not a number with its unit
    ("unit word twice", "5 dollars dollars", "5", F, "units"),
    ("unit word three times", "5 dollars dollars dollars", "5", F, "units"),
    ("singular and plural of one unit", "5 dollar dollars", "5", F, "units"),
    ("abbreviation and word of one unit", "5 ft feet", "5", F, "units"),
    ("unit words in any case", "18 Dollars DOLLARS", "gsm8k:0", F, "units"),
    ("three different unit words", "5 ways people students", "5", F, "units"),
    ("three unit words with a square", "5 square feet inches", "5", F, "units"),
    ("unit twice inside one text group (math-verify reads 5)", "5 \\text{ dollars dollars}", "5", F, "units"),
    ("unit twice in two text groups (math-verify reads 5)", "5\\text{ cm}\\text{ cm}", "5", F, "units"),
    ("unit three times in text groups", "5\\text{ cm}\\text{ cm}\\text{ cm}", "5", F, "units"),
    ("unit in textbf and in text", "5 \\textbf{cm} \\text{ cm}", "5", F, "units"),
    ("only unit words", "dollars dollars", "5", F, "math_verify"),
    ("a number and its unit", "18 dollars", "gsm8k:0", T, "string"),
    ("two unit words", "5 square feet", "5", T, "string"),
    ("two abbreviations", "5 sq ft", "5", T, "string"),
    ("two unit words in a text group", "864 \\text{ square inches}", "math500:257", T, "string"),
    ("unit with a power", "5 units^2", "5", T, "string"),
    ("unit in mbox", "5 \\mbox{ dollars}", "5", T, "string"),
    ("unit then a full stop", "5 dollars.", "5", T, "string"),
    # odd unicode, malformed, huge and empty answers
    ("no answer", None, "5", F, "empty"),
    ("empty answer", "", "5", F, "empty"),
    ("whitespace answer", " \n\t ", "5", F, "empty"),
    ("zero-width space before", "\u200b5", "5", T, "string"),
    ("byte-order mark after", "5\ufeff", "5", T, "string"),
    ("full-width digit", "\uff15", "5", T, "string"),
    ("roman numeral sign", "\u2164", "5", F, "math_verify"),
    ("full-width digit apart from another", "5 \uff15", "55", F, "split_number"),
    ("closing brace alone", "5}", "5", F, "malformed"),
    ("braces around it", "{5}", "5", T, "string"),
    ("number inside text", "\\text{5}", "5", T, "string"),
    ("division by zero", "\\frac{1}{0}", "5", F, "math_verify"),
    ("negative zero", "-0.0", "0", T, "string"),
    ("a million spaces after", "5" + " " * 1_000_000, "5", T, "string"),
    ("a million digits", "5" * 1_000_000, "5", F, "number"),
    ("a million digits, right", "5" * 1_000_000, "5" * 1_000_000, T, "string"),
    ("5000 digits (past int()'s 4300-digit limit)", "1" * 5000 + ".0", "1" * 5000, T, "string"),
    ("5000 digits, last one wrong", "1" * 5000, "1" * 4999 + "2", F, "number"),
    ("40 decimals (past Decimal's 28-digit default)", "0." + "1" * 40, "0." + "1" * 39 + "2", F, "number"),
    ("huge mixed number", "5" * 5000 + " 1/4", "5", F, "split_number"),
]


def _gold(source: str) -> str:
    return gold_of(source) if source.startswith(("math500:", "gsm8k:")) else source


@pytest.mark.parametrize("name,pred,gold,correct,method", HOSTILE_ANSWERS, ids=[c[0] for c in HOSTILE_ANSWERS])
def test_hostile_answers(grader, name, pred, gold, correct, method):
    assert grader.equivalent(pred, _gold(gold)) == mg.Verdict(correct, method)


def test_hostile_answers_hold_both_verdicts():
    assert len(HOSTILE_ANSWERS) >= 70 and sum(not c for *_, c, _ in HOSTILE_ANSWERS) >= 30
