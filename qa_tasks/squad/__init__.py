"""SQuAD v1.1 multi-question strategies: passages, prompt builders, rollout programs, per-passage metrics.

A document is one passage with its questions (ids Q1..Qn). The strategies differ in how the
questions reach the model (see tasks_yaml/squad/README.md):

- ``all_in_one``: one call answering every question as ``Qk: <answer>…</answer>`` lines;
- ``batch``: one independent call per question (``batch_prompt``), all in one round;
- ``sequential``: one conversation, the passage only in the first user turn, the model's own
  replies kept in the history (``sequential_messages``), one round per question;
- ``collab``: a planner call returns ``{"order": [...], "links": {...}}``, then a conversation in
  that order where each later turn is prefixed with the planner-linked earlier Q&A.

The multi-call strategies run as rollout programs (generators yielding the calls of the next round,
receiving their replies) executed by ``qa_tasks.rollout`` across all passages at once.

Modules: ``data`` (passages, questions, sampling), ``prompts`` (one builder per strategy, shared by eval and
finetune), ``program`` (the rollout programs), ``metrics`` (official EM/F1 and the per-passage metrics),
``latency`` (``python -m qa_tasks.squad.latency``). May import: the ground modules of ``qa_tasks``,
``qa_tasks.rollout`` (plans) and ``qa_tasks.harness.task_index``; never another family.
"""

from __future__ import annotations

from qa_tasks.family import Family, TrainingSet
from qa_tasks.squad.data import (
    HUB_ID,
    STRATEGIES,
    Passage,
    Question,
    load_passages,
    load_questions,
    paragraphs,
    passage_options,
)
from qa_tasks.squad.metrics import (
    QUESTION_METRICS,
    PlannerOrder,
    exact_match,
    extract_answer,
    extract_tagged,
    f1,
    lenient,
    lenient_substring,
    normalize_answer,
    parse_all_in_one,
    parse_planner,
    passage_metrics,
    question_metrics,
    score_answer,
)
from qa_tasks.squad.program import plan_args, rollout_program
from qa_tasks.squad.prompts import (
    ALL_IN_ONE_INSTRUCTION,
    INSTRUCTION,
    PLANNER_INSTRUCTION,
    PLANNER_STOP,
    all_in_one_prompt,
    batch_prompt,
    collab_turn,
    followup_turn,
    format_answer,
    planner_prompt,
    sequential_messages,
)

__all__ = ["ALL_IN_ONE_INSTRUCTION", "FAMILY", "HUB_ID", "INSTRUCTION", "PLANNER_INSTRUCTION", "PLANNER_STOP", "QUESTION_METRICS", "STRATEGIES", "Passage", "PlannerOrder", "Question", "all_in_one_prompt", "batch_prompt", "collab_turn", "exact_match", "extract_answer", "extract_tagged", "f1", "followup_turn", "format_answer", "lenient", "lenient_substring", "load_passages", "load_questions", "normalize_answer", "paragraphs", "parse_all_in_one", "parse_planner", "passage_metrics", "passage_options", "plan_args", "planner_prompt", "preflight", "question_metrics", "rollout_program", "score_answer", "sequential_messages"]


def preflight(task_name: str, metadata: dict | None = None) -> None:
    """Load and validate the data a task reads before any model loads. With the run's ``--metadata``
    (None: not known), also its options and that they leave at least one document."""
    from qa_tasks.harness.task_index import task_options

    split = task_options(task_name).get("split", "validation")  # the *_train variants read the train file
    if metadata is None:
        paragraphs(split)
        return
    options = {"split": split, **{k: metadata[k] for k in ("split", "min_questions", "max_questions", "seed")
                                  if k in metadata}}
    if task_name.startswith("squad_v1"):
        load_questions(options["split"])
    else:
        load_passages(**options)


_TABLES, _SETS = "leaderboards.family_tables", "finetune.data"
FAMILY = Family(
    name="squad",
    preflight=preflight,
    training_sets={
        "squad_batch": TrainingSet(f"{_SETS}:squad_batch_set", "SQuAD train split, one example per question "
                                   "(squad_batch prompt + <answer>)", eval_task="squad_v1"),
        "squad_sequential": TrainingSet(f"{_SETS}:squad_sequential_set", "SQuAD train split, one multi-turn "
                                        "conversation per passage (squad_sequential)", eval_task="squad_v1")},
    main_metric="em", compared_metrics=("em", "f1", "lenient"), progress_metrics=("em", "f1", "lenient"),
    tables=(f"{_TABLES}:squad_table", f"{_TABLES}:latency_table"),
    rollout_programs={"squad": "qa_tasks.squad.program:rollout_program"},
    multi_round_tasks=("squad_sequential", "squad_collab"),
    demo_tasks=("squad_v1", "squad_all_in_one", "squad_batch", "squad_sequential", "squad_collab"),
)
