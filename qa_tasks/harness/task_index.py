"""lm-eval task indexes, built once per process: pack-only when every task is the pack's.

May import: the ground modules of ``qa_tasks``; lm-eval's ``TaskManager`` and its index (inside functions).

``TaskManager()`` indexes lm-eval's ~14,700 built-in entries (about 12 s); the pack's own folder alone
takes a fraction of a second (0.05 s). A task list naming any non-pack task falls back to the full index.
The pack-only index is also where the pack's task names, their families (the ``tasks_yaml`` subfolder of
their YAML) and their YAML options come from.
"""

from __future__ import annotations

import functools
from pathlib import Path

from qa_tasks.errors import QAPackError
from qa_tasks.family import Family, families

__all__ = ["family_of", "is_pack_only", "leaf_tasks", "pack_entries", "pack_tasks", "rollout_tasks", "task_config",
           "task_documents", "task_manager", "task_options", "tasks_dir"]


def tasks_dir() -> Path:
    """The pack's YAML task folder: inside the wheel (``qa_tasks/tasks_yaml``), or beside the package in a
    source checkout. Also the ``lm_eval.tasks`` entry point, for harness versions that read entry points."""
    package = Path(__file__).resolve().parent.parent
    for candidate in (package / "tasks_yaml", package.parent / "tasks_yaml"):
        if candidate.is_dir():
            return candidate
    raise QAPackError(f"the pack's tasks_yaml folder is missing next to {package}; reinstall lm-eval-qa-pack")


def is_pack_only(tasks: list[str]) -> bool:
    known = pack_tasks()
    return bool(tasks) and all(name in known for name in tasks)


@functools.lru_cache(maxsize=2)
def _manager(pack_only: bool):
    from lm_eval.tasks import TaskManager

    if pack_only:
        return TaskManager(include_defaults=False, include_path=str(tasks_dir()))
    return TaskManager()


def pack_entries() -> dict:
    """lm-eval's index entries of the pack's tasks and groups (YAML parsed, functions unresolved)."""
    return dict(_manager(True).task_index)


@functools.lru_cache(maxsize=1)
def pack_tasks() -> dict[str, str]:
    """Pack task and group names -> family folder (the ``tasks_yaml`` subfolder holding the YAML)."""
    root = tasks_dir()
    out: dict[str, str] = {}
    for name, entry in pack_entries().items():
        path = getattr(entry, "yaml_path", None)
        if path is not None and root in path.resolve().parents:
            out[name] = path.resolve().relative_to(root).parts[0]
    return out


@functools.lru_cache(maxsize=1)
def rollout_tasks() -> frozenset[str]:
    """Pack tasks whose results go through the rollout layer (their YAML, or the template it includes,
    uses ``process_rollout``), and the pack groups holding any of them."""
    entries = {n: e for n, e in pack_entries().items() if n in pack_tasks()}
    found = {n for n, e in entries.items()
             if str((e.cfg or {}).get("process_results", "")).endswith("process_rollout")}
    groups = {n: (e.cfg or {}).get("task") or [] for n, e in entries.items() if "group" in (e.cfg or {})}
    found |= {g for g, members in groups.items() if found.intersection(m for m in members if isinstance(m, str))}
    return frozenset(found)


def family_of(task: str) -> Family | None:
    """The family owning pack task (or group) ``task``: the one whose folder holds its YAML."""
    folder = pack_tasks().get(task)
    return next((f for f in families() if f.task_folder == folder), None) if folder else None


def task_options(name: str) -> dict:
    """A pack task's ``dataset_kwargs`` (what its YAML variant sets: a fold, a data set ...), from the index."""
    entry = pack_entries().get(name)
    return dict((getattr(entry, "cfg", None) or {}).get("dataset_kwargs") or {})


def task_manager(tasks: list[str]):
    """The TaskManager for ``tasks``: pack-only if all of them are the pack's, else the full index."""
    return _manager(is_pack_only(list(tasks)))


def _entry(name: str):
    entry = task_manager([name]).task_index.get(name)
    if entry is None:
        raise QAPackError(f"{name} is not a task of lm-eval-qa-pack; list them with `lm_eval ls tasks`")
    return entry


def _config(entry) -> dict:
    # the task's YAML with includes and !function resolved, as lm-eval builds it (no task object: building
    # one runs doc_to_text, which multi-call tasks refuse without a model)
    return task_manager([entry.name])._factory._load_full_config(entry, None)


def task_config(name: str) -> dict:
    """A pack task's resolved YAML config (metric_list, generation kwargs, ...), without building the task."""
    return _config(_entry(name))


def leaf_tasks(name: str) -> list[str]:
    """A pack task, or the tasks a pack group names (recursively)."""
    from lm_eval.tasks._index import Kind

    entry = _entry(name)
    if entry.kind is not Kind.GROUP:
        return [name]
    out: list[str] = []
    for child in (entry.cfg or _config(entry)).get("task") or []:  # the index's parse: no functions run
        child_name = child if isinstance(child, str) else child.get("task") or child.get("group")
        if isinstance(child_name, str):
            out += [t for t in leaf_tasks(child_name) if t not in out]
    return out


def task_documents(name: str) -> list[dict]:
    """The evaluation documents of one pack task (its test split, else validation), after process_docs."""
    cfg = _config(_entry(name))
    load = cfg.get("custom_dataset")
    if not callable(load):
        raise QAPackError(f"{name}: its YAML names no custom_dataset function, so its documents cannot be read")
    dataset = load(**(cfg.get("metadata") or {}), **(cfg.get("dataset_kwargs") or {}))
    split = cfg.get("test_split") or cfg.get("validation_split")
    docs = dataset[split]
    if callable(cfg.get("process_docs")):
        docs = cfg["process_docs"](docs)
    return list(docs)
