"""Per-family detail tables: SQuAD strategies and latency, Recipe-MPR per query type and position bias,
math (scores, failure breakdown, lengths) and the adapters' manifests.

Each family names its tables in ``Family.tables`` (``qa_tasks.family``); every one takes (models,
collection) and returns a table, a list of tables, or None when the runs hold nothing for it.

Every table that sets models side by side carries a caution when their numbers come from different
documents (``checks.doc_set_cautions``).
"""

from __future__ import annotations

from leaderboards.checks import chance_level, doc_set_cautions, doc_set_warning
from leaderboards.kinds import BINARY
from leaderboards.reader import Collection, TaskResult
from leaderboards.stats import estimate
from leaderboards.tables import LETTERS, QUERY_TYPES, Caution, Model, Stat, Table, score, tasks_of, value

__all__ = ["MATH_FAILURES", "MATH_LENGTHS", "MATH_SCORES", "MATH_TRUNCATED", "SQUAD_COLUMNS", "SQUAD_COSTS", "SQUAD_SCORES",
           "adapter_settings_table", "adapters_table", "latency_table", "math_tables", "position_bias_table", "recipe_types_table",
           "squad_table"]

# (metric key, column header) as ad-hoc SQuAD strategy studies report them: scores, then costs
SQUAD_SCORES = (("em", "EM"), ("f1", "F1"), ("lenient", "Lenient"))
SQUAD_COSTS = (("prompt_tokens", "PromptTok"), ("gen_tokens", "GenTok"), ("prompt_tokens_api", "PromptTok_API"),
               ("gen_tokens_api", "GenTok_API"), ("dep_tokens", "DepTok"), ("calls", "Calls"), ("rounds", "Rounds"),
               ("latency_s", "Latency (s)"))
SQUAD_COLUMNS = (*SQUAD_SCORES, *SQUAD_COSTS, ("n_questions", "Questions"))
MATH_SCORES = (("accuracy", "Accuracy"), ("format_accuracy", "Format acc."), ("wrong_answer_rate", "Wrong answer"),
               ("format_failure_rate", "Format failure"), ("grader_timeouts", "Grader timeouts"))
MATH_FAILURES = (("missing_think_close", "Missing </think>"), ("missing_answer_open", "Missing <answer>"),
                 ("missing_answer_close", "Missing </answer>"), ("wrong_order", "Wrong order"))
# the share of responses cut off at max_gen_toks (measured by the rollout layer; absent when not measured)
MATH_TRUNCATED = ("truncated_rate", "Truncated")
MATH_LENGTHS = (("response_chars", "Chars (all)"), ("response_chars_correct", "Chars (correct)"),
                ("response_chars_incorrect", "Chars (incorrect)"))


def _cautions(found: list[tuple[Model, str, TaskResult]]) -> list[Caution]:
    return doc_set_cautions((m.label, task, r) for m, task, r in found)


def squad_table(models: list[Model], col: Collection | None = None) -> list[Table]:
    """Scores with their intervals, then costs, one heading per model (SQuAD strategy studies' columns)."""
    found = tasks_of(models, "squad")
    if not found:
        return []
    cautions = _cautions(found)
    for m in models:  # the strategies of one model compete on the same passages (squad_v1 has questions)
        passages = [(task, r) for model, task, r in found if model is m and "n_passages" in r.metrics]
        if warning := doc_set_warning(f"{m.label}: strategies", passages):
            cautions.append(Caution((m.label,), warning))
    scores = [[m.label, task.removeprefix("squad_"), *(score(r, k, False) for k, _ in SQUAD_SCORES), r.n,
               value(r, "n_questions")] for m, task, r in found]
    costs = [[m.label, task.removeprefix("squad_"), *(value(r, k) for k, _ in SQUAD_COSTS)] for m, task, r in found]
    decimals = {h: 1 for k, h in SQUAD_COSTS if "tokens" in k or k in ("calls", "rounds")}
    return [
        Table("squad", "SQuAD strategies", ["Model", "Strategy", *(h for _, h in SQUAD_SCORES), "n", "Questions"],
              scores, "EM/F1/Lenient average over questions, with their 95% interval: v1's documents are single "
              "questions, clustered by passage (cluster bootstrap); the strategies' documents are passages, "
              "each weighted by its questions. n = documents (questions for v1, passages for the strategies).",
              decimals={"Questions": 0}, cautions=cautions, group=1),
        Table("squad_costs", "SQuAD strategies: cost", ["Model", "Strategy", *(h for _, h in SQUAD_COSTS)], costs,
              "Means per passage: PromptTok counts shared text once, *_API sums every call (planner included), "
              "DepTok = planner prompt + generated tokens.", decimals={**decimals, "Latency (s)": 2},
              cautions=cautions, group=1),
    ]


def latency_table(models: list[Model], col: Collection) -> Table | None:
    rows = [[x.model, x.task, x.n, x.p50_s, x.p95_s, x.mean_s,
             None if x.peak_mem_bytes is None else round(x.peak_mem_bytes / 2**20, 1), x.peak_mem_kind, x.device]
            for x in col.latencies]
    if not rows:
        return None
    return Table("latency", "SQuAD latency", ["Model", "Task", "n", "p50 (s)", "p95 (s)", "mean (s)",
                                              "Peak mem (MiB)", "Memory measure", "Device"], rows,
                 decimals={"p50 (s)": 3, "p95 (s)": 3, "mean (s)": 3, "Peak mem (MiB)": 1})


def _subset_stat(r: TaskResult, metric: str, legacy_count: str) -> Stat:
    """An accuracy over a subset of the documents (``acc_<type>``, ``acc_gold_<L>``) with how many there were.

    A document yields such a metric only when it belongs to the subset, so its samples log counts them;
    results of task version 1.1 carry the count as a metric. Neither: the count is unknown, not guessed.
    """
    if r.samples and len(r.samples) == r.n:  # a truncated log would undercount
        values = [v[metric][0] for _, v in r.samples.values() if metric in v]
        n: float | None = len(values)
        if values and r.metrics.get(metric) is not None:  # the Wilson interval of the subset's accuracy
            found = estimate(values, BINARY)
            return Stat(r.metrics[metric], found.se, len(values), ci=found.ci, ci_method=found.ci_method)
    else:
        n = r.metrics.get(legacy_count)
    return Stat(r.metrics.get(metric), None, int(n) if n is not None else None, n_unknown=n is None)


def recipe_types_table(models: list[Model], col: Collection | None = None) -> Table | None:
    rows = []
    found = tasks_of(models, "recipe_mpr")
    for m, task, r in found:
        rows.append([m.label, task, score(r, "acc"), *(_subset_stat(r, f"acc_{t}", f"n_{t}") for t in QUERY_TYPES)])
    if not rows:
        return None
    note = ("Accuracy with its 95% Wilson interval (n = queries behind it, counted in the samples log: n=– for a "
            "run without --log_samples). Query types are multi-label: a query counts toward every type "
            f"it has, so the type columns do not add up to the overall n. Chance (a uniform guess among "
            f"{len(LETTERS)} options) = {chance_level('recipe_mpr', 'acc'):.1f}.")
    return Table("recipe_types", "Recipe-MPR: accuracy by query type", ["Model", "Task", "Overall", *QUERY_TYPES],
                 rows, note, cautions=_cautions(found), families={task: "recipe_mpr" for _, task, _ in found},
                 group=1)


def position_bias_table(models: list[Model], col: Collection | None = None) -> Table | None:
    rows = []
    found = [(m, task, r) for m, task, r in tasks_of(models, "recipe_mpr")
             if "pred_A" in r.metrics]  # the loglikelihood variant has no letters
    for m, task, r in found:
        gold = [_subset_stat(r, f"acc_gold_{x}", f"n_gold_{x}") for x in LETTERS]
        rows.append([m.label, task, *gold, *(r.metrics.get(f"pred_{x}") for x in LETTERS),
                     r.metrics.get("invalid_rate")])
    if not rows:
        return None
    note = ("Accuracy when the gold option is shown at each letter (n = queries, from the samples log), then how "
            "often each letter was answered. A model that always answers one letter scores only on that "
            "letter's queries.")
    return Table("position_bias", "Recipe-MPR: position bias",
                 ["Model", "Task", *(f"Acc gold={x}" for x in LETTERS), *(f"Pred {x}" for x in LETTERS),
                  "Invalid"], rows, note, cautions=_cautions(found), group=2)


def math_tables(models: list[Model], col: Collection | None = None) -> list[Table]:
    found = tasks_of(models, "math")
    if not found:
        return []
    scores = [[m.label, t, *(value(r, k) for k, _ in MATH_SCORES), r.metrics.get("n", r.n)] for m, t, r in found]
    failures = [[m.label, t, r.metrics.get("format_failure_rate"), *(value(r, k) for k, _ in MATH_FAILURES),
                 value(r, MATH_TRUNCATED[0])] for m, t, r in found]
    lengths = [[m.label, t, *(value(r, k) for k, _ in MATH_LENGTHS)] for m, t, r in found]
    cautions = _cautions(found)
    return [
        Table("math", "Math: think/answer format", ["Model", "Task", *(h for _, h in MATH_SCORES), "n"], scores,
              "Wrong answer = format correct but answer wrong; format failure = no parsable "
              "`</think> <answer> … </answer>`.", cautions=cautions),
        Table("math_failures", "Math: format failure breakdown",
              ["Model", "Task", "Format failure", *(h for _, h in MATH_FAILURES), MATH_TRUNCATED[1]], failures,
              "Each kind is a share of all responses; one failure can have several. Truncated = share of all "
              "responses that stopped because they used the whole `max_gen_toks` budget (their tokens counted with "
              "the model's own tokenizer; such a response usually misses `</answer>`), whatever their format; – where "
              "not measured (replies from lm-eval's `--use_cache`, a model without a local tokenizer).",
              cautions=cautions),
        Table("math_lengths", "Math: response length", ["Model", "Task", *(h for _, h in MATH_LENGTHS)], lengths,
              "Mean characters per response.", decimals={h: 1 for _, h in MATH_LENGTHS}, cautions=cautions),
    ]


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


def _manifests(col: Collection) -> tuple[list[tuple[str, dict]], list[Caution]]:
    """(display name, manifest) per adapter, and a caution per run stopped before it finished."""
    found, cautions = [], []
    for key in sorted(col.manifests):
        man = col.manifests[key]
        name = key.rstrip("/").rsplit("/", 1)[-1]
        if man.get("status") == "interrupted":  # stopped by a signal: checkpoints, no final adapter
            name += " (interrupted)"
            command = "finetune.grpo" if man.get("trainer") == "grpo" else "finetune.sft"
            cautions.append(Caution((name,), f"{name}: the run was stopped before it finished; its metrics cover "
                                    "the steps done so far and the folder holds no final adapter "
                                    f"(finish it with {command} --resume)"))
        found.append((name, man))
    return found, cautions


def adapters_table(col: Collection) -> Table | None:
    rows = []
    found, cautions = _manifests(col)
    for name, man in found:
        data = man.get("data") if isinstance(man.get("data"), dict) else {}
        where = "/".join(str(data[k]) for k in ("source", "split") if data.get(k) is not None)
        if data.get("fold") is not None:
            where += f" fold {data['fold']}"
        base = man.get("base_model")
        rows.append([name, base.rstrip("/").rsplit("/", 1)[-1] if isinstance(base, str) else base, man.get("task"),
                     man.get("method"), where, data.get("n_examples")])
    if not rows:
        return None
    return Table("adapters", "Adapters", ["Adapter", "Base model", "Task", "Method", "Data", "Examples"], rows,
                 "From each adapter's manifest.json (base model: the last part of its path or Hub id).",
                 cautions=cautions)


def adapter_settings_table(col: Collection) -> Table | None:
    rows = [[name, _compact(man.get("hyperparameters"), _HYPER_KEYS), _compact(man.get("metrics"), _TRAIN_KEYS)]
            for name, man in _manifests(col)[0]]
    if not rows:
        return None
    return Table("adapter_settings", "Adapters: training", ["Adapter", "Hyperparameters", "Final training metrics"],
                 rows, "From each adapter's manifest.json.")
