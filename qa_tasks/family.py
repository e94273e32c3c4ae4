"""What the pack knows about one task family, and the lookups over the registry (``qa_tasks.families``).

Each family module exports one ``FAMILY = Family(...)``; everything else reads it from here instead of
checking task names: the startup hook (data preflight, rollout programs), ``finetune`` (training sets and
the documents the guard keeps out of them), ``leaderboards`` (main metric, detail tables) and the demo.
Which family owns a task is the ``tasks_yaml`` subfolder its YAML lives in, from lm-eval's own index of the
pack folder (``qa_tasks.harness.task_index.family_of``), or, for a finished run, from the YAML path its results file
records (``family_of_yaml``: no lm-eval import).

Functions of the layers above ``qa_tasks`` (training-set builders, leaderboard tables) are named by
``"module:function"`` strings and imported only by the layer that calls them, so the arrows stay one way.
"""

from __future__ import annotations

import functools
import importlib
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

from qa_tasks.errors import QAPackError

__all__ = ["Family", "TrainingSet", "families", "family_named", "family_of_yaml", "resolve",
           "training_sets"]


@dataclass(frozen=True)
class TrainingSet:
    """One ``finetune.sft --task`` of a family."""

    build: str  # "module:function": fold -> finetune.data.TrainingData, or a mapping of its fields
    help: str  # one line for --help: what it trains on
    eval_task: str = ""  # the pack task (``{fold}`` filled in) whose documents the guard keeps out
    folds: int = 0  # > 0: the set is one fold's train part and ``fold`` must be 0..folds-1


@dataclass(frozen=True)
class Family:
    name: str
    # (task name, --metadata or None when unknown): load and validate the data before any model loads
    preflight: Callable[..., None]
    folder: str = ""  # tasks_yaml/<folder>; the name when empty
    training_sets: Mapping[str, TrainingSet] = field(default_factory=dict)  # finetune task name -> set
    main_metric: str = ""  # the leaderboard overview's column
    compared_metrics: tuple[str, ...] = ()  # base vs adapter rows (default: the main metric)
    progress_metrics: tuple[str, ...] = ()  # training progression columns (default: the main metric)
    chance: float | None = None  # accuracy (acc, acc_norm, acc_<kind>) of a uniform guess, drawn on plots
    tables: tuple[str, ...] = ()  # "module:function"(models, collection) -> Table | list[Table] | None
    rollout_programs: Mapping[str, str] = field(default_factory=dict)  # program name -> "module:function"
    multi_round_tasks: tuple[str, ...] = ()  # rollout tasks calling the model in more than one round
    demo_tasks: tuple[str, ...] = ()  # what ``python -m qa_pack_demo`` evaluates

    @property
    def task_folder(self) -> str:
        return self.folder or self.name


@functools.lru_cache(maxsize=1)
def families() -> tuple[Family, ...]:
    """Every registered family, in the registry's order."""
    from qa_tasks.families import FAMILIES

    found = []
    for module in FAMILIES:
        family = getattr(importlib.import_module(module), "FAMILY", None)
        if not isinstance(family, Family):
            raise QAPackError(f"{module} is listed in qa_tasks.families but exports no FAMILY = Family(...)")
        found.append(family)
    return tuple(found)


def family_named(name: str) -> Family | None:
    return next((f for f in families() if f.name == name), None)


def family_of_yaml(path: str) -> Family | None:
    """The family owning the task whose YAML is at ``path`` (as a results file records it), without lm-eval's index.

    The family folder is the one right below a ``tasks_yaml`` folder, so runs of this checkout, another one
    or an installed wheel (on any OS) all resolve; a YAML outside a ``tasks_yaml`` folder is not the pack's.
    """
    parts = [p for p in re.split(r"[\\/]", path) if p]
    below = [i + 1 for i, p in enumerate(parts[:-2]) if p == "tasks_yaml"]
    folder = parts[below[-1]] if below else None
    return next((f for f in families() if f.task_folder == folder), None) if folder else None


def training_sets() -> dict[str, tuple[Family, TrainingSet]]:
    """finetune task name -> (family, training set), over every family."""
    return {name: (f, ts) for f in families() for name, ts in f.training_sets.items()}


def resolve(ref: str):
    """The object a ``"module:function"`` reference names; one line when it is not there."""
    module, _, attr = ref.partition(":")
    try:
        return getattr(importlib.import_module(module), attr)
    except (ImportError, AttributeError) as e:
        raise QAPackError(f"{ref} is not available in this install ({e}); reinstall lm-eval-qa-pack") from None
