"""The sweep file of ``python -m finetune.sweep``: a base ``finetune.sft`` config, an objective and a search
space, checked in full before any training.

::

    objective: recipe_mpr_gen/acc          # <lm-eval task>/<metric>[,<filter>], scored on the validation split
                                           # (squad_batch/f1, gsm8k_think/accuracy: by their *_train task)
    pruner: median                         # or none, or Optuna's MedianPruner arguments:
                                           #   pruner: {median: {n_startup_trials: 2, n_warmup_steps: 4}}
    search_space:
      learning_rate: {log_uniform: [1.0e-5, 1.0e-3]}
      lora_dropout: {uniform: [0.0, 0.2]}
      lora_alpha: {int: [8, 64], step: 8}
      lora_r: [8, 16, 64]                  # a list: categorical, and the grid of --sampler grid
      lora_target_modules: ["q_proj,v_proj", all-linear]
    task: recipe_mpr                       # every other key: the base finetune.sft config
    fold: 0
    validation_size: 0.2                   # default 0.2, validation_seed default 0
    ...
"""

from __future__ import annotations

import inspect
import math
from dataclasses import dataclass, field
from pathlib import Path

from qa_tasks.errors import QAPackError

__all__ = ["DEFAULT_VALIDATION", "Objective", "SweepSpec", "load_spec", "parse_objective", "parse_space",
           "validation_task"]

DEFAULT_VALIDATION = 0.2
_OWN = ("objective", "search_space", "pruner")
_KINDS = ("log_uniform", "uniform", "int", "categorical")
# set by the sweep for every trial, so not searchable
_FIXED = ("output_dir", "model_name_or_path", "eval_tasks", "validation_size", "validation_seed", "resume",
          "config")


@dataclass
class Objective:
    task: str  # the task scored on the validation split (squad_batch_train for an objective squad_batch/f1)
    metric: str
    filter: str = "none"
    direction: str = "maximize"
    named: str = ""  # the task as the sweep file names it, when another task scores it

    @property
    def key(self) -> str:
        return f"{self.task}/{self.metric}" + ("" if self.filter == "none" else f",{self.filter}")


@dataclass
class SweepSpec:
    path: Path
    base: dict  # the finetune.sft config, as its --config file reads it
    objective: Objective
    space: dict  # field -> optuna distribution
    grid: dict | None  # field -> values, when every entry is a list of values
    pruner: str = "median"
    env: dict = field(default_factory=dict)
    pruner_args: dict = field(default_factory=dict)  # optuna.pruners.MedianPruner's keyword arguments

    @property
    def pruner_label(self) -> str:
        args = ", ".join(f"{k}={v}" for k, v in sorted(self.pruner_args.items()))
        return f"{self.pruner} ({args})" if args else self.pruner

    def make_pruner(self):
        import optuna

        if self.pruner == "median":
            return optuna.pruners.MedianPruner(**self.pruner_args)
        return optuna.pruners.NopPruner()


def _distribution(name: str, spec, where: str):
    from optuna.distributions import CategoricalDistribution, FloatDistribution, IntDistribution

    if isinstance(spec, list):
        spec = {"categorical": spec}
    if not isinstance(spec, dict) or not any(k in spec for k in _KINDS):
        raise QAPackError(f"{where}: search_space.{name} must be a list of values or one of "
                          f"{', '.join(f'{{{k}: ...}}' for k in _KINDS)}")
    kind = next(k for k in _KINDS if k in spec)
    extra = sorted(set(spec) - {kind, *(["step"] if kind == "int" else [])}, key=str)
    if extra:
        raise QAPackError(f"{where}: search_space.{name} has key(s) {', '.join(map(str, extra))} beside {kind}; "
                          f"give one of {', '.join(_KINDS)} (step goes with int only)")
    values = spec[kind]
    if kind == "categorical":
        if not isinstance(values, list) or not values:
            raise QAPackError(f"{where}: search_space.{name} is an empty list of values; give at least one")
        bad = [v for v in values if not (v is None or isinstance(v, (bool, int, float, str)))]
        if bad:
            raise QAPackError(f"{where}: search_space.{name} value {bad[0]!r} is not a number, string or bool")
        repeated = [v for i, v in enumerate(values) if (type(v), v) in {(type(w), w) for w in values[:i]}]
        if repeated:  # a grid would train the same point twice
            raise QAPackError(f"{where}: search_space.{name} lists {repeated[0]!r} twice; give each value once")
        return CategoricalDistribution(values)
    number = int if kind == "int" else (int, float)  # bools are ints to Python, never a bound here
    if not (isinstance(values, list) and len(values) == 2
            and all(isinstance(v, number) and not isinstance(v, bool) and math.isfinite(v) for v in values)
            and values[0] < values[1]):
        what = "integers" if kind == "int" else "finite numbers"
        raise QAPackError(f"{where}: search_space.{name}: {kind} needs [low, high], {what} with low < high, "
                          f"got {values!r}")
    low, high = values
    if kind == "int":
        step = spec.get("step", 1)
        if not isinstance(step, int) or isinstance(step, bool) or step <= 0:
            raise QAPackError(f"{where}: search_space.{name}: step must be a positive integer, got {step!r}")
        return IntDistribution(low, high, step=step)
    if kind == "log_uniform" and low <= 0:
        raise QAPackError(f"{where}: search_space.{name}: log_uniform needs low > 0, got {low}")
    return FloatDistribution(float(low), float(high), log=kind == "log_uniform")


def parse_space(space, known: set[str], where: str, sampler: str) -> tuple[dict, dict | None]:
    """(field -> distribution, field -> grid values or None)."""
    if not isinstance(space, dict) or not space:
        raise QAPackError(f"{where}: search_space is missing or empty; map finetune.sft fields to a list of "
                          "values or a distribution, e.g. learning_rate: {log_uniform: [1.0e-5, 1.0e-3]}")
    unknown = sorted(set(space) - known)
    if unknown:
        raise QAPackError(f"{where}: search_space field(s) {', '.join(unknown)} are not finetune.sft options; "
                          "see `python -m finetune.sft --help-all`")
    fixed = sorted(set(space) & set(_FIXED))
    if fixed:
        raise QAPackError(f"{where}: search_space field(s) {', '.join(fixed)} are set by the sweep itself")
    dists = {name: _distribution(name, spec, where) for name, spec in space.items()}
    grid = None
    if sampler == "grid":
        ranged = [n for n, spec in space.items() if not isinstance(spec, list)
                  and not (isinstance(spec, dict) and "categorical" in spec)]
        if ranged:
            raise QAPackError(f"{where}: --sampler grid needs a list of values per field; "
                              f"{', '.join(ranged)} is a range")
        grid = {n: list(d.choices) for n, d in dists.items()}
    return dists, grid


def _metrics_of(task: str) -> dict[str, bool]:
    """metric -> higher_is_better, from the task's YAML metric_list (as lm-eval reads it)."""
    from qa_tasks.harness.task_index import task_config

    metrics = {}
    for item in task_config(task).get("metric_list") or []:
        if isinstance(item, dict) and "metric" in item:
            metrics[str(item["metric"])] = bool(item.get("higher_is_better", True))
    return metrics


def validation_task(task: str) -> str:
    """The pack task that scores an objective on ``task`` on the validation split: the task whose YAML says
    ``metadata: {validation_of: <task>}`` (the same task on the family's train file, e.g. squad_batch_train,
    gsm8k_think_train), else ``task`` itself (its documents cover the training data, e.g. recipe_mpr_gen)."""
    from qa_tasks.harness.task_index import pack_entries, pack_tasks

    twins = sorted(name for name, entry in pack_entries().items() if name in pack_tasks()
                   and ((getattr(entry, "cfg", None) or {}).get("metadata") or {}).get("validation_of") == task)
    return twins[0] if twins else task


def parse_objective(text, where: str) -> Objective:
    from qa_tasks.harness.task_index import leaf_tasks, pack_tasks

    if not isinstance(text, str) or text.count("/") != 1:
        raise QAPackError(f"{where}: objective must be '<task>/<metric>', e.g. recipe_mpr_gen/acc; got {text!r}")
    named, metric = text.split("/")
    metric, _, filt = metric.partition(",")
    if named not in pack_tasks() or leaf_tasks(named) != [named]:
        raise QAPackError(f"{where}: objective task {named!r} is not a single lm-eval-qa-pack task; use one "
                          "whose documents cover the training data, e.g. recipe_mpr_gen, recipe_mpr, "
                          "squad_batch or gsm8k_think")
    task = validation_task(named)
    label = task if named == task else f"{named} (scored on the validation split by {task})"
    metrics = _metrics_of(task)
    if metric not in metrics:
        raise QAPackError(f"{where}: {label} does not produce metric {metric!r}; it reports "
                          f"{', '.join(sorted(metrics))}")
    filters = _filters_of(task)
    if (filt or "none") not in filters:  # else every trial would run and find no value to report
        raise QAPackError(f"{where}: {label} has no filter {filt!r}; its filters: {', '.join(filters)} "
                          f"(e.g. objective: {named}/{metric}" + ("" if filters[0] == "none" else f",{filters[0]}")
                          + ")")
    return Objective(task, metric, filt or "none", "maximize" if metrics[metric] else "minimize",
                     named if named != task else "")


def _filters_of(task: str) -> list[str]:
    """The task's filter names, as lm-eval keys its metrics (``none`` without a filter_list)."""
    from qa_tasks.harness.task_index import task_config

    names = [str(f["name"]) for f in task_config(task).get("filter_list") or [] if isinstance(f, dict) and "name" in f]
    return names or ["none"]


def _read_yaml(path: Path) -> dict:
    from finetune.config import read_yaml_mapping

    if path.is_dir():
        raise QAPackError(f"sweep config {path} is a folder; pass the sweep YAML file, e.g. "
                          "finetune/configs/sweeps/recipe_mpr_fold0.yaml")
    try:
        return read_yaml_mapping(path, "sweep config", "(objective, search_space, sft fields)")
    except UnicodeDecodeError:
        raise QAPackError(f"sweep config {path} is not UTF-8 text; pass the sweep YAML file") from None


def load_spec(path: str | Path, sampler: str, pruner: str | None = None) -> SweepSpec:
    """The sweep file, checked: objective, search space, base config keys (values are checked by
    ``finetune.config.validate`` on a trial's config before any training)."""
    from finetune.config import SftParser

    path = Path(path)
    raw = _read_yaml(path)
    where = str(path)
    known = {a.dest for a in SftParser().parser._actions} - {"help"}
    base = {k: v for k, v in raw.items() if k not in _OWN}
    env = base.pop("env", None) or {}
    if not isinstance(env, dict) or not all(isinstance(v, (str, int, float, bool)) for v in env.values()):
        raise QAPackError(f"{where}: env must map variable names to values, e.g. env: {{OMP_NUM_THREADS: 4}}")
    unknown = sorted(set(base) - known)
    if unknown:
        raise QAPackError(f"{where}: unknown field(s) {', '.join(unknown)}; the sweep file holds objective, "
                          "search_space, pruner and finetune.sft options (`python -m finetune.sft --help-all`)")
    if "objective" not in raw:
        raise QAPackError(f"{where}: objective is missing; e.g. objective: recipe_mpr_gen/acc")
    objective = parse_objective(raw["objective"], where)
    space, grid = parse_space(raw.get("search_space"), known, where, sampler)
    pruner, pruner_args = parse_pruner(raw.get("pruner"), pruner, where)
    base.setdefault("validation_size", DEFAULT_VALIDATION)
    base.setdefault("validation_seed", 0)
    return SweepSpec(path, base, objective, space, grid, pruner, env, pruner_args)


def parse_pruner(value, override: str | None, where: str) -> tuple[str, dict]:
    """The file's ``pruner:`` (``median``, ``none`` or ``{median: {<MedianPruner argument>: int}}``), with
    ``--pruner`` (``override``) choosing the kind; the arguments are checked by building Optuna's pruner."""
    import optuna

    args = {}
    if isinstance(value, dict) and len(value) == 1 and isinstance(next(iter(value.values())) or {}, dict):
        value, args = next(iter(value.items()))
        args = args or {}
    kind = override or value or "median"
    if kind not in ("median", "none"):
        raise QAPackError(f"{where}: pruner={kind!r} is not valid; use median, none or {{median: {{n_startup_trials: "
                          "N, n_warmup_steps: N, interval_steps: N, n_min_trials: N}}")
    if kind != "median" or value != "median":
        return kind, {}
    bad = sorted(str(k) for k, v in args.items() if not isinstance(v, int) or isinstance(v, bool))
    if bad:
        raise QAPackError(f"{where}: pruner.median.{bad[0]} must be a whole number, e.g. {bad[0]}: 2")
    try:
        optuna.pruners.MedianPruner(**args)
    except (TypeError, ValueError) as e:
        names = ", ".join(inspect.signature(optuna.pruners.MedianPruner).parameters)
        raise QAPackError(f"{where}: pruner.median {args} is refused by optuna.pruners.MedianPruner: {e} (its "
                          f"arguments: {names})") from None
    return kind, dict(args)
