"""Leaderboard tables from read lm-eval runs (see ``reader``); every table is sorted, so the same
inputs give the same tables.

Tables: overview (models x tasks), base vs adapter (deltas with a paired test from the per-sample
logs), SQuAD strategies and latency, Recipe-MPR per query type and position bias, math (scores,
failure breakdown, lengths), training progression (finetune eval folders) and adapters (manifests).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from leaderboards.reader import Collection, Run, TaskResult
from leaderboards.stats import ALPHA, BOOTSTRAP_ITERS, paired_test

__all__ = [
    "LETTERS",
    "QUERY_TYPES",
    "SQUAD_COLUMNS",
    "Model",
    "Stat",
    "Table",
    "adapters_table",
    "build_tables",
    "comparison_table",
    "family",
    "group_models",
    "latency_table",
    "main_metric",
    "math_tables",
    "overview_table",
    "position_bias_table",
    "progression_table",
    "recipe_types_table",
    "setup_differences",
    "squad_table",
]

QUERY_TYPES = ("Specific", "Commonsense", "Negated", "Analogical", "Temporal")  # as qa_tasks.recipe_mpr
LETTERS = "ABCDE"
# (metric key, column header) as ad-hoc SQuAD strategy studies report them
SQUAD_COLUMNS = (("em", "EM"), ("f1", "F1"), ("lenient", "Lenient"), ("prompt_tokens", "PromptTok"),
                 ("gen_tokens", "GenTok"), ("prompt_tokens_api", "PromptTok_API"),
                 ("gen_tokens_api", "GenTok_API"), ("dep_tokens", "DepTok"), ("calls", "Calls"),
                 ("rounds", "Rounds"), ("latency_s", "Latency (s)"), ("n_questions", "Questions"))
MATH_SCORES = (("accuracy", "Accuracy"), ("format_accuracy", "Format acc."), ("wrong_answer_rate", "Wrong answer"),
               ("format_failure_rate", "Format failure"), ("grader_timeouts", "Grader timeouts"))
MATH_FAILURES = (("missing_think_close", "Missing </think>"), ("missing_answer_open", "Missing <answer>"),
                 ("missing_answer_close", "Missing </answer>"), ("wrong_order", "Wrong order"))
MATH_LENGTHS = (("response_chars", "Chars (all)"), ("response_chars_correct", "Chars (correct)"),
                ("response_chars_incorrect", "Chars (incorrect)"))
_COMPARED = {"recipe_mpr": ("acc", "acc_norm", "invalid_rate"), "squad": ("em", "f1", "lenient"),
             "math": ("accuracy", "format_accuracy")}
_PROGRESS = {"recipe_mpr": ("acc", "acc_norm", "invalid_rate"), "squad": ("em", "f1", "lenient"),
             "math": ("accuracy", "format_accuracy", "wrong_answer_rate", "format_failure_rate")}
_MAIN = {"recipe_mpr": "acc", "squad": "em", "math": "accuracy"}
_FALLBACK_MAIN = ("acc", "exact_match", "em", "accuracy", "f1", "acc_norm")


@dataclass(frozen=True)
class Stat:
    """A number with what stands behind it: ``0.250 ± 0.131 (n=12)``."""

    value: float | None
    stderr: float | None = None
    n: int | None = None


@dataclass
class Table:
    key: str
    title: str
    columns: list[str]
    rows: list[list]  # cells: str | int | float | Stat | None
    note: str = ""
    plots: list[str] = field(default_factory=list)  # PNG file names, filled in by ``plots``
    decimals: dict[str, int] = field(default_factory=dict)  # per column, where 3 decimals would mislead


@dataclass
class Model:
    """Every non-progression run of one model (base, or base + adapter), merged across files."""

    label: str
    base_key: str
    adapter_key: str | None
    tasks: dict[str, tuple[TaskResult, Run]]


def family(task: str, metrics) -> str:
    if task.startswith("recipe_mpr"):
        return "recipe_mpr"
    if task.startswith("squad"):
        return "squad"
    if "format_accuracy" in metrics or task.endswith("_think"):
        return "math"
    return "other"


def main_metric(task: str, metrics) -> str:
    """The metric the overview shows for ``task``."""
    preferred = _MAIN.get(family(task, metrics))
    if preferred in metrics:
        return preferred
    for name in _FALLBACK_MAIN:
        matches = sorted(m for m in metrics if m.split(",")[0] == name)
        if matches:
            return matches[0]
    return min(metrics)


def group_models(col: Collection) -> tuple[list[Model], list[str]]:
    """Merge the non-progression runs per model; a task seen twice keeps the newer file (noted)."""
    groups: dict[tuple[str, str | None], Model] = {}
    notes = []
    for run in sorted((r for r in col.runs if r.step is None), key=lambda r: (r.date, str(r.source))):
        model = groups.setdefault((run.base_key, run.adapter_key), Model(run.model, run.base_key, run.adapter_key, {}))
        for task, result in run.tasks.items():
            if task in model.tasks:
                notes.append(f"{model.label} / {task}: in {model.tasks[task][1].source.name} and "
                             f"{run.source.name}; the newer ({run.source.name}) is shown")
            model.tasks[task] = (result, run)
    labels: dict[str, int] = {}
    for model in groups.values():
        labels[model.label] = labels.get(model.label, 0) + 1
    for model in groups.values():
        if labels[model.label] > 1:  # different models share basenames: show the full arguments
            model.label = model.base_key + (f" + {model.adapter_key}" if model.adapter_key else "")
    return sorted(groups.values(), key=lambda m: (m.label, m.base_key, m.adapter_key or "")), sorted(notes)


def _stat(result: TaskResult, metric: str, n: int | None = None) -> Stat | None:
    if metric not in result.metrics:
        return None
    return Stat(result.metrics[metric], result.stderr.get(metric), result.n if n is None else n)


def _value(result: TaskResult, metric: str):
    return result.metrics.get(metric)


def _tasks_of(models: list[Model], fam: str) -> list[tuple[Model, str, TaskResult]]:
    return [(m, t, m.tasks[t][0]) for m in models for t in sorted(m.tasks)
            if family(t, m.tasks[t][0].metrics) == fam]


def overview_table(models: list[Model], notes: list[str]) -> Table | None:
    tasks = sorted({t for m in models for t in m.tasks})
    if not tasks:
        return None
    metric_of = {}
    for task in tasks:
        names = sorted({k for m in models if task in m.tasks for k in m.tasks[task][0].metrics})
        metric_of[task] = main_metric(task, names)
    rows = [[m.label, *(_stat(m.tasks[t][0], metric_of[t]) if t in m.tasks else None for t in tasks)] for m in models]
    note = "Main metric per task, ± lm-eval's standard error, n = documents evaluated."
    if notes:
        note += " Duplicates: " + "; ".join(notes) + "."
    return Table("overview", "Overview", ["Model", *(f"{t} ({metric_of[t]})" for t in tasks)], rows, note)


def _pairs(base: TaskResult, other: TaskResult, metric: str) -> tuple[list[float], list[float], list[float], int]:
    """Per-document values (and weights) of ``metric`` on the documents both runs scored (same doc_hash)."""
    a, b, w, mismatched = [], [], [], 0
    for doc_id in sorted(set(base.samples or {}) & set(other.samples or {})):
        hash_a, va = base.samples[doc_id]
        hash_b, vb = other.samples[doc_id]
        if metric not in va or metric not in vb:
            continue
        if hash_a and hash_b and hash_a != hash_b:
            mismatched += 1
            continue
        a.append(va[metric][0])
        b.append(vb[metric][0])
        w.append(va[metric][1])
    return a, b, w, mismatched


def setup_differences(a: tuple[TaskResult, Run], b: tuple[TaskResult, Run]) -> list[str]:
    """Names of the evaluation settings in which two runs of one task differ (unlike things)."""
    diff = [k for k in sorted(set(a[1].setup) | set(b[1].setup)) if a[1].setup.get(k, "") != b[1].setup.get(k, "")]
    diff += [k for k in sorted(set(a[0].setup) | set(b[0].setup)) if a[0].setup.get(k, "") != b[0].setup.get(k, "")]
    if a[0].n != b[0].n and "docs/prompts" not in diff:
        diff.append("n")
    return diff


def comparison_table(models: list[Model]) -> Table | None:
    bases = {m.base_key: m for m in models if m.adapter_key is None}
    rows = []
    for model in models:
        base = bases.get(model.base_key)
        if model.adapter_key is None or base is None:
            continue
        for task in sorted(set(model.tasks) & set(base.tasks)):
            rb, ra = base.tasks[task][0], model.tasks[task][0]
            fam = family(task, ra.metrics)
            metrics = [m for m in _COMPARED.get(fam, (main_metric(task, ra.metrics),))
                       if m in ra.metrics and m in rb.metrics]
            for metric in metrics:
                vb, va = rb.metrics[metric], ra.metrics[metric]
                if rb.samples is None or ra.samples is None:
                    test, p, verdict, n = "no per-sample log", None, "unknown", None
                else:
                    xs, ys, ws, mismatched = _pairs(rb, ra, metric)
                    if not xs:
                        test, p, verdict, n = "no common documents", None, "unknown", 0
                    else:
                        result = paired_test(xs, ys, ws)
                        test, p, n = result.method, result.p_value, result.n
                        verdict = "yes" if result.significant else "no"
                        if mismatched:
                            test += f" ({mismatched} docs differ, excluded)"
                diff = setup_differences(base.tasks[task], model.tasks[task])
                same = "yes" if not diff else "no: " + ", ".join(diff)
                rows.append([base.label, model.label, task, metric, vb, va, va - vb, n, test, p, verdict, same])
    if not rows:
        return None
    note = (f"Δ = adapter − base (results JSON). Paired test on the documents both runs scored (n), from the "
            f"per-sample logs: McNemar's exact test for 0/1 metrics, paired bootstrap over documents "
            f"({BOOTSTRAP_ITERS:,} resamples, seed 0; SQuAD passages weighted by their questions) otherwise. Significant = p < {ALPHA}; a Δ that is not significant is no "
            f"evidence of a change. Same setup = same generation settings, chat template, system prompt, few-shot "
            f"count, task version and documents/prompts (lm-eval's task hash); otherwise the runs compare unlike "
            f"things.")
    return Table("comparison", "Base vs adapter", ["Base", "Adapter", "Task", "Metric", "Base value",
                                                   "Adapter value", "Δ", "n paired", "Test", "p", "Significant",
                                                   "Same setup"],
                 rows, note)


def squad_table(models: list[Model]) -> Table | None:
    rows = []
    for m, task, r in _tasks_of(models, "squad"):
        rows.append([m.label, task.removeprefix("squad_"), *(_value(r, k) for k, _ in SQUAD_COLUMNS)])
    if not rows:
        return None
    note = ("EM/F1/Lenient average over questions; token, call, round and latency columns are means per passage: "
            "PromptTok counts shared text once, *_API sums every call (planner included), DepTok = planner "
            "prompt + generated tokens.")
    decimals = {h: 1 for k, h in SQUAD_COLUMNS if "tokens" in k or k in ("calls", "rounds")}
    return Table("squad", "SQuAD strategies", ["Model", "Strategy", *(h for _, h in SQUAD_COLUMNS)], rows, note,
                 decimals={**decimals, "Latency (s)": 2})


def latency_table(col: Collection) -> Table | None:
    rows = [[x.model, x.task, x.n, x.p50_s, x.p95_s, x.mean_s,
             None if x.peak_mem_bytes is None else round(x.peak_mem_bytes / 2**20, 1), x.peak_mem_kind, x.device]
            for x in col.latencies]
    if not rows:
        return None
    return Table("latency", "SQuAD latency", ["Model", "Task", "n", "p50 (s)", "p95 (s)", "mean (s)",
                                              "Peak mem (MiB)", "Memory measure", "Device"], rows,
                 decimals={"p50 (s)": 3, "p95 (s)": 3, "mean (s)": 3, "Peak mem (MiB)": 1})


def recipe_types_table(models: list[Model]) -> Table | None:
    rows = []
    for m, task, r in _tasks_of(models, "recipe_mpr"):
        cells = [_stat(r, "acc")]
        for t in QUERY_TYPES:
            n = r.metrics.get(f"n_{t}")
            cells.append(Stat(r.metrics.get(f"acc_{t}"), None, int(n) if n is not None else None))
        rows.append([m.label, task, *cells])
    if not rows:
        return None
    note = ("Accuracy (n = queries behind it). Query types are multi-label: a query counts toward every type "
            "it has, so the type columns do not add up to the overall n.")
    return Table("recipe_types", "Recipe-MPR: accuracy by query type", ["Model", "Task", "Overall", *QUERY_TYPES],
                 rows, note)


def position_bias_table(models: list[Model]) -> Table | None:
    rows = []
    for m, task, r in _tasks_of(models, "recipe_mpr"):
        if f"n_gold_{LETTERS[0]}" not in r.metrics and "pred_A" not in r.metrics:
            continue  # the loglikelihood variant has no letters
        gold = []
        for x in LETTERS:
            n = r.metrics.get(f"n_gold_{x}")
            gold.append(Stat(r.metrics.get(f"acc_gold_{x}"), None, int(n) if n is not None else None))
        rows.append([m.label, task, *gold, *(r.metrics.get(f"pred_{x}") for x in LETTERS),
                     r.metrics.get("invalid_rate")])
    if not rows:
        return None
    note = ("Accuracy when the gold option is shown at each letter (n = queries), then how often each letter was "
            "answered. A model that always answers one letter scores only on that letter's queries.")
    return Table("position_bias", "Recipe-MPR: position bias",
                 ["Model", "Task", *(f"Acc gold={x}" for x in LETTERS), *(f"Pred {x}" for x in LETTERS),
                  "Invalid"], rows, note)


def math_tables(models: list[Model]) -> list[Table]:
    found = _tasks_of(models, "math")
    if not found:
        return []
    scores = [[m.label, t, *(_value(r, k) for k, _ in MATH_SCORES), r.metrics.get("n", r.n)] for m, t, r in found]
    failures = [[m.label, t, r.metrics.get("format_failure_rate"), *(_value(r, k) for k, _ in MATH_FAILURES)]
                for m, t, r in found]
    lengths = [[m.label, t, *(_value(r, k) for k, _ in MATH_LENGTHS)] for m, t, r in found]
    return [
        Table("math", "Math: think/answer format", ["Model", "Task", *(h for _, h in MATH_SCORES), "n"], scores,
              "Wrong answer = format correct but answer wrong; format failure = no parsable "
              "`</think> <answer> … </answer>`."),
        Table("math_failures", "Math: format failure breakdown",
              ["Model", "Task", "Format failure", *(h for _, h in MATH_FAILURES)], failures),
        Table("math_lengths", "Math: response length", ["Model", "Task", *(h for _, h in MATH_LENGTHS)], lengths,
              "Mean characters per response.", decimals={h: 1 for _, h in MATH_LENGTHS}),
    ]


def progression_table(col: Collection, models: list[Model]) -> Table | None:
    steps = [r for r in col.runs if r.step is not None]
    if not steps:
        return None
    bases = {m.base_key: m for m in models if m.adapter_key is None}
    finals = {(m.base_key, m.adapter_key): m for m in models if m.adapter_key is not None}
    series: dict[tuple[str, str, str], dict] = {}
    for run in steps:
        for task, result in run.tasks.items():
            entry = series.setdefault((run.model, task, run.base_key), {"adapter": run.adapter_key, "points": {}})
            entry["points"][run.step] = result  # runs are sorted by date: a re-run step keeps the newer
    metric_names: list[str] = []
    for (_, task, _), entry in series.items():
        for result in entry["points"].values():
            fam = family(task, result.metrics)
            for name in _PROGRESS.get(fam, (main_metric(task, result.metrics),)):
                if name in result.metrics and name not in metric_names:
                    metric_names.append(name)
    rows = []
    for (label, task, base_key), entry in sorted(series.items()):
        points: list[tuple[str, TaskResult]] = []
        base = bases.get(base_key)
        if base and task in base.tasks:
            points.append(("base", base.tasks[task][0]))
        points += [(str(step), entry["points"][step]) for step in sorted(entry["points"])]
        final = finals.get((base_key, entry["adapter"]))
        if final and task in final.tasks:
            points.append(("final", final.tasks[task][0]))
        for step, result in points:
            rows.append([label, task, step, *(result.metrics.get(k) for k in metric_names), result.n])
    return Table("progression", "Training progression", ["Model", "Task", "Step", *metric_names, "n"], rows,
                 "Evaluations written during fine-tuning (eval/step-N), between the base model and the final adapter.")


# the manifest fields worth a column (all of them would not fit a table cell)
_HYPER_KEYS = ("method", "lora_r", "lora_alpha", "lora_dropout", "learning_rate", "max_steps", "num_train_epochs",
               "effective_batch_size", "max_length")
_TRAIN_KEYS = ("train_loss", "epoch", "train_runtime")


def _compact(d, keys: tuple[str, ...]) -> str:
    if not isinstance(d, dict):
        return ""
    shown = [k for k in keys if k in d and not isinstance(d[k], (dict, list))]
    return ", ".join(f"{k}={_short(d[k])}" for k in shown)


def _short(v) -> str:
    if isinstance(v, float):
        return f"{v:.4g}"
    return str(v)


def adapters_table(col: Collection) -> Table | None:
    rows = []
    for key in sorted(col.manifests):
        man = col.manifests[key]
        data = man.get("data") if isinstance(man.get("data"), dict) else {}
        where = "/".join(str(data[k]) for k in ("source", "split") if data.get(k) is not None)
        if data.get("fold") is not None:
            where += f" fold {data['fold']}"
        rows.append([key.rstrip("/").rsplit("/", 1)[-1], man.get("base_model"), man.get("task"), man.get("method"),
                     where, data.get("n_examples"), _compact(man.get("hyperparameters"), _HYPER_KEYS), _compact(man.get("metrics"), _TRAIN_KEYS)])
    if not rows:
        return None
    return Table("adapters", "Adapters", ["Adapter", "Base model", "Task", "Method", "Data", "Examples",
                                          "Hyperparameters", "Final training metrics"], rows,
                 "From each adapter's manifest.json.")


def build_tables(col: Collection) -> list[Table]:
    models, notes = group_models(col)
    tables = [overview_table(models, notes), comparison_table(models), squad_table(models), latency_table(col),
              recipe_types_table(models), position_bias_table(models), *math_tables(models),
              progression_table(col, models), adapters_table(col)]
    return [t for t in tables if t is not None]
