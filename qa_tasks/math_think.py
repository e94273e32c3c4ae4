"""Math with ``<think> … </think> <answer> … </answer>`` responses (the "r1_zero" format).

Format and correctness are measured separately (see ``qa_tasks.math_grader`` for the grading rules
and ``tasks_yaml/math/README.md`` for the metrics). Data: MATH-500, GSM8K (test and train) and the
5000-problem MATH test set (``EleutherAI/hendrycks_math``, 7 subjects).

The prompt builders here are the only ones: the lm-eval tasks and the fine-tuning module both call
them, so training and evaluation prompts cannot drift apart.
"""

from __future__ import annotations

import functools
import os
import re
from collections.abc import Iterable
from pathlib import Path

from qa_tasks.data import DATA_ENV, data_dir, load_hub, local_or_none, read_jsonl
from qa_tasks.errors import QAPackError
from qa_tasks.family import Family, TrainingSet
from qa_tasks.math_grader import (
    FAILURE_KINDS,
    Grader,
    ResponseGrade,
    gold_from_gsm8k,
    gold_from_math,
    grade_response,
    timeout_from_env,
)

__all__ = [
    "CHAT_INSTRUCTION",
    "COUNT_METRICS",
    "FAMILY",
    "HENDRYCKS_ENV",
    "HENDRYCKS_SUBJECTS",
    "METRICS",
    "R1_ZERO_PROMPT",
    "build_docs",
    "chat_completion",
    "chat_messages",
    "doc_metrics",
    "load_gsm8k",
    "load_hendrycks_math",
    "load_math500",
    "preflight",
    "r1_zero_completion",
    "r1_zero_prompt",
    "score_response",
    "summarize",
]

# The R1-Zero / CS336 prompt for base models; the response continues after the final "<think>".
R1_ZERO_PROMPT = (
    "A conversation between User and Assistant. The User asks a question, and the Assistant solves it. "
    "The Assistant first thinks about the reasoning process in the mind and then provides the User with "
    "the answer. The reasoning process is enclosed within <think> </think> and answer is enclosed within "
    "<answer> </answer> tags, respectively, i.e., <think> reasoning process here </think> "
    "<answer> answer here </answer>.\nUser: {question}\nAssistant: <think>"
)
# The same contract for instruct models, as one user turn rendered by the model's chat template.
CHAT_INSTRUCTION = (
    "{question}\n\nFirst think about the reasoning process, then give the answer. Enclose the reasoning "
    "in <think> </think> tags and the final answer in <answer> </answer> tags, exactly like this: "
    "<think> reasoning process here </think> <answer> answer here </answer>"
)
HENDRYCKS_HUB = "EleutherAI/hendrycks_math"
HENDRYCKS_SUBJECTS = ("algebra", "counting_and_probability", "geometry", "intermediate_algebra",
                      "number_theory", "prealgebra", "precalculus")
# A folder holding <subject>/test.jsonl for all 7 subjects (rows as on the Hub: problem, level, type,
# solution); checked first, then QA_PACK_DATA_DIR/math/hendrycks_math/, then the Hub.
HENDRYCKS_ENV = "QA_PACK_HENDRYCKS_MATH_DIR"

METRICS = ("accuracy", "format_accuracy", "wrong_answer_rate", "format_failure_rate", *FAILURE_KINDS,
           "response_chars", "response_chars_correct", "response_chars_incorrect", "grader_timeouts", "n")
COUNT_METRICS = ("grader_timeouts", "n")  # summed; every other metric is a mean over the docs that carry it


# --- prompts: the single builder used by the eval tasks and by finetune ---------------------------

def r1_zero_prompt(question: str) -> str:
    """Base-model prompt; ends with ``Assistant: <think>`` so the model writes the reasoning next."""
    return R1_ZERO_PROMPT.format(question=question.strip())


def chat_messages(question: str) -> list[dict]:
    """Instruct-model variant: one user turn, rendered by the model's chat template."""
    return [{"role": "user", "content": CHAT_INSTRUCTION.format(question=question.strip())}]


def r1_zero_completion(reasoning: str, answer: str) -> str:
    """What follows ``r1_zero_prompt`` in a correct response (the gold completion for fine-tuning)."""
    return f" {reasoning.strip()} </think> <answer> {answer.strip()} </answer>"


def chat_completion(reasoning: str, answer: str) -> str:
    """The assistant turn of a correct response to ``chat_messages`` (it opens its own <think>)."""
    return f"<think> {reasoning.strip()} </think> <answer> {answer.strip()} </answer>"


# --- data -------------------------------------------------------------------------------------

def _bad_row(where: str, lineno: int, what: str) -> QAPackError:
    return QAPackError(f"{where}: row {lineno} {what}; fix or restore the file (check {DATA_ENV})")


def _require(row: dict, keys: tuple[str, ...], where: str, lineno: int) -> None:
    for key in keys:
        if not isinstance(row.get(key), str) or not row[key].strip():
            raise _bad_row(where, lineno, f"has no text field '{key}'")


_CALCULATOR = re.compile(r"<<[^<>]*>>")  # GSM8K calculator annotations, e.g. "16-3-4=<<16-3-4=9>>9"


@functools.lru_cache(maxsize=2)
def load_gsm8k(split: str = "test") -> list[dict]:
    """GSM8K rows as ``{"question", "reasoning", "answer"}``.

    ``reasoning`` is the solution without its ``####`` line and without the calculator annotations
    (``<<48/2=24>>``); ``answer`` is the final number.
    """
    if split not in ("test", "train"):
        raise QAPackError(f"GSM8K split {split!r} does not exist; use 'test' or 'train'")
    rel = f"math/gsm8k_{split}.jsonl"
    local = local_or_none(rel)
    rows = read_jsonl(local) if local else load_hub("openai/gsm8k", split, rel, name="main")
    where = str(local or f"openai/gsm8k:{split}")
    out = []
    for lineno, row in enumerate(rows, 1):
        _require(row, ("question", "answer"), where, lineno)
        try:
            answer = gold_from_gsm8k(row["answer"])
        except ValueError:
            raise _bad_row(where, lineno, "has no '#### <number>' final answer") from None
        reasoning = _CALCULATOR.sub("", row["answer"].rsplit("####", 1)[0]).strip()
        out.append({"question": row["question"].strip(), "reasoning": reasoning, "answer": answer})
    if not out:
        raise QAPackError(f"{where} holds no rows; restore the file (check {DATA_ENV})")
    return out


@functools.lru_cache(maxsize=1)
def load_math500() -> list[dict]:
    """MATH-500 rows as on the Hub (problem, solution, answer, subject, level, unique_id), validated."""
    rel = "math/math500_test.jsonl"
    local = local_or_none(rel)
    rows = read_jsonl(local) if local else load_hub("HuggingFaceH4/MATH-500", "test", rel)
    where = str(local or "HuggingFaceH4/MATH-500:test")
    for lineno, row in enumerate(rows, 1):
        _require(row, ("problem", "answer"), where, lineno)
    if not rows:
        raise QAPackError(f"{where} holds no rows; restore the file (check {DATA_ENV})")
    return rows


def _hendrycks_folder() -> Path | None:
    value = os.environ.get(HENDRYCKS_ENV, "").strip()
    if value:
        folder = Path(value).expanduser()
        if not folder.is_dir():
            raise QAPackError(f"{HENDRYCKS_ENV}={value} is not a folder; point it at a folder holding "
                              f"<subject>/test.jsonl for {', '.join(HENDRYCKS_SUBJECTS)}, or unset it")
        return folder
    root = data_dir()
    if root is not None and (root / "math" / "hendrycks_math").is_dir():
        return root / "math" / "hendrycks_math"
    return None  # the shared data has no copy: the Hub is the source even with QA_PACK_DATA_DIR set


@functools.lru_cache(maxsize=1)
def load_hendrycks_math() -> list[dict]:
    """The MATH test set (7 subjects, Hub rows: problem, level, type, solution) plus ``subject``."""
    folder = _hendrycks_folder()
    rows: list[dict] = []
    for subject in HENDRYCKS_SUBJECTS:
        rel = f"math/hendrycks_math/{subject}/test.jsonl"
        if folder is not None:
            path = folder / subject / "test.jsonl"
            if not path.is_file():
                raise QAPackError(f"{path} is missing; the local MATH copy in {folder} needs <subject>/test.jsonl "
                                  f"for all of {', '.join(HENDRYCKS_SUBJECTS)}")
            part, where = read_jsonl(path), str(path)
        else:
            part, where = load_hub(HENDRYCKS_HUB, "test", rel, name=subject), f"{HENDRYCKS_HUB}/{subject}:test"
        for lineno, row in enumerate(part, 1):
            _require(row, ("problem", "solution"), where, lineno)
            if gold_from_math(row) is None:
                raise _bad_row(where, lineno, "has no \\boxed{} answer in its solution")
            rows.append({**row, "subject": subject})
    return rows


def build_docs(source: str) -> list[dict]:
    """Eval docs for lm-eval: ``{"id", "question", "gold", "subject", "level"}`` (all strings)."""
    if source == "math500":
        return [{"id": r.get("unique_id") or f"math500/{i}", "question": r["problem"].strip(),
                 "gold": gold_from_math(r), "subject": str(r.get("subject", "")), "level": str(r.get("level", ""))}
                for i, r in enumerate(load_math500())]
    if source == "gsm8k":
        return [{"id": f"gsm8k/test/{i}", "question": r["question"], "gold": r["answer"], "subject": "",
                 "level": ""} for i, r in enumerate(load_gsm8k("test"))]
    if source == "hendrycks_math":
        counters: dict[str, int] = {}
        docs = []
        for r in load_hendrycks_math():
            k = counters[r["subject"]] = counters.get(r["subject"], -1) + 1
            docs.append({"id": f"hendrycks_math/{r['subject']}/{k}", "question": r["problem"].strip(),
                         "gold": gold_from_math(r), "subject": r["subject"], "level": str(r.get("level", ""))})
        return docs
    raise QAPackError(f"unknown math data set {source!r}; use math500, gsm8k or hendrycks_math")


# --- metrics: per response, then summarised the way lm-eval aggregates them ----------------------

def doc_metrics(grade: ResponseGrade, response: str) -> dict[str, float]:
    """Per-response metric values (keys of ``METRICS``; the length of the class it is not in is omitted).

    accuracy + wrong_answer_rate + format_failure_rate = 1 for every response, hence for every mean.
    """
    correct = float(grade.correct)
    out = {
        "accuracy": correct,
        "format_accuracy": float(grade.format_ok),
        "wrong_answer_rate": float(grade.format_ok and not grade.correct),
        "format_failure_rate": float(not grade.format_ok),
        **{kind: float(kind in grade.failures) for kind in FAILURE_KINDS},
        "response_chars": float(len(response)),
        "grader_timeouts": float(grade.timed_out),
        "n": 1.0,
    }
    out["response_chars_correct" if grade.correct else "response_chars_incorrect"] = float(len(response))
    return out


def score_response(response: str, gold: str, grader: Grader | None = None) -> dict[str, float]:
    """Grade one raw response against its gold answer and return its metric values."""
    return doc_metrics(grade_response(response, gold, grader), response)


def summarize(rows: Iterable[dict[str, float]]) -> dict[str, float]:
    """Aggregate per-response metrics as the lm-eval tasks do (means; counts summed)."""
    sums: dict[str, float] = {}
    counts: dict[str, int] = {}
    for row in rows:
        for key, value in row.items():
            sums[key] = sums.get(key, 0.0) + value
            counts[key] = counts.get(key, 0) + 1
    return {key: (sums[key] if key in COUNT_METRICS else sums[key] / counts[key]) for key in METRICS if key in sums}


def preflight(task_name: str, metadata: dict | None = None) -> None:
    """Load and validate the data of a task (and the grading bound) before any model loads.
    ``metadata`` (the run's ``--metadata``) is accepted for a uniform signature; no option is read."""
    from qa_tasks.task_index import task_options

    source = task_options(task_name).get("source")  # the data set the task variant names
    if source is not None:
        from qa_tasks.extras import require

        require("math", what=task_name)  # the grading worker imports math_verify
        timeout_from_env()
        build_docs(source)


FAMILY = Family(
    name="math",
    preflight=preflight,
    training_sets={"gsm8k_r1_zero": TrainingSet(
        "finetune.data:gsm8k_r1_zero_set", "GSM8K train, r1_zero prompt + ' reasoning </think> <answer> n </answer>'",
        eval_task="gsm8k_think")},
    main_metric="accuracy",
    compared_metrics=("accuracy", "format_accuracy"),
    progress_metrics=("accuracy", "format_accuracy", "wrong_answer_rate", "format_failure_rate"),
    tables=("leaderboards.family_tables:math_tables",),
    demo_tasks=("gsm8k_think", "math500_think"),
)
