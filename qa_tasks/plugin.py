"""How plain ``lm_eval`` sees the pack (lm-eval 0.4.13 has no plugin mechanism).

``qa_tasks._startup`` calls the ``patch_*`` functions right after lm-eval's own modules execute:

- ``TaskManager`` always indexes the pack's ``tasks_yaml`` folder, next to any ``--include_path``;
- ``registry.get_model`` returns the chosen model class with the rollout layer added
  (multi-call SQuAD strategies, see ``qa_tasks.rollout``);
- ``simple_evaluate`` checks the data of the pack's tasks before any model loads;
- the CLI prints a ``QAPackError`` as one line and exits 2 instead of a traceback.

``tasks_dir`` is also the ``lm_eval.tasks`` entry point, for harness versions that read entry points.
"""

from __future__ import annotations

import functools
import importlib
import inspect
import re
from pathlib import Path

from qa_tasks.errors import QAPackError

__all__ = [
    "pack_tasks",
    "patch_cli",
    "patch_evaluator",
    "patch_registry",
    "patch_task_manager",
    "preflight",
    "tasks_dir",
]

# tasks_yaml/<folder> -> module with ``preflight(task_name)`` that loads and validates the data
FAMILY_MODULES = {
    "recipe_mpr": "qa_tasks.recipe_mpr",
    "squad": "qa_tasks.squad",
    "math": "qa_tasks.math_think",
}
_PATCHED = "__qa_pack_patched__"


def tasks_dir() -> Path:
    """The pack's YAML task folder: inside the wheel, or beside the package in a source checkout."""
    here = Path(__file__).resolve().parent
    for candidate in (here / "tasks_yaml", here.parent / "tasks_yaml"):
        if candidate.is_dir():
            return candidate
    raise QAPackError(f"the pack's tasks_yaml folder is missing next to {here}; reinstall lm-eval-qa-pack")


@functools.lru_cache(maxsize=1)
def pack_tasks() -> dict[str, str]:
    """Task and group names declared by the pack's YAML files -> family folder (no YAML parsing)."""
    names: dict[str, str] = {}
    pattern = re.compile(r"^(?:task|group):[ \t]*['\"]?([\w.-]+)", re.MULTILINE)
    for path in sorted(tasks_dir().glob("*/*.yaml")):
        for name in pattern.findall(path.read_text(encoding="utf-8")):
            names[name] = path.parent.name
    return names


def preflight(tasks) -> None:
    """Load and validate the data of every pack task in ``tasks`` (names; other entries ignored)."""
    if isinstance(tasks, str):
        tasks = tasks.split(",")
    known = pack_tasks()
    for name in tasks or []:
        family = known.get(name) if isinstance(name, str) else None
        if family in FAMILY_MODULES:
            importlib.import_module(FAMILY_MODULES[family]).preflight(name)


def _mark(obj) -> bool:
    """True the first time ``obj`` is seen, so each patch applies once."""
    if getattr(obj, _PATCHED, False):
        return False
    setattr(obj, _PATCHED, True)
    return True


def patch_task_manager(module) -> None:
    cls = module.TaskManager
    if not _mark(cls):
        return
    original_init = cls.__init__
    signature = inspect.signature(original_init)

    @functools.wraps(original_init)
    def __init__(*args, **kwargs):
        bound = signature.bind(*args, **kwargs)
        given = bound.arguments.get("include_path")
        paths = [] if given is None else list(given) if isinstance(given, (list, tuple)) else [given]
        ours = tasks_dir()
        if all(Path(p).resolve() != ours for p in paths):
            paths.insert(0, ours)  # the user's own paths come later and may override ours
        bound.arguments["include_path"] = paths
        original_init(*bound.args, **bound.kwargs)

    cls.__init__ = __init__


def patch_registry(module) -> None:
    if not _mark(module):
        return
    original_get_model = module.get_model

    @functools.wraps(original_get_model)
    def get_model(model_name):
        from qa_tasks.rollout import with_rollout

        return with_rollout(original_get_model(model_name))

    module.get_model = get_model


def patch_evaluator(module) -> None:
    if not _mark(module):
        return
    original = module.simple_evaluate

    @functools.wraps(original)
    def simple_evaluate(*args, **kwargs):
        preflight(kwargs.get("tasks") or [])
        return original(*args, **kwargs)

    module.simple_evaluate = simple_evaluate


def patch_cli(module) -> None:
    cls = module.HarnessCLI
    if not _mark(cls):
        return
    original_execute = cls.execute

    def execute(self, args):
        try:
            return original_execute(self, args)
        except QAPackError as e:
            raise SystemExit(e.report()) from None

    cls.execute = execute
