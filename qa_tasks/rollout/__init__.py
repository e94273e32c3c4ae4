"""The rollout layer: multi-call conversations (plans) run across all documents of a task at once.

- ``plan``: the plan marker a request carries, the calls a plan's program yields, a plan's live state;
- ``layer``: ``RolloutMixin``, put in front of an lm-eval model class (``with_rollout``) or instance
  (``wrap``): round-batched runs, one backend batch per round;
- ``stream``: the barrier-free runner API models use;
- ``budget``: which replies used their whole token budget (``max_gen_toks``), recorded by the layer for every
  plain request and read by tasks' ``process_results`` (``truncated(doc, reply)``).

May import: the ground modules of ``qa_tasks`` (errors, family) and lm-eval's public model API.
Families import ``Call`` and ``plan_text`` from here; nothing here imports a family by name
(programs are found through ``qa_tasks.family``).
"""

from qa_tasks.rollout.plan import (
    RESULT_KEY,
    Call,
    count_tokens_fallback,
    find_plan,
    plan_text,
    programs,
    render_plain,
)

__all__ = [
    "RESULT_KEY", "Call", "RolloutMixin", "count_tokens_fallback", "find_plan", "is_active", "plan_text",
    "programs", "render_plain", "require_active", "with_rollout", "wrap",
]
_LAYER = ("RolloutMixin", "is_active", "require_active", "with_rollout", "wrap")


def __getattr__(name: str):
    # the layer subclasses lm-eval's LM: imported on first use, so families (which need only plans) stay light
    if name in _LAYER:
        from qa_tasks.rollout import layer

        return getattr(layer, name)
    raise AttributeError(f"module 'qa_tasks.rollout' has no attribute {name!r}")
