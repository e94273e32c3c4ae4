"""How plain ``lm_eval`` sees the pack (lm-eval 0.4.13 has no plugin mechanism): one table of patches.

``qa_tasks.harness.startup`` calls ``apply`` right after each of lm-eval's modules named in ``PATCHES`` executes:

- ``TaskManager`` also indexes the pack's ``tasks_yaml`` folder, before any ``--include_path``, unless the caller
  chose its folders itself (``include_defaults=False``); in a run (``lm_eval run``, ``simple_evaluate``)
  whose tasks are all the pack's, with no ``--include_path``, it indexes that folder alone (lm-eval's
  ~14,700 built-in entries cost seconds to index);
- ``registry.get_model`` returns the chosen model class with the rollout layer in front (``qa_tasks.rollout``),
  in runs whose tasks need it;
- ``simple_evaluate`` checks the run before any model loads (``qa_tasks.harness.checks``);
- the CLI prints a ``QAPackError`` as one line and exits 2 instead of a traceback, and suggests the
  closest pack task for a misspelled one.

Each patch first checks that its target still takes the parameters it wraps in the lm-eval versions the pack
is tested with (``SUPPORTED_LM_EVAL``). A target that does not is left as it is, with one warning naming the
lm-eval version and the target; the other patches do not depend on it and still apply.

What a run asked for reaches the patches that act inside it (the task manager, the model registry) as one
``RunScope`` in a context variable, set by the patch that starts the run.

May import: the other ``qa_tasks.harness`` modules, ``qa_tasks.rollout`` and the ground modules of ``qa_tasks``.
"""

from __future__ import annotations

import contextlib
import contextvars
import dataclasses
import difflib
import functools
import inspect
import logging
import re
import sys
import warnings
from collections.abc import Callable, Iterator
from pathlib import Path

from qa_tasks.errors import QAPackError
from qa_tasks.harness.api_endpoint import API_MODELS, describe_failure
from qa_tasks.harness.checks import check_model_args, check_run_options, needs_rollout, pack_only, preflight
from qa_tasks.harness.task_index import pack_tasks, tasks_dir
from qa_tasks.rollout import with_rollout

__all__ = ["PATCHES", "SUPPORTED_LM_EVAL", "Patch", "RunScope", "apply", "fits"]

SUPPORTED_LM_EVAL = ">=0.4.13,<0.4.14"  # keep in step with pyproject.toml's lm-eval requirement
_PATCHED = "__qa_pack_patch__"  # set on each replacement, so a patch applies once
_WARNED: set[str] = set()  # targets already named in a warning: one warning per process


@dataclasses.dataclass(frozen=True)
class RunScope:
    """What the run in progress (in this context) asked for."""

    rollout: bool | None = None  # whether its tasks need the rollout layer; None: not inside simple_evaluate
    pack_only: bool = False  # its TaskManager may index the pack's folder alone


_SCOPE: contextvars.ContextVar[RunScope] = contextvars.ContextVar("qa_pack_run", default=RunScope())  # noqa: B039 (frozen)


@contextlib.contextmanager
def run_scope(**changes) -> Iterator[None]:
    token = _SCOPE.set(dataclasses.replace(_SCOPE.get(), **changes))
    try:
        yield
    finally:
        _SCOPE.reset(token)


# --- the replacements: each takes the original and returns what replaces it -------------------------

def _task_manager_init(original: Callable) -> Callable:
    signature = inspect.signature(original)

    @functools.wraps(original)
    def __init__(*args, **kwargs):
        bound = signature.bind(*args, **kwargs)
        given = bound.arguments.get("include_path")
        if bound.arguments.get("include_defaults", True) is not False:  # else the caller chose every folder
            paths = [] if given is None else list(given) if isinstance(given, (list, tuple)) else [given]
            ours = tasks_dir()
            if all(Path(p).resolve() != ours for p in paths):
                paths.insert(0, ours)  # the user's own paths come later and may override ours
            bound.arguments["include_path"] = paths
            if _SCOPE.get().pack_only and given is None and "include_defaults" in signature.parameters:
                bound.arguments["include_defaults"] = False
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            original(*bound.args, **bound.kwargs)
        _warn_at_caller(caught)

    return __init__


def _warn_at_caller(caught: list[warnings.WarningMessage]) -> None:
    """Re-issue warnings lm-eval aimed at its caller (``stacklevel=2``, now this module) at our caller's line."""
    caller = sys._getframe(2)
    for w in caught:
        if w.filename == __file__:
            warnings.warn_explicit(w.message, w.category, caller.f_code.co_filename, caller.f_lineno,
                                   module=caller.f_globals.get("__name__"), registry=caller.f_globals.setdefault(
                                       "__warningregistry__", {}))
        else:
            warnings.warn_explicit(w.message, w.category, w.filename, w.lineno, source=w.source)


def _get_model(original: Callable) -> Callable:
    @functools.wraps(original)
    def get_model(model_name):
        cls = original(model_name)
        return cls if _SCOPE.get().rollout is False else with_rollout(cls)

    return get_model


def _simple_evaluate(original: Callable) -> Callable:
    signature = inspect.signature(original)

    @functools.wraps(original)
    def simple_evaluate(*args, **kwargs):
        given = signature.bind_partial(*args, **kwargs).arguments
        tasks, manager = given.get("tasks") or [], given.get("task_manager")
        # data and task options first: what these tasks read is wrong whatever the model
        # (on the CLI the task manager holds model_args | --metadata, what the tasks will read)
        preflight(tasks, getattr(manager, "metadata", None) or given.get("metadata") or {})
        check_model_args(given.get("model"), given.get("model_args"), tasks)  # first: the backend's packages
        check_run_options(given.get("model"), given.get("limit"), given.get("apply_chat_template"))
        # pack_only: for the TaskManager simple_evaluate builds when none is given
        with run_scope(rollout=needs_rollout(tasks, manager), pack_only=manager is None and pack_only(tasks)):
            return original(*args, **kwargs)

    return simple_evaluate


def _process_tasks(original: Callable) -> Callable:
    """``lm_eval run`` builds its TaskManager in ``EvaluatorConfig.process_tasks``, from ``--tasks``."""

    @functools.wraps(original)
    def process_tasks(self, *args, **kwargs):
        with run_scope(pack_only=pack_only(getattr(self, "tasks", None), getattr(self, "include_path", None))):
            return original(self, *args, **kwargs)

    return process_tasks


def _parse_args(original: Callable) -> Callable:
    @functools.wraps(original)
    def parse_args(self):
        try:
            return original(self)
        except ValueError as e:  # raised by lm-eval's own argparse actions (e.g. --metadata '{bad'): a usage error
            raise SystemExit(QAPackError(str(e)).report()) from None

    return parse_args


def _execute(original: Callable) -> Callable:
    @functools.wraps(original)
    def execute(self, args):
        if getattr(args, "model", None) in API_MODELS and not _debug(args):
            # one failed concurrent request leaves its sibling tasks' errors unretrieved: asyncio would log
            # each as a traceback, while the run's one line (below) already says what failed
            logging.getLogger("asyncio").addFilter(
                lambda record: not record.getMessage().startswith("Task exception was never retrieved"))
        # `lm_eval validate --tasks <pack tasks>` needs only the pack's index, as a run of them does
        try:
            with run_scope(pack_only=pack_only(getattr(args, "tasks", None), getattr(args, "include_path", None))):
                return original(self, args)
        except QAPackError as e:
            raise SystemExit(e.report()) from None
        except Exception as e:
            hint = (_suggest_pack_task(e) if isinstance(e, ValueError) else None) or _api_failure(args, e)
            if hint is None:
                raise
            raise SystemExit(hint.report()) from None

    return execute


def _suggest_pack_task(error: ValueError) -> QAPackError | None:
    """lm-eval's 'Tasks not found: a, b' as one line naming the closest pack task, when there is one."""
    match = re.fullmatch(r"Tasks not found: (.+)", str(error))
    if not match:
        return None
    hints = []
    for name in match.group(1).split(", "):
        if name in pack_tasks():
            return QAPackError(f"{name} is a task of lm-eval-qa-pack, but lm-eval did not index the pack's "
                               f"tasks (see any warning above); pass --include_path {tasks_dir()}")
        close = difflib.get_close_matches(name, list(pack_tasks()), n=1, cutoff=0.75)
        if close:
            hints.append(f"{name!r} (did you mean {close[0]}?)")
    if not hints:
        return None
    return QAPackError(f"unknown task {', '.join(hints)}; `lm_eval ls tasks` lists every task")


def _debug(args) -> bool:
    return str(getattr(args, "verbosity", "")).upper() == "DEBUG"


def _api_failure(args, error: Exception) -> QAPackError | None:
    """The one line for a run of an API model that a failed request ended; None for other runs and
    errors, and with --verbosity DEBUG (the whole traceback then stands)."""
    if getattr(args, "model", None) not in API_MODELS or _debug(args):
        return None
    model_args = getattr(args, "model_args", None)
    if isinstance(model_args, str):
        from lm_eval.utils import simple_parse_args_string

        model_args = simple_parse_args_string(model_args)
    url = (model_args or {}).get("base_url") or "the API endpoint"
    return describe_failure(error, url)



# --- the table ------------------------------------------------------------------------------------

@dataclasses.dataclass(frozen=True)
class Patch:
    module: str  # the lm-eval module whose import applies it
    owner: str  # the class in that module holding the target, or "" for a module-level function
    attr: str
    params: tuple[str, ...]  # parameters the replacement relies on
    replace: Callable[[Callable], Callable]

    @property
    def target(self) -> str:
        return ".".join(p for p in (self.module, self.owner, self.attr) if p)


PATCHES = (
    Patch("lm_eval.tasks.manager", "TaskManager", "__init__", ("self", "include_path"), _task_manager_init),
    Patch("lm_eval.api.registry", "", "get_model", ("model_name",), _get_model),
    Patch("lm_eval.evaluator", "", "simple_evaluate", ("model", "model_args", "tasks"), _simple_evaluate),
    Patch("lm_eval.config.evaluate_config", "EvaluatorConfig", "process_tasks", ("self", "metadata"),
          _process_tasks),
    Patch("lm_eval._cli.harness", "HarnessCLI", "parse_args", ("self",), _parse_args),
    Patch("lm_eval._cli.harness", "HarnessCLI", "execute", ("self", "args"), _execute),
)


def _lm_eval_version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("lm-eval")
    except PackageNotFoundError:
        return "(version unknown)"


def fits(owner, patch: Patch):
    """The target of ``patch`` on ``owner`` when it exists and takes ``patch.params``, else None, after a warning
    (the first time) saying which target and why (the caller then leaves it untouched)."""
    target = getattr(owner, patch.attr, None)
    problem = None
    if not callable(target):
        problem = "is missing"
    else:
        try:
            found = tuple(inspect.signature(target).parameters)
        except (TypeError, ValueError):
            found = ()
        if not set(patch.params) <= set(found):
            problem = f"takes ({', '.join(found)}), without {', '.join(p for p in patch.params if p not in found)}"
    if problem is None:
        return target
    if patch.target in _WARNED:
        return None
    _WARNED.add(patch.target)
    logging.getLogger("qa_tasks").warning(
        "lm-eval-qa-pack: in lm-eval %s, %s %s, unlike the lm-eval versions the pack supports (%s); the pack "
        "leaves it as it is, so some of its tasks or checks may be missing: pip install 'lm-eval%s'",
        _lm_eval_version(), patch.target, problem, SUPPORTED_LM_EVAL, SUPPORTED_LM_EVAL)
    return None


def apply(module_name: str, module) -> None:
    """Apply the patches of ``module_name`` (an lm-eval module that just executed) to ``module``, once."""
    for patch in PATCHES:
        if patch.module != module_name:
            continue
        owner = getattr(module, patch.owner, None) if patch.owner else module
        original = fits(owner, patch)
        if original is None or getattr(original, _PATCHED, False):
            continue
        replacement = patch.replace(original)
        setattr(replacement, _PATCHED, True)
        setattr(owner, patch.attr, replacement)
