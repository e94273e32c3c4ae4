"""Read lm-eval output folders: ``results_*.json``, ``samples_*.jsonl`` and SQuAD ``latency_*.json``.

Nothing here raises for a bad file: each corrupt, truncated, foreign or partial file becomes one
warning naming the file and saying why, and everything else still loads. Only a path that does not
exist is a usage error (``QAPackError``).

Runs are labelled from the results' ``config.model_args``: the ``pretrained`` basename, plus the
adapter name from ``peft=`` (or from the ``manifest.json`` the finetune module writes next to it).
A results file under ``<adapter>/eval/step-<N>/`` is a training-progression point at step N.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from leaderboards.samples import Clusters, Replies, Samples, number, read_samples
from qa_tasks.errors import QAPackError
from qa_tasks.files import checkpoint_step

__all__ = ["Collection", "Latency", "Run", "TaskResult", "model_label", "parse_model_args", "read_paths"]

_RESULTS_RE = re.compile(r"^results_(.+)\.json$")
LATENCY_KEYS = ("task", "model", "n", "p50_s", "p95_s", "mean_s")


@dataclass
class TaskResult:
    """One task of one results file; metric names carry their filter only when it is not 'none'."""

    task: str
    metrics: dict[str, float]
    stderr: dict[str, float]
    n: int | None  # documents evaluated (lm-eval's n-samples.effective)
    samples: Samples | None = None  # per-document values and doc_hash (see ``samples``); None without a log
    setup: dict[str, str] = field(default_factory=dict)  # n-shot, version, task_hash (docs + prompts)
    # the model's replies per document (several for a multi-question strategy), from the samples log
    replies: Replies | None = None
    config_source: str | None = None  # the task's YAML path as lm-eval recorded it (which family owns the task)
    clusters: Clusters | None = None  # doc_id -> passage, for passage-based documents (from the samples log)


@dataclass
class Run:
    """One results file, labelled."""

    source: Path
    model: str  # display label: "<pretrained basename>" or "<basename> + <adapter>"
    base_key: str  # identity of the base model (pretrained argument as given)
    base_label: str
    adapter: str | None  # adapter display name; None for a base model
    adapter_key: str | None  # adapter directory (a checkpoint's parent), for grouping
    step: int | None  # training step for finetune eval folders
    date: float
    tasks: dict[str, TaskResult] = field(default_factory=dict)
    manifest: dict | None = None
    setup: dict[str, str] = field(default_factory=dict)  # generation settings, chat template, system prompt


@dataclass
class Latency:
    source: Path
    task: str
    model: str
    n: int
    p50_s: float
    p95_s: float
    mean_s: float
    peak_mem_bytes: int | None
    peak_mem_kind: str
    device: str


@dataclass
class Collection:
    runs: list[Run] = field(default_factory=list)
    latencies: list[Latency] = field(default_factory=list)
    manifests: dict[str, dict] = field(default_factory=dict)  # adapter_key -> manifest
    warnings: list[str] = field(default_factory=list)
    files: list[Path] = field(default_factory=list)  # every file read, for the Sources list


def _canon(value) -> str:
    """A setting as comparable text ('' when absent)."""
    if value is None or value == {}:
        return ""
    return json.dumps(value, sort_keys=True, default=str) if isinstance(value, (dict, list)) else str(value)


def parse_model_args(value) -> dict[str, str]:
    """``config.model_args`` as a dict; lm-eval writes a dict in 0.4.13 and a 'k=v,k=v' string before."""
    if isinstance(value, dict):
        return {str(k): str(v) for k, v in value.items() if v is not None}
    out: dict[str, str] = {}
    if isinstance(value, str):
        for part in value.split(","):
            key, sep, val = part.partition("=")
            if sep:
                out[key.strip()] = val.strip()
    return out


def _config_source(task_config) -> str | None:
    """``configs.<task>.metadata.config_source``: the YAML lm-eval built the task from (0.4.13 records it)."""
    metadata = task_config.get("metadata") if isinstance(task_config, dict) else None
    source = metadata.get("config_source") if isinstance(metadata, dict) else None
    return source if isinstance(source, str) and source else None


def _basename(path: str) -> str:
    return path.rstrip("/\\").replace("\\", "/").rsplit("/", 1)[-1] or path


def _adapter_dir(peft: str) -> tuple[Path, int | None]:
    """The adapter's own folder and step: ``OUT/checkpoint-40`` -> (OUT, 40)."""
    p = Path(peft)
    step = checkpoint_step(p)
    return (p.parent, step) if step is not None else (p, None)


def _read_manifest(folder: Path) -> dict | None:
    path = folder / "manifest.json"
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def model_label(base: str, adapter: str | None, manifest: dict | None = None) -> str:
    """'tiny' or 'tiny + my-adapter (lora)'."""
    label = _basename(base)
    if adapter:
        method = (manifest or {}).get("method")
        label += f" + {adapter}" + (f" ({method})" if isinstance(method, str) and method else "")
    return label


def _eval_step(path: Path) -> tuple[Path, int] | None:
    """``<adapter>/eval/step-<N>/...`` -> (adapter folder, N)."""
    parts = path.parts
    for i in range(len(parts) - 2, 0, -1):
        step = checkpoint_step(parts[i])
        if step is not None and parts[i - 1] == "eval" and parts[i].startswith("step-"):
            return Path(*parts[: i - 1]), step
    return None


class _Reader:
    def __init__(self) -> None:
        self.out = Collection()
        self.seen: set[Path] = set()

    def first_time(self, path: Path) -> bool:
        """False for a file already read (overlapping folders on the command line)."""
        key = path.resolve()
        if key in self.seen:
            return False
        self.seen.add(key)
        return True

    def warn(self, path: Path, why: str) -> None:
        self.out.warnings.append(f"{path}: {why}")

    def load_json(self, path: Path):
        """Parsed JSON, or None after a warning that says why it could not be read."""
        try:
            text = path.read_text(encoding="utf-8")
        except UnicodeDecodeError:
            self.warn(path, "not UTF-8 text (corrupt file?); skipped")
            return None
        except OSError as e:
            self.warn(path, f"cannot be read ({e.strerror or e}); skipped")
            return None
        if not text.strip():
            self.warn(path, "empty file (interrupted run?); skipped")
            return None
        try:
            return json.loads(text)
        except ValueError as e:
            body = text.strip()
            cut = body[:1] in "{[" and body[-1:] not in "}]"  # an interrupted write, not garbage
            what = "truncated" if cut else "corrupt"
            self.warn(path, f"not valid JSON ({what}: {getattr(e, 'msg', e)} at line "
                            f"{getattr(e, 'lineno', '?')} column {getattr(e, 'colno', '?')}); skipped")
            return None

    def load_new(self, path: Path) -> Any:
        """The JSON of a file not read before (recorded as read), or None (already read or unreadable)."""
        if not self.first_time(path):
            return None
        data = self.load_json(path)
        if data is not None:
            self.out.files.append(path)
        return data

    def read_results(self, path: Path) -> None:
        data = self.load_new(path)
        if data is None:
            return
        if not isinstance(data, dict) or not isinstance(data.get("results"), dict):
            self.warn(path, "not an lm-eval results file (no 'results' object); skipped")
            return
        config = data.get("config")
        if not isinstance(config, dict):
            self.warn(path, "has no 'config' object (partial file?); model labelled from model_name or its folder")
            config = {}
        args = parse_model_args(config.get("model_args"))
        base = args.get("pretrained") or args.get("model") or data.get("model_name") or path.parent.name
        base = str(base)
        peft = args.get("peft") or args.get("lora_local_path")
        step_info = _eval_step(path)
        adapter_key = step = manifest = None
        if peft:
            folder, step = _adapter_dir(peft)
            adapter_key = str(folder)
            manifest = _read_manifest(folder)
        if step_info is not None:
            folder, step = step_info
            if adapter_key is None or _read_manifest(folder) is not None:
                adapter_key = str(folder)
                manifest = _read_manifest(folder) or manifest
        if manifest and not args.get("pretrained") and isinstance(manifest.get("base_model"), str):
            base = manifest["base_model"]
        adapter = None
        if adapter_key is not None:
            adapter = _basename(adapter_key)
            if manifest:
                self.out.manifests.setdefault(adapter_key, manifest)
        date = number(data.get("date")) or 0.0
        run = Run(source=path, model=model_label(base, adapter, manifest), base_key=base, base_label=_basename(base),
                  adapter=adapter, adapter_key=adapter_key, step=step, date=float(date), manifest=manifest)
        run.setup = {k: _canon(v) for k, v in (("gen_kwargs", config.get("gen_kwargs")),
                                                ("chat_template", data.get("chat_template_sha")),
                                                ("system_instruction", data.get("system_instruction_sha")),
                                                ("fewshot_as_multiturn", data.get("fewshot_as_multiturn")))}
        groups = data.get("group_subtasks") if isinstance(data.get("group_subtasks"), dict) else {}
        n_samples = data.get("n-samples") if isinstance(data.get("n-samples"), dict) else {}
        configs = data.get("configs") if isinstance(data.get("configs"), dict) else {}
        for task in sorted(data["results"]):
            entry = data["results"][task]
            if groups.get(task):
                continue  # a group's aggregate repeats its subtasks
            if not isinstance(entry, dict):
                self.warn(path, f"task {task!r}: result is not an object; task skipped")
                continue
            result = self.task_result(task, entry, n_samples.get(task))
            if not result.metrics:
                self.warn(path, f"task {task!r}: no numeric metrics; task skipped")
                continue
            result.setup = {name: _canon(data.get(key, {}).get(task)) if isinstance(data.get(key), dict) else ""
                            for name, key in (("n-shot", "n-shot"), ("version", "versions"),
                                              ("docs/prompts", "task_hashes"))}
            result.config_source = _config_source(configs.get(task))
            run.tasks[task] = result
        if not run.tasks:
            self.warn(path, "no task with numeric metrics; skipped")
            return
        self.attach_samples(path, run)
        self.out.runs.append(run)

    @staticmethod
    def task_result(task: str, entry: dict, n_info) -> TaskResult:
        metrics: dict[str, float] = {}
        stderr: dict[str, float] = {}
        for key, value in entry.items():
            name, sep, filt = key.partition(",")
            if not sep or number(value) is None:
                continue
            is_stderr = name.endswith("_stderr")
            name = name[: -len("_stderr")] if is_stderr else name
            if filt != "none":
                name = f"{name},{filt}"
            (stderr if is_stderr else metrics)[name] = value
        n = None
        if isinstance(n_info, dict):
            n = number(n_info.get("effective"))
        if n is None:
            n = number(entry.get("sample_len")) or number(metrics.get("n"))
        return TaskResult(task, metrics, stderr, int(n) if n is not None else None)

    def attach_samples(self, results_path: Path, run: Run) -> None:
        match = _RESULTS_RE.match(results_path.name)
        if match is None:  # a results file given by another name: its samples cannot be matched
            return
        stamp = match.group(1)
        for path in sorted(results_path.parent.glob(f"samples_*_{stamp}.jsonl")):
            task = path.name[len("samples_"): -len(f"_{stamp}.jsonl")]
            if task not in run.tasks:
                continue
            self.out.files.append(path)
            result = run.tasks[task]
            result.samples, result.replies, result.clusters, problem = read_samples(path)
            if problem:
                self.warn(path, problem)

    def read_latency(self, path: Path) -> None:
        data = self.load_new(path)
        if data is None:
            return
        if not isinstance(data, dict) or data.get("kind") != "latency":
            self.warn(path, "not a latency file (no \"kind\": \"latency\"); skipped")
            return
        missing = [k for k in LATENCY_KEYS if k not in data]
        numbers = [k for k in LATENCY_KEYS[2:] if k in data and number(data[k]) is None]
        if missing or numbers:
            why = f"missing {', '.join(missing)}" if missing else f"non-numeric {', '.join(numbers)}"
            self.warn(path, f"latency file {why}; skipped")
            return
        args = parse_model_args(data["model"])
        base = args.get("pretrained") or args.get("model") or str(data["model"])
        peft = args.get("peft")
        adapter = manifest = None
        if peft:
            folder, _ = _adapter_dir(peft)
            adapter, manifest = _basename(str(folder)), _read_manifest(folder)
        peak = number(data.get("peak_mem_bytes"))
        self.out.latencies.append(Latency(
            path, str(data["task"]), model_label(base, adapter, manifest), int(data["n"]), float(data["p50_s"]),
            float(data["p95_s"]), float(data["mean_s"]), int(peak) if peak is not None else None,
            str(data.get("peak_mem_kind", "")), str(data.get("device", ""))))

    def read_dir(self, root: Path, skip: tuple[Path, ...] = ()) -> None:
        def kept(path: Path) -> bool:
            return path.is_file() and not any(path.is_relative_to(folder) for folder in skip)

        results = sorted(p for p in root.rglob("results_*.json") if kept(p))
        latencies = sorted(p for p in root.rglob("latency_*.json") if kept(p))
        if not results and not latencies and not any(folder.is_relative_to(root) for folder in skip):
            self.out.warnings.append(f"{root}: no results_*.json or latency_*.json found under this folder")
        for path in results:
            self.read_results(path)
        for path in latencies:
            self.read_latency(path)


def read_paths(paths, skip=()) -> Collection:
    """Read every results/latency file under ``paths`` (folders or single files), none under a ``skip``
    folder (sweep folders: their trials score a validation split, not an evaluation split).

    Raises QAPackError only for a path that does not exist; bad files become ``warnings``.
    """
    reader = _Reader()
    skip = tuple(Path(folder) for folder in skip)
    for raw in paths:
        path = Path(raw)
        if not path.exists():
            raise QAPackError(f"{path}: no such file or folder; pass lm-eval output folders (--output_path of lm_eval)")
        if path.is_dir():
            reader.read_dir(path, skip)
        elif path.name.startswith("latency_"):
            reader.read_latency(path)
        else:
            reader.read_results(path)
    out = reader.out
    out.runs.sort(key=lambda r: (r.model, r.step if r.step is not None else -1, r.date, str(r.source)))
    out.latencies.sort(key=lambda x: (x.model, x.task, str(x.source)))
    out.files = sorted(set(out.files))
    return out
