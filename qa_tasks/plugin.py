"""How plain ``lm_eval`` sees the pack (lm-eval 0.4.13 has no plugin mechanism).

``qa_tasks._startup`` calls the ``patch_*`` functions right after lm-eval's own modules execute:

- ``TaskManager`` always indexes the pack's ``tasks_yaml`` folder, next to any ``--include_path``; in a run
  (``lm_eval run`` or ``simple_evaluate``) whose tasks are all the pack's, with no ``--include_path``, it
  indexes that folder alone (lm-eval's ~14,700 built-in entries cost seconds to index);
- ``registry.get_model`` returns the chosen model class with the rollout layer added (multi-call
  SQuAD strategies, see ``qa_tasks.rollout``), in runs whose tasks need it;
- ``simple_evaluate`` checks the run before any model loads: the backend's package is installed,
  local model paths exist, the data of the pack's tasks loads;
- the CLI prints a ``QAPackError`` as one line and exits 2 instead of a traceback, and suggests the
  closest pack task for a misspelled one.

Each patch first checks that its target still looks the way it does in the lm-eval versions the pack
is tested with (``SUPPORTED_LM_EVAL``). At the first target that does not, the hook logs one warning
naming the lm-eval version and the target, and patches nothing more in that process: the pack's
tasks may then be missing or stop with an error, lm-eval itself keeps working.

``tasks_dir`` is also the ``lm_eval.tasks`` entry point, for harness versions that read entry points.
"""

from __future__ import annotations

import contextvars
import difflib
import functools
import inspect
import logging
import os
import re
from pathlib import Path

from qa_tasks.api_endpoint import API_MODELS, CHAT_API_MODELS, check_endpoint, describe_failure
from qa_tasks.errors import QAPackError
from qa_tasks.extras import require

__all__ = [
    "SUPPORTED_LM_EVAL",
    "VLLM_MAX_LORA_RANKS",
    "check_model_args",
    "check_run_options",
    "pack_tasks",
    "patch_cli",
    "patch_evaluate_config",
    "patch_evaluator",
    "patch_registry",
    "patch_task_manager",
    "preflight",
    "rollout_tasks",
    "tasks_dir",
]

SUPPORTED_LM_EVAL = ">=0.4.13,<0.4.14"  # keep in step with pyproject.toml's lm-eval requirement
# lm-eval model name -> the pack extra that installs what lm-eval imports for it (qa_tasks.extras.EXTRAS)
BACKEND_EXTRAS = {
    "vllm": "vllm",
    "vllm-vlm": "vllm",
    **{name: "api" for name in (
        "local-completions", "local-chat-completions", "openai-completions", "openai-chat-completions")},
}
# vLLM's accepted max_lora_rank values (vllm/config/lora.py MaxLoRARanks); lm-eval passes 16 by default
VLLM_MAX_LORA_RANKS = (1, 8, 16, 32, 64, 128, 256, 320, 512)
# model_args keys that name local folders or files when they look like paths, checked for lm-eval's own
# backends only (another model class may read the same keys differently)
PATH_ARGS = ("pretrained", "tokenizer", "peft", "lora_local_path", "delta")
PATH_CHECKED_MODELS = {"hf", "huggingface", "hf-auto", "hf-multimodal", *BACKEND_EXTRAS}
_PATCHED = "__qa_pack_patched__"
_HOOK = {"off": False}  # set at the first target that does not fit: the hook then patches nothing more
# True/False inside simple_evaluate (whether its tasks need the rollout layer); None elsewhere
_ROLLOUT_WANTED: contextvars.ContextVar[bool | None] = contextvars.ContextVar("qa_pack_rollout", default=None)
# True while a run whose tasks are all the pack's builds its TaskManager: the built-in tasks are not indexed
_PACK_ONLY: contextvars.ContextVar[bool] = contextvars.ContextVar("qa_pack_only_index", default=False)


def tasks_dir() -> Path:
    """The pack's YAML task folder: inside the wheel, or beside the package in a source checkout."""
    here = Path(__file__).resolve().parent
    for candidate in (here / "tasks_yaml", here.parent / "tasks_yaml"):
        if candidate.is_dir():
            return candidate
    raise QAPackError(f"the pack's tasks_yaml folder is missing next to {here}; reinstall lm-eval-qa-pack")


def pack_tasks() -> dict[str, str]:
    """Pack task and group names -> family folder, from lm-eval's index of the pack folder."""
    from qa_tasks.task_index import pack_tasks as indexed

    return indexed()


@functools.lru_cache(maxsize=1)
def rollout_tasks() -> frozenset[str]:
    """Pack tasks whose results go through the rollout layer (their YAML, or the template it includes,
    uses ``process_rollout``), and the pack groups holding any of them."""
    from qa_tasks.task_index import pack_entries

    entries = {n: e for n, e in pack_entries().items() if n in pack_tasks()}
    found = {n for n, e in entries.items()
             if str((e.cfg or {}).get("process_results", "")).endswith("process_rollout")}
    groups = {n: (e.cfg or {}).get("task") or [] for n, e in entries.items() if "group" in (e.cfg or {})}
    found |= {g for g, members in groups.items() if found.intersection(m for m in members if isinstance(m, str))}
    return frozenset(found)


def preflight(tasks, metadata: dict | None = None) -> None:
    """Load and validate the data of every pack task in ``tasks`` (names; groups expanded; other entries
    ignored) and, given the run's ``--metadata`` (None: not known), the options the tasks read from it."""
    from qa_tasks.family import family_of
    from qa_tasks.task_index import leaf_tasks

    known = pack_tasks()
    for name in _task_names(tasks):
        if isinstance(name, str) and name in known:
            for leaf in leaf_tasks(name):
                family = family_of(leaf)
                if family is not None:
                    family.preflight(leaf, metadata=metadata)


def _task_names(tasks) -> list:
    return tasks.split(",") if isinstance(tasks, str) else list(tasks or [])


def _needs_rollout(tasks, task_manager=None) -> bool:
    """Whether a run of ``tasks`` needs the rollout layer. Pack tasks are known exactly; a plain
    lm-eval task does not; groups, tags and task objects from elsewhere might hold a pack task."""
    ours, theirs = rollout_tasks(), pack_tasks()
    for task in _task_names(tasks):
        if not isinstance(task, str):
            return True
        if task in ours:
            return True
        if task in theirs:
            continue
        entry = getattr(task_manager, "task_index", {}).get(task) if task_manager is not None else None
        if entry is None or getattr(getattr(entry, "kind", None), "name", "") != "TASK":
            return True
    return False


def _pack_only(tasks, include_path=None) -> bool:
    """Whether a run of ``tasks`` (names, comma lists) can use the pack-only index: every entry is a pack
    task or group and no ``--include_path`` adds folders whose tasks may build on lm-eval's own."""
    if include_path:
        return False
    names = [n for t in _task_names(tasks) for n in (t.split(",") if isinstance(t, str) else [t])]
    known = pack_tasks()
    return bool(names) and all(isinstance(n, str) and n.strip() in known for n in names)


def _multi_round(tasks) -> list[str]:
    """The rollout tasks of ``tasks`` (groups expanded) that call the model in more than one round."""
    from qa_tasks.family import families
    from qa_tasks.task_index import leaf_tasks

    multi = [t for f in families() for t in f.multi_round_tasks]
    names = [t for t in _task_names(tasks) if isinstance(t, str) and t in pack_tasks()]
    leaves = {leaf for name in names for leaf in leaf_tasks(name)}
    return [t for t in multi if t in leaves]


def _looks_local(value: str) -> bool:
    """A path rather than a Hub id: absolute, ./ ../ ~ relative, or more than one '/' (ids have one)."""
    return os.path.isabs(value) or value.startswith((".", "~")) or value.count("/") > 1


def check_run_options(model, limit=None, apply_chat_template=False) -> None:
    """One-line errors for run options lm-eval would only trip over after loading the model."""
    if limit is not None and float(limit) <= 0:
        raise QAPackError(f"--limit {float(limit):g}: give a number of documents per task (1 or more) or a fraction "
                          "in (0, 1), or leave it out for every document")
    if model in CHAT_API_MODELS and not apply_chat_template:
        raise QAPackError(f"--model {model} sends chat messages, which lm-eval builds only with "
                          "--apply_chat_template: add it, or use --model local-completions for plain prompts")


def check_model_args(model, model_args, tasks=()) -> None:
    """One-line errors for the mistakes users hit first, before lm-eval loads anything."""
    if not isinstance(model, str):
        return
    if model in BACKEND_EXTRAS:
        require(BACKEND_EXTRAS[model], what=f"--model {model}")
    if isinstance(model_args, str):
        from lm_eval.utils import simple_parse_args_string

        model_args = simple_parse_args_string(model_args)
    args = model_args if isinstance(model_args, dict) and model in PATH_CHECKED_MODELS else {}
    for key in PATH_ARGS:
        value = args.get(key)
        if isinstance(value, str) and _looks_local(value) and not Path(value).expanduser().exists():
            raise QAPackError(f"{key}={value}: no such file or directory; give the folder that holds the "
                              f"{'adapter' if key in ('peft', 'lora_local_path') else 'model'} "
                              "(config.json) or a Hugging Face Hub id such as org/name")
    if model in API_MODELS and isinstance(args.get("base_url"), str):
        check_endpoint(args["base_url"])
    rank = args.get("max_lora_rank")
    if model in ("vllm", "vllm-vlm") and rank is not None and rank not in VLLM_MAX_LORA_RANKS:
        raise QAPackError(f"max_lora_rank={rank} is not a value vLLM accepts; use the smallest of "
                          f"{', '.join(map(str, VLLM_MAX_LORA_RANKS))} that is at least the adapter's rank")
    multi = _multi_round(tasks)
    if model in ("vllm", "vllm-vlm") and int(args.get("data_parallel_size", 1) or 1) > 1 and multi:
        raise QAPackError(
            f"data_parallel_size={args['data_parallel_size']} with {', '.join(multi)}: lm-eval's vLLM backend "
            "builds a new engine in every data-parallel worker on each generate call, so each round of these "
            "multi-call tasks would reload the model; use tensor_parallel_size instead, or serve the model "
            "(vllm serve --data-parallel-size N) and run --model local-completions")


# --- patches --------------------------------------------------------------------------------------

def _mark(obj) -> bool:
    """True the first time ``obj`` is seen, so each patch applies once."""
    if getattr(obj, _PATCHED, False):
        return False
    setattr(obj, _PATCHED, True)
    return True


def _lm_eval_version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("lm-eval")
    except PackageNotFoundError:
        return "(version unknown)"


def _fits(owner, attr: str, params: tuple[str, ...], what: str):
    """``owner.attr`` when the hook is on and it exists and has parameters named ``params``; otherwise
    None (after one warning, the first time), so the caller leaves lm-eval untouched."""
    if _HOOK["off"]:
        return None
    target = getattr(owner, attr, None)
    problem = None
    if not callable(target):
        problem = "is missing"
    else:
        try:
            found = tuple(inspect.signature(target).parameters)
        except (TypeError, ValueError):
            found = ()
        if not set(params) <= set(found):
            problem = f"takes ({', '.join(found)}), without {', '.join(p for p in params if p not in found)}"
    if problem is None:
        return target
    _HOOK["off"] = True
    logging.getLogger("qa_tasks").warning(
        "lm-eval-qa-pack: in lm-eval %s, %s %s, unlike the lm-eval versions the pack supports (%s); the pack "
        "leaves lm-eval untouched, so its tasks may be missing or stop with an error: pip install 'lm-eval%s'",
        _lm_eval_version(), what, problem, SUPPORTED_LM_EVAL, SUPPORTED_LM_EVAL)
    return None


def patch_task_manager(module) -> None:
    cls = getattr(module, "TaskManager", None)
    original_init = _fits(cls, "__init__", ("self", "include_path"), "lm_eval.tasks.TaskManager.__init__")
    if original_init is None or not _mark(cls):
        return
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
        if _PACK_ONLY.get() and given is None and "include_defaults" in signature.parameters:
            bound.arguments["include_defaults"] = False
        original_init(*bound.args, **bound.kwargs)

    cls.__init__ = __init__


def patch_registry(module) -> None:
    original_get_model = _fits(module, "get_model", ("model_name",), "lm_eval.api.registry.get_model")
    if original_get_model is None or not _mark(module):
        return

    @functools.wraps(original_get_model)
    def get_model(model_name):
        cls = original_get_model(model_name)
        if _ROLLOUT_WANTED.get() is False:  # inside simple_evaluate, for tasks that never need it
            return cls
        from qa_tasks.rollout import with_rollout

        return with_rollout(cls)

    module.get_model = get_model


def patch_evaluator(module) -> None:
    original = _fits(module, "simple_evaluate", ("model", "model_args", "tasks"), "lm_eval.simple_evaluate")
    if original is None or not _mark(module):
        return
    signature = inspect.signature(original)

    @functools.wraps(original)
    def simple_evaluate(*args, **kwargs):
        given = signature.bind_partial(*args, **kwargs).arguments
        tasks = given.get("tasks") or []
        # data and task options first: what these tasks read is wrong whatever the model
        # (on the CLI the task manager holds model_args | --metadata, what the tasks will read)
        preflight(tasks, getattr(given.get("task_manager"), "metadata", None) or given.get("metadata") or {})
        check_model_args(given.get("model"), given.get("model_args"), tasks)  # first: the backend's packages
        check_run_options(given.get("model"), given.get("limit"), given.get("apply_chat_template"))
        token = _ROLLOUT_WANTED.set(_needs_rollout(tasks, given.get("task_manager")))
        # the TaskManager simple_evaluate builds when none is given
        pack_only = _PACK_ONLY.set(given.get("task_manager") is None and _pack_only(tasks))
        try:
            return original(*args, **kwargs)
        finally:
            _PACK_ONLY.reset(pack_only)
            _ROLLOUT_WANTED.reset(token)

    module.simple_evaluate = simple_evaluate


def patch_evaluate_config(module) -> None:
    """``lm_eval run`` builds its TaskManager in ``EvaluatorConfig.process_tasks``, from ``--tasks``."""
    cls = getattr(module, "EvaluatorConfig", None)
    original = _fits(cls, "process_tasks", ("self", "metadata"),
                     "lm_eval.config.evaluate_config.EvaluatorConfig.process_tasks")
    if original is None or not _mark(cls):
        return

    @functools.wraps(original)
    def process_tasks(self, *args, **kwargs):
        token = _PACK_ONLY.set(_pack_only(getattr(self, "tasks", None), getattr(self, "include_path", None)))
        try:
            return original(self, *args, **kwargs)
        finally:
            _PACK_ONLY.reset(token)

    cls.process_tasks = process_tasks


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


def patch_cli(module) -> None:
    cls = getattr(module, "HarnessCLI", None)
    original_execute = _fits(cls, "execute", ("self", "args"), "lm_eval._cli.harness.HarnessCLI.execute")
    original_parse = _fits(cls, "parse_args", ("self",), "lm_eval._cli.harness.HarnessCLI.parse_args")
    if original_execute is None or original_parse is None or not _mark(cls):
        return

    def parse_args(self):
        try:
            return original_parse(self)
        except ValueError as e:  # raised by lm-eval's own argparse actions (e.g. --metadata '{bad'): a usage error
            raise SystemExit(QAPackError(str(e)).report()) from None

    def execute(self, args):
        if getattr(args, "model", None) in API_MODELS and not _debug(args):
            # one failed concurrent request leaves its sibling tasks' errors unretrieved: asyncio would log
            # each as a traceback, while the run's one line (below) already says what failed
            logging.getLogger("asyncio").addFilter(
                lambda record: not record.getMessage().startswith("Task exception was never retrieved"))
        # `lm_eval validate --tasks <pack tasks>` needs only the pack's index, as a run of them does
        token = _PACK_ONLY.set(_pack_only(getattr(args, "tasks", None), getattr(args, "include_path", None)))
        try:
            return original_execute(self, args)
        except QAPackError as e:
            raise SystemExit(e.report()) from None
        except Exception as e:
            hint = (_suggest_pack_task(e) if isinstance(e, ValueError) else None) or _api_failure(args, e)
            if hint is None:
                raise
            raise SystemExit(hint.report()) from None
        finally:
            _PACK_ONLY.reset(token)

    cls.parse_args = parse_args
    cls.execute = execute
