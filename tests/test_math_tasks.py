"""End-to-end: the math think/answer tasks through the real ``lm_eval`` CLI.

One lm_eval run per module fixture serves many assertions: a scripted model that answers the gold
in format to MATH questions (accuracy 1.0) and never follows the format on GSM8K ones
(format_failure_rate 1.0 with the breakdown of the templates it used), a mixed one through the
chat-template variants, one that writes digits apart and mixed numbers (``spacing``), and the tiny
Hugging Face model with the real ``hf`` backend.
"""

from __future__ import annotations

import json
import os
import zlib

import pytest

from qa_tasks.math.grader import FAILURE_KINDS
from tests.toolkit.env import lm_eval_env
from tests.toolkit.lm_eval_runs import read_samples, run_lm_eval
from tests.toolkit.math_responders import (
    HOSTILE_KINDS,
    TRUNCATION_KINDS,
    hostile_answer,
    kind_of,
    tricky_answer,
    truncation_kind,
)

pytestmark = pytest.mark.slow

FIXTURE = os.path.join(os.path.dirname(__file__), "fixtures", "hendrycks_math")
RESPONDER = "responder=tests.toolkit.math_responders:responder"
BASE_TASKS = ("math500_think", "gsm8k_think", "hendrycks_math_think")
GOLD_TASKS = ("math500_think", "hendrycks_math_think")  # gsm8k_think gets unformatted answers
CHAT_TASKS = ("math500_think_chat", "gsm8k_think_chat")
RATES = ("accuracy", "wrong_answer_rate", "format_failure_rate")


def metric(results: dict, task: str, name: str) -> float:
    return results["results"][task][f"{name},none"]


def scripted_run(tmp_path_factory, name: str, mode: str, tasks, limit: int, *extra: str):
    out = tmp_path_factory.mktemp(name)
    log = out / "requests.jsonl"
    _, results = run_lm_eval(
        ["--model", "scripted", "--model_args", f"{RESPONDER},mode={mode},log={log}", "--tasks", ",".join(tasks),
         "--limit", str(limit), "--log_samples", *extra],
        output=out, env=lm_eval_env(QA_PACK_HENDRYCKS_MATH_DIR=FIXTURE))
    requests = [json.loads(line) for line in log.read_text().splitlines()]
    return out, results, requests


@pytest.fixture(scope="module")
def base_run(tmp_path_factory):
    return scripted_run(tmp_path_factory, "base", "gold,unformatted=gsm8k", BASE_TASKS, 21)


@pytest.fixture(scope="module")
def chat_run(tmp_path_factory):
    return scripted_run(tmp_path_factory, "chat", "mixed", CHAT_TASKS, 18, "--apply_chat_template")


@pytest.mark.parametrize("task", GOLD_TASKS)
def test_gold_formatted_answers_score_accuracy_one(base_run, task):
    out, results, _ = base_run
    assert metric(results, task, "accuracy") == 1.0
    assert metric(results, task, "format_accuracy") == 1.0
    for name in ("wrong_answer_rate", "format_failure_rate", *FAILURE_KINDS, "grader_timeouts"):
        assert metric(results, task, name) == 0.0, name
    samples = read_samples(out, task)
    assert metric(results, task, "n") == len(samples) == (21 if task == "math500_think" else 14)
    responses = [s["resps"][0][0] for s in samples]
    assert metric(results, task, "response_chars") == pytest.approx(sum(map(len, responses)) / len(samples))
    assert metric(results, task, "response_chars_correct") == metric(results, task, "response_chars")
    assert "response_chars_incorrect,none" not in results["results"][task]  # no incorrect response
    # some responses write a second, wrong answer block after the first </answer>: it must be ignored
    assert any("Next question: <answer> -987654321" in r for r in responses)
    assert results["configs"][task]["metadata"]["version"] == 1.3
    # the scripted model has no local tokenizer: reply tokens are not known, so no truncation share (not 0)
    assert "truncated_rate,none" not in results["results"][task]
    assert all("truncated_rate" not in s for s in samples)


def test_hendrycks_math_reads_all_subjects_of_the_local_copy(base_run):
    out, _, _ = base_run
    samples = read_samples(out, "hendrycks_math_think")
    assert {s["doc"]["subject"] for s in samples} == {
        "algebra", "counting_and_probability", "geometry", "intermediate_algebra", "number_theory",
        "prealgebra", "precalculus"}


def test_base_prompt_and_generation_settings(base_run):
    _, _, requests = base_run
    assert requests and all(r["kind"] == "generate_until" for r in requests)
    for r in requests:
        context, gen_kwargs = r["args"]
        assert context.startswith("A conversation between User and Assistant.")
        assert context.endswith("\nAssistant: <think>")
        assert "</answer>" not in gen_kwargs["until"]  # lm-eval would strip it from the response
        assert gen_kwargs["max_gen_toks"] == 1024 and gen_kwargs["do_sample"] is False


def test_unformatted_answers_are_format_failures_with_the_right_breakdown(base_run):
    out, results, _ = base_run
    task = "gsm8k_think"
    assert metric(results, task, "format_failure_rate") == 1.0
    assert metric(results, task, "accuracy") == 0.0 and metric(results, task, "format_accuracy") == 0.0
    assert metric(results, task, "wrong_answer_rate") == 0.0
    samples = read_samples(out, task)
    kinds = [kind_of(s["resps"][0][0]) for s in samples]
    assert all(k == "unformatted" for k, _ in kinds)
    assert len({failures for _, failures in kinds}) >= 4  # several templates were exercised
    for kind in FAILURE_KINDS:
        expected = sum(kind in failures for _, failures in kinds) / len(kinds)
        assert metric(results, task, kind) == pytest.approx(expected), kind
        for sample, (_, failures) in zip(samples, kinds):  # and per response, in the samples file
            assert sample[kind] == float(kind in failures)
    assert "response_chars_correct,none" not in results["results"][task]


@pytest.mark.parametrize("task", CHAT_TASKS)
def test_chat_variant_with_mixed_answers(chat_run, task):
    out, results, _ = chat_run
    samples = read_samples(out, task)
    kinds = [kind_of(s["resps"][0][0])[0] for s in samples]
    assert {"gold", "wrong", "unformatted"} <= set(kinds)
    expected = {"accuracy": kinds.count("gold"), "wrong_answer_rate": kinds.count("wrong"),
                "format_failure_rate": kinds.count("unformatted")}
    for name, count in expected.items():
        assert metric(results, task, name) == pytest.approx(count / len(kinds)), name
    assert sum(metric(results, task, name) for name in RATES) == pytest.approx(1.0)
    assert metric(results, task, "format_accuracy") == pytest.approx(1 - expected["format_failure_rate"] / len(kinds))
    correct = [len(s["resps"][0][0]) for s, k in zip(samples, kinds) if k == "gold"]
    assert metric(results, task, "response_chars_correct") == pytest.approx(sum(correct) / len(correct))


def test_chat_prompts_go_through_the_chat_template(chat_run):
    _, _, requests = chat_run
    for r in requests:
        context, gen_kwargs = r["args"]
        assert context.startswith("<|im_start|>user\n") and context.endswith("<|im_start|>assistant\n")
        assert "<think> reasoning process here </think> <answer> answer here </answer>" in context
        assert "Assistant: <think>" not in context
        assert "</answer>" not in gen_kwargs["until"]


@pytest.fixture(scope="module")
def spacing_run(tmp_path_factory):
    return scripted_run(tmp_path_factory, "spacing", "spacing", ("gsm8k_think", "math500_think"), 45)


@pytest.mark.parametrize("task", ["gsm8k_think", "math500_think"])
def test_digits_apart_are_wrong_and_mixed_numbers_right(spacing_run, task):
    """Issue 12: "1 8" is not 18, "4 2/3" is 14/3 (CS336's mixed numbers), through the real CLI."""
    out, results, _ = spacing_run
    samples = read_samples(out, task)
    expected = [tricky_answer(s["doc"]["gold"], zlib.crc32(s["doc"]["question"].encode())) for s in samples]
    for sample, (answer, correct) in zip(samples, expected):
        assert f"<answer> {answer} </answer>" in sample["resps"][0][0]
        assert sample["accuracy"] == float(correct), (answer, sample["doc"]["gold"])
    answers = [answer for answer, _ in expected]
    assert any(" " in a and a.replace(" ", "").isdigit() for a in answers)  # digits written apart
    if task == "math500_think":
        assert any("/" in a or "frac" in a for a, c in expected if c and a[0].isdigit() and not a.isdigit())
    assert metric(results, task, "accuracy") == pytest.approx(sum(c for _, c in expected) / len(samples))
    assert metric(results, task, "format_accuracy") == 1.0 and metric(results, task, "grader_timeouts") == 0


@pytest.fixture(scope="module")
def hf_run(tmp_path_factory, tiny_model):
    out = tmp_path_factory.mktemp("hf")
    _, results = run_lm_eval(
        ["--model", "hf", "--model_args", f"pretrained={tiny_model}", "--tasks", "math500_think,gsm8k_think",
         "--limit", "5", "--gen_kwargs", "max_gen_toks=16", "--log_samples", "--device", "cpu"],
        output=out)
    return out, results


@pytest.mark.parametrize("task", ["math500_think", "gsm8k_think"])
def test_tiny_hf_model_runs(hf_run, task):
    out, results = hf_run
    assert metric(results, task, "n") == 5
    assert sum(metric(results, task, name) for name in RATES) == pytest.approx(1.0)
    for name in ("format_accuracy", *FAILURE_KINDS, "response_chars", "grader_timeouts"):
        assert f"{name},none" in results["results"][task]
    samples = read_samples(out, task)
    assert len(samples) == 5 and all(s["arguments"]["gen_args_0"]["arg_1"]["max_gen_toks"] == 16 for s in samples)


def test_tiny_hf_model_truncation_is_counted_with_its_tokenizer(hf_run, tiny_model):
    """The real hf backend: each reply's verdict is its re-encoded length against max_gen_toks=16."""
    from transformers import AutoTokenizer

    out, results = hf_run
    tokenizer = AutoTokenizer.from_pretrained(tiny_model)
    samples = read_samples(out, "gsm8k_think")
    expected = [float(len(tokenizer.encode(s["resps"][0][0], add_special_tokens=False)) >= 16) for s in samples]
    assert [s["truncated_rate"] for s in samples] == expected
    assert metric(results, "gsm8k_think", "truncated_rate") == pytest.approx(sum(expected) / len(expected))


def test_preflight_checks_the_data_before_any_model_loads(monkeypatch, tmp_path):
    """The harness's preflight (run by lm_eval before the model loads) reaches this family's loaders."""
    from qa_tasks.errors import QAPackError
    from qa_tasks.harness import checks, task_index
    from qa_tasks.math import data

    assert {"math500_think", "gsm8k_think", "hendrycks_math_think", "math500_think_chat", "gsm8k_think_chat",
            "hendrycks_math_think_chat"} <= {t for t, f in task_index.pack_tasks().items() if f == "math"}
    checks.preflight("math500_think,gsm8k_think_chat")
    monkeypatch.setenv("QA_PACK_HENDRYCKS_MATH_DIR", str(tmp_path / "missing"))
    data.load_hendrycks_math.cache_clear()
    with pytest.raises(QAPackError, match="QA_PACK_HENDRYCKS_MATH_DIR"):
        checks.preflight(["hendrycks_math_think"])
    data.load_hendrycks_math.cache_clear()
    monkeypatch.setenv("QA_PACK_MATH_TIMEOUT_S", "-1")  # a bad bound fails before the model loads too
    with pytest.raises(QAPackError, match="QA_PACK_MATH_TIMEOUT_S=-1"):
        checks.preflight(["gsm8k_think"])


@pytest.fixture(scope="module")
def hostile_run(tmp_path_factory):
    return scripted_run(tmp_path_factory, "hostile", "hostile", ("gsm8k_think",), 40)


def test_hostile_replies_get_a_careful_graders_verdict(hostile_run):
    """Scientific notation and a 1 MB thought are right; a run of unit words, a hedge and upper-case tags are
    not; through the real CLI, per reply and in the task's accuracy."""
    out, results, _ = hostile_run
    samples = read_samples(out, "gsm8k_think")
    expected = [hostile_answer(s["doc"]["gold"], zlib.crc32(s["doc"]["question"].encode())) for s in samples]
    assert set(HOSTILE_KINDS) <= {kind for kind, _, _ in expected}
    for sample, (kind, reply, correct) in zip(samples, expected):
        assert sample["resps"][0][0] == reply and sample["accuracy"] == float(correct), (kind, sample["doc"]["gold"])
    assert metric(results, "gsm8k_think", "accuracy") == pytest.approx(sum(c for *_, c in expected) / len(samples))


TRUNCATE_BUDGET = 48


@pytest.fixture(scope="module")
def truncate_runs(tmp_path_factory, tiny_model):
    """gsm8k_think with replies built to hit max_gen_toks (exactly that many tokens of the tiny model's tokenizer,
    no stop string), replies one token short of it, and short ones; then the same run again from lm-eval's
    response cache (--use_cache), where the wrapped model never sees the requests."""
    runs = []
    cache = tmp_path_factory.mktemp("truncate-cache") / "responses"
    for name in ("truncate", "truncate-cached"):
        out = tmp_path_factory.mktemp(name)
        _, results = run_lm_eval(
            ["--model", "scripted", "--model_args", f"{RESPONDER},mode=truncate,tokenizer={tiny_model}",
             "--tasks", "gsm8k_think", "--limit", "30", "--gen_kwargs", f"max_gen_toks={TRUNCATE_BUDGET}",
             "--use_cache", str(cache), "--log_samples"], output=out)
        runs.append((out, results))
    return runs


def test_gsm8k_think_reports_the_share_of_replies_that_hit_max_gen_toks(truncate_runs, tiny_model):
    from transformers import AutoTokenizer

    (out, results), _ = truncate_runs
    tokenizer = AutoTokenizer.from_pretrained(tiny_model)
    samples = read_samples(out, "gsm8k_think")
    kinds = [truncation_kind(s["doc"]["question"]) for s in samples]
    assert set(kinds) == set(TRUNCATION_KINDS)  # every kind of reply was built
    for sample, kind in zip(samples, kinds):
        reply = sample["resps"][0][0]
        assert sample["arguments"]["gen_args_0"]["arg_1"]["max_gen_toks"] == TRUNCATE_BUDGET
        tokens = len(tokenizer.encode(reply, add_special_tokens=False))
        assert tokens == {"cap": TRUNCATE_BUDGET, "one_short": TRUNCATE_BUDGET - 1}.get(kind, tokens)
        assert sample["truncated_rate"] == float(kind == "cap"), (kind, tokens)
    share = kinds.count("cap") / len(kinds)
    assert metric(results, "gsm8k_think", "truncated_rate") == pytest.approx(share)
    # beside the format breakdown: the cut-off replies are the format failures, all missing </answer>
    assert metric(results, "gsm8k_think", "format_failure_rate") == pytest.approx(share)
    assert metric(results, "gsm8k_think", "missing_answer_close") == pytest.approx(share)
    assert results["configs"]["gsm8k_think"]["metadata"]["version"] == 1.3


def test_cached_replies_report_no_truncation_share(truncate_runs):
    """Replies from lm-eval's response cache were never counted: the metric is absent, not 0."""
    (_, first), (out, cached) = truncate_runs
    assert metric(cached, "gsm8k_think", "accuracy") == metric(first, "gsm8k_think", "accuracy")
    assert "truncated_rate,none" not in cached["results"]["gsm8k_think"]
    assert all("truncated_rate" not in s for s in read_samples(out, "gsm8k_think"))
