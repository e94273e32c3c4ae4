"""Rewards of ``python -m finetune.grpo``: the math tasks' own scorer, so a reward cannot drift from the metric.

Each reward is a TRL reward function: called with ``prompts``, ``completions``, ``completion_ids`` and every
dataset column (here ``gold``) as keyword lists, it returns one float per completion.

- ``format``: 1.0 iff the reply passes the format gate, else 0.0 -- the task's ``format_accuracy``;
- ``answer``: 1.0 iff the reply is format-correct and its answer equals the gold, else 0.0 -- the task's
  ``accuracy``; graded by the same bounded worker process as the tasks (``qa_tasks.math.worker``: off the
  trainer's process, a per-item time bound, a timeout scores 0);
- ``truncation``: -1.0 for a completion that hit ``max_completion_length`` before the model ended it, else 0.0
  (the task's ``truncated_rate``, negated);
- ``length``: -(completion tokens / ``max_completion_length``), a pull towards shorter replies.

A reply is what the task would have scored: the completion up to the base tasks' stop string ``"\\nUser:"``
(lm-eval cuts generations there; TRL generates on).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

from qa_tasks.errors import QAPackError

__all__ = ["DEFAULT_REWARDS", "REWARDS", "STOP", "answer_reward", "build_rewards", "format_reward", "parse_rewards",
           "reply_text"]

STOP = "\nUser:"  # the base math tasks' `until` (tasks_yaml/math/_think_template_yaml)
REWARDS = {
    "format": "1 if the reply passes the format gate (the task's format_accuracy)",
    "answer": "1 if format-correct and the answer equals the gold (the task's accuracy)",
    "truncation": "-1 if the completion hit max_completion_length (the task's truncated_rate, negated)",
    "length": "-(completion tokens / max_completion_length)",
}
DEFAULT_REWARDS = "format,answer"


def reply_text(completion) -> str:
    """The reply the task scores: the completion's text (the last message's content for chat completions),
    cut at the base tasks' stop string."""
    text = completion if isinstance(completion, str) else completion[-1]["content"]
    return text.split(STOP, 1)[0]


def format_reward(completions: Sequence, **kwargs) -> list[float]:
    """The task's ``format_accuracy`` of each completion."""
    from qa_tasks.math.grader import check_format

    return [float(check_format(reply_text(c)).ok) for c in completions]


def answer_reward(completions: Sequence, gold: Sequence[str], **kwargs) -> list[float]:
    """The task's ``accuracy`` of each completion against its row's ``gold`` (one worker round trip)."""
    from qa_tasks.math.grader import grade_responses

    grades = grade_responses([(reply_text(c), g) for c, g in zip(completions, gold, strict=True)])
    return [float(g.correct) for g in grades]


def _truncated(ids: Sequence[int], cap: int, ends: frozenset[int]) -> bool:
    """Hit the cap: as many tokens as allowed and the last one is not an end-of-sequence token."""
    return len(ids) >= cap and (not ids or ids[-1] not in ends)


def _named(name: str, func: Callable) -> Callable:
    func.__name__ = func.__qualname__ = f"{name}_reward"  # TRL logs rewards/<name>_reward/mean
    return func


def build_rewards(names: Sequence[str], max_completion_length: int, end_ids: Sequence[int]) -> list[Callable]:
    """The reward functions ``names`` (keys of ``REWARDS``) in order; ``end_ids``: the token ids that end a
    completion (EOS, pad)."""
    ends = frozenset(i for i in end_ids if i is not None)

    def truncation(completions, completion_ids, **kwargs) -> list[float]:
        return [-float(_truncated(ids, max_completion_length, ends)) for ids in completion_ids]

    def length(completions, completion_ids, **kwargs) -> list[float]:
        return [-len(ids) / max_completion_length for ids in completion_ids]

    funcs = {"format": format_reward, "answer": answer_reward, "truncation": _named("truncation", truncation),
             "length": _named("length", length)}
    return [funcs[name] for name in names]


def parse_rewards(value: str) -> list[str]:
    """``"format,answer"`` -> names, or one line naming the unknown one."""
    names = [n.strip() for n in (value or "").split(",") if n.strip()]
    if not names:
        raise QAPackError(f"reward_funcs is empty; name one or more of: {', '.join(REWARDS)}")
    unknown = [n for n in names if n not in REWARDS]
    if unknown:
        raise QAPackError(f"reward_funcs: unknown reward {', '.join(unknown)}; use one or more of: "
                          f"{', '.join(REWARDS)}")
    if len(set(names)) != len(names):
        raise QAPackError(f"reward_funcs={value} names a reward twice; weight it with reward_weights instead")
    return names
