"""Math with ``<think> … </think> <answer> … </answer>`` responses (the "r1_zero" format).

Format and correctness are measured separately (see ``qa_tasks.math.grader`` for the grading rules
and ``tasks_yaml/math/README.md`` for the metrics). Data: MATH-500, GSM8K (test and train) and the
5000-problem MATH test set (``EleutherAI/hendrycks_math``, 7 subjects).

The prompt builders here are the only ones: the lm-eval tasks and the fine-tuning module both call
them, so training and evaluation prompts cannot drift apart.

Modules: ``data``, ``prompts``, ``metrics``, and the grading: ``format`` (the format gate), ``normalize`` and
``equivalence`` (answer forms), ``grader`` (one response), ``worker`` (the bounded grading process).
May import: the ground modules of ``qa_tasks`` and ``qa_tasks.harness.task_index``; never another family.
"""

from __future__ import annotations

from qa_tasks.family import Family, TrainingSet
from qa_tasks.math.data import (
    HENDRYCKS_ENV,
    HENDRYCKS_HUB,
    HENDRYCKS_SUBJECTS,
    build_docs,
    load_gsm8k,
    load_hendrycks_math,
    load_math500,
)
from qa_tasks.math.grader import timeout_from_env
from qa_tasks.math.metrics import COUNT_METRICS, METRICS, doc_metrics, score_response, summarize
from qa_tasks.math.prompts import (
    CHAT_INSTRUCTION,
    R1_ZERO_PROMPT,
    chat_completion,
    chat_messages,
    r1_zero_completion,
    r1_zero_prompt,
)

__all__ = ["CHAT_INSTRUCTION", "COUNT_METRICS", "FAMILY", "HENDRYCKS_ENV", "HENDRYCKS_HUB", "HENDRYCKS_SUBJECTS", "METRICS", "R1_ZERO_PROMPT", "build_docs", "chat_completion", "chat_messages", "doc_metrics", "load_gsm8k", "load_hendrycks_math", "load_math500", "preflight", "r1_zero_completion", "r1_zero_prompt", "score_response", "summarize"]


def preflight(task_name: str, metadata: dict | None = None) -> None:
    """Load and validate the data of a task (and the grading bound) before any model loads.
    ``metadata`` (the run's ``--metadata``) is accepted for a uniform signature; no option is read."""
    from qa_tasks.harness.task_index import task_options

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
        eval_task="gsm8k_think"),
        # MATH-500 is drawn from the MATH test set, so keeping that set out keeps both math tasks out
        "math_r1_zero": TrainingSet(
            "finetune.data:math_r1_zero_set", "MATH train (7 subjects), r1_zero prompt + the solution as "
            "reasoning + its \\boxed answer", eval_task="hendrycks_math_think")},
    main_metric="accuracy",
    compared_metrics=("accuracy", "format_accuracy"),
    progress_metrics=("accuracy", "format_accuracy", "wrong_answer_rate", "format_failure_rate", "truncated_rate"),
    tables=("leaderboards.family_tables:math_tables",),
    demo_tasks=("gsm8k_think", "math500_think"),
)
