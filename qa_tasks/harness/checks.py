"""Checks of a run before any model loads: the pack tasks' data and options, the backend's packages, local
paths, endpoints and run options, and which tasks need the rollout layer or only the pack's task index.

May import: the ground modules of ``qa_tasks``, ``qa_tasks.rollout.budget``, ``qa_tasks.harness.task_index`` and
``qa_tasks.harness.api_endpoint``; lm-eval's public ``simple_parse_args_string``.
"""

from __future__ import annotations

import functools
import os
from pathlib import Path

from qa_tasks.errors import QAPackError
from qa_tasks.extras import require
from qa_tasks.family import families
from qa_tasks.harness.api_endpoint import API_MODELS, CHAT_API_MODELS, check_endpoint
from qa_tasks.harness.task_index import family_of, leaf_tasks, pack_entries, pack_tasks, rollout_tasks
from qa_tasks.rollout.budget import TRUNCATED_METRIC

__all__ = ["BACKEND_EXTRAS", "VLLM_MAX_LORA_RANKS", "budget_tasks", "check_model_args", "check_run_options", "multi_round",
           "needs_rollout", "pack_only", "preflight", "task_names"]

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


def preflight(tasks, metadata: dict | None = None) -> None:
    """Load and validate the data of every pack task in ``tasks`` (names; groups expanded; other entries
    ignored) and, given the run's ``--metadata`` (None: not known), the options the tasks read from it."""
    known = pack_tasks()
    for name in task_names(tasks):
        if isinstance(name, str) and name in known:
            for leaf in leaf_tasks(name):
                family = family_of(leaf)
                if family is not None:
                    family.preflight(leaf, metadata=metadata)


def task_names(tasks) -> list:
    return tasks.split(",") if isinstance(tasks, str) else list(tasks or [])


@functools.lru_cache(maxsize=1)
def budget_tasks() -> frozenset[str]:
    """Pack tasks reporting the share of replies cut off at ``max_gen_toks`` (their metric list, or the template it
    includes, names ``truncated_rate``), which the rollout layer measures, and the pack groups holding any."""
    entries = {n: e for n, e in pack_entries().items() if n in pack_tasks()}
    found = {n for n, e in entries.items()
             if any(isinstance(m, dict) and m.get("metric") == TRUNCATED_METRIC
                    for m in (e.cfg or {}).get("metric_list") or [])}
    groups = {n: (e.cfg or {}).get("task") or [] for n, e in entries.items() if "group" in (e.cfg or {})}
    found |= {g for g, members in groups.items() if found.intersection(m for m in members if isinstance(m, str))}
    return frozenset(found)


def needs_rollout(tasks, task_manager=None) -> bool:
    """Whether a run of ``tasks`` needs the rollout layer: multi-call tasks run through it, and tasks reporting
    ``truncated_rate`` read its reply records. Pack tasks are known exactly; a plain lm-eval task
    does not; task objects, and groups or tags of a caller's own task manager, might hold a pack task."""
    ours, theirs = rollout_tasks() | budget_tasks(), pack_tasks()
    for task in task_names(tasks):
        if not isinstance(task, str):
            return True
        if task in ours:
            return True
        if task in theirs:
            continue
        if task_manager is None:  # the index simple_evaluate builds: lm-eval's own tasks and the pack's
            continue
        entry = getattr(task_manager, "task_index", {}).get(task)
        if entry is None or getattr(getattr(entry, "kind", None), "name", "") != "TASK":
            return True
    return False


def pack_only(tasks, include_path=None) -> bool:
    """Whether a run of ``tasks`` (names, comma lists) can use the pack-only index: every entry is a pack
    task or group and no ``--include_path`` adds folders whose tasks may build on lm-eval's own."""
    if include_path:
        return False
    names = [n for t in task_names(tasks) for n in (t.split(",") if isinstance(t, str) else [t])]
    known = pack_tasks()
    return bool(names) and all(isinstance(n, str) and n.strip() in known for n in names)


def multi_round(tasks) -> list[str]:
    """The rollout tasks of ``tasks`` (groups expanded) that call the model in more than one round."""
    multi = [t for f in families() for t in f.multi_round_tasks]
    names = [t for t in task_names(tasks) if isinstance(t, str) and t in pack_tasks()]
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
    multi = multi_round(tasks)
    if model in ("vllm", "vllm-vlm") and int(args.get("data_parallel_size", 1) or 1) > 1 and multi:
        raise QAPackError(
            f"data_parallel_size={args['data_parallel_size']} with {', '.join(multi)}: lm-eval's vLLM backend "
            "builds a new engine in every data-parallel worker on each generate call, so each round of these "
            "multi-call tasks would reload the model; use tensor_parallel_size instead, or serve the model "
            "(vllm serve --data-parallel-size N) and run --model local-completions")


