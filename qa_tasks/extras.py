"""The pack's optional extras (``[project.optional-dependencies]`` in pyproject.toml) and the one check a
feature makes before it uses one.

Optional packages are imported inside the functions that use them, never at module level, so every
command's ``--help`` works without them. A feature whose extra is missing stops with one line::

    error: python -m finetune.sweep needs optuna, which is not installed: pip install 'lm-eval-qa-pack[sweep]'
"""

from __future__ import annotations

import importlib.util

from qa_tasks.errors import QAPackError

__all__ = ["EXTRAS", "missing", "require"]

# extra -> the top-level modules the pack (or lm-eval, for api and vllm) imports from it
EXTRAS = {
    "api": ("aiohttp", "tenacity", "requests", "tqdm"),  # lm-eval's OpenAI-compatible backends
    "logging": ("tensorboard", "wandb"),  # report_to names one of them: checked one at a time
    "math": ("math_verify",),
    "plots": ("matplotlib",),
    "sweep": ("optuna",),
    "train": ("trl", "accelerate"),  # bitsandbytes only for 4-bit bases: checked where those are asked for
    "vllm": ("vllm",),
}


def missing(*modules: str) -> list[str]:
    """Those of ``modules`` (top-level names) that are not installed; none of them is imported."""
    return [name for name in modules if not _installed(name)]


def _installed(name: str) -> bool:
    try:
        return importlib.util.find_spec(name) is not None
    except ImportError:  # a meta-path finder that refuses the name counts as "not installed" too
        return False


def require(extra: str, *modules: str, what: str) -> None:
    """Raise the one-line ``QAPackError`` when ``what`` (the feature as the user asked for it) lacks
    ``modules`` (default: every module of ``extra``; ``extra`` may name several: ``"train,math"``)."""
    absent = missing(*(modules or [m for name in extra.split(",") for m in EXTRAS[name]]))
    if absent:
        raise QAPackError(f"{what} needs {', '.join(absent)}, which {'is' if len(absent) == 1 else 'are'} not "
                          f"installed: pip install 'lm-eval-qa-pack[{extra}]'")
