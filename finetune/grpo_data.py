"""Prompts of ``python -m finetune.grpo``: the math family's own prompt builder and the gold each reply is
graded against.

Rows are ``{"prompt", "gold"}``: the prompt ``gsm8k_think`` evaluates (``qa_tasks.math.r1_zero_prompt``)
and the gold answer. Training reads train files only:

- ``gsm8k_r1_zero``: GSM8K train (``math/gsm8k_train.jsonl``); the guard keeps ``gsm8k_think`` (the test set)
  and every ``eval_tasks`` document out;
- ``math_r1_zero``: the MATH train set (``EleutherAI/hendrycks_math`` train, or ``<subject>/train.jsonl`` under
  ``QA_PACK_HENDRYCKS_MATH_DIR``); the guard keeps the MATH test set (``hendrycks_math_think``, which holds
  MATH-500) out;
- ``jsonl``: the user's rows, each ``{"question", "answer"}`` (prompt built by the family's builder) or
  ``{"prompt", "answer"}`` (used as written).
"""

from __future__ import annotations

from finetune.data import TrainingData, r1_zero_data
from qa_tasks.errors import QAPackError

__all__ = ["TASKS", "build_prompts", "guard_view"]

TASKS = {"gsm8k_r1_zero": "GSM8K train, r1_zero prompt; gold = the number after ####",
         "math_r1_zero": "MATH train (7 subjects), r1_zero prompt; gold = the \\boxed answer of the solution",
         "jsonl": "`data_path`: JSONL rows {question or prompt, answer}"}


def _jsonl(path: str) -> TrainingData:
    from pathlib import Path

    from qa_tasks.data import read_jsonl
    from qa_tasks.math import r1_zero_prompt

    try:
        raw = read_jsonl(Path(path))
    except OSError as e:
        raise QAPackError(f"cannot read data_path={path}: {e.strerror}; fix the path") from None
    rows = []
    for lineno, row in enumerate(raw, 1):
        answer = row.get("answer")
        if not isinstance(answer, (str, int, float)) or not str(answer).strip():
            raise QAPackError(f"{path} row {lineno} has no `answer`; every GRPO prompt needs the gold answer its "
                              "replies are graded against")
        if isinstance(row.get("question"), str) and row["question"].strip():
            prompt = r1_zero_prompt(row["question"])
        elif isinstance(row.get("prompt"), str) and row["prompt"].strip():
            prompt = row["prompt"]
        else:
            raise QAPackError(f"{path} row {lineno} needs a `question` (or a ready `prompt`) string")
        rows.append({"prompt": prompt, "gold": str(answer).strip()})
    if not rows:
        raise QAPackError(f"data_path={path} has no rows; add JSONL lines with `question` and `answer`")
    return TrainingData(rows, [f"jsonl:{i}" for i in range(len(rows))], "jsonl", "train",
                        path=str(Path(path).resolve()), extra={"format": "prompt_gold"})


def build_prompts(task: str, data_path: str | None = None, max_examples: int | None = None) -> TrainingData:
    if task not in TASKS:
        raise QAPackError(f"task={task!r} has no GRPO prompts; use one of: {', '.join(TASKS)}")
    data = _jsonl(data_path) if task == "jsonl" else r1_zero_data(task, gold_rows=True)
    if max_examples is not None:
        data.rows, data.keys = data.rows[:max_examples], data.keys[:max_examples]
    return data


def guard_view(data: TrainingData) -> TrainingData:
    """The rows as prompt + completion (the gold), the shape ``finetune.guard`` reads."""
    return TrainingData([{"prompt": r["prompt"], "completion": r["gold"]} for r in data.rows], data.keys,
                        data.source, data.split, data.fold, data.path, dict(data.extra))
