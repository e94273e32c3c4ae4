"""Sweep folders of ``python -m finetune.sweep`` (``D/sweep.json``): a trial table (sorted best first, the
best trial marked), parameter importances (Optuna's default importance evaluator, over the completed
trials) and PNGs of the objective per trial and against the most important parameter.

A sweep folder given to ``python -m leaderboards build``, or found below a given folder, is read from its
``sweep.json`` only: the trials' in-training evaluations score the validation split, not an evaluation
split, so they stay out of the model tables. A sweep folder without ``sweep.json`` is refused (one line).
A trial value that is not a finite number is shown as a failed trial, with a warning.
"""

from __future__ import annotations

import json
import math
import os
from pathlib import Path

from leaderboards.tables import Table
from qa_tasks.errors import QAPackError
from qa_tasks.extras import require

__all__ = ["SWEEP_FILE", "find_sweeps", "importances", "is_sweep", "read_sweep", "sweep_plots", "sweep_tables"]

SWEEP_FILE = "sweep.json"
_MARKS = (SWEEP_FILE, ".sweep.lock")  # files only a finetune.sweep folder holds
_ORDER = {"COMPLETE": 0, "PRUNED": 1, "RUNNING": 2, "WAITING": 3, "FAIL": 4}


def is_sweep(path) -> bool:
    path = Path(path)
    return (path / SWEEP_FILE).is_file() if path.is_dir() else path.name == SWEEP_FILE


def _looks_like_sweep(files: list[str], folders: list[str]) -> bool:
    return any(m in files for m in _MARKS) or any(
        d.startswith("trial-") and d[len("trial-"):].isdigit() for d in folders)


def find_sweeps(path) -> list[Path]:
    """The sweep folders at or under ``path`` (not searched inside one). One without ``sweep.json`` (trial-<n>
    folders or the sweep's lock file) is refused: its trials' evaluations score the validation split, so
    they must not be read as model results."""
    path = Path(path)
    if not path.is_dir():
        return []
    found = []
    for folder, folders, files in os.walk(path):
        if not _looks_like_sweep(files, folders):
            continue
        folders[:] = []
        if SWEEP_FILE not in files:
            raise QAPackError(
                f"{folder} looks like a python -m finetune.sweep folder (trial-<n> folders) but has no "
                f"{SWEEP_FILE}; rerun the same `python -m finetune.sweep ... --output_dir {folder}` command to "
                "write it, or pass its trial folders (trial-*/run) to read their validation scores as runs")
        found.append(Path(folder))
    return found


def read_sweep(path) -> dict:
    path = Path(path)
    file = path / SWEEP_FILE if path.is_dir() else path
    try:
        doc = json.loads(file.read_text(encoding="utf-8"))
    except (OSError, ValueError) as e:
        raise QAPackError(f"{file}: not a readable sweep.json ({e}); rerun python -m finetune.sweep there") from None
    if not isinstance(doc, dict) or not isinstance(doc.get("trials"), list) or "objective" not in doc:
        raise QAPackError(f"{file}: not a sweep.json of python -m finetune.sweep (no objective/trials)")
    doc["_path"] = str(file)
    doc["_warnings"] = _clean_trials(doc, file)
    return doc


def _finite(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def _clean_trials(doc: dict, file: Path) -> list[str]:
    """Keep the trials the tables can show; a trial whose value is not a finite number (NaN from a hand-edited
    or foreign file) is shown as failed with no value. Returns one warning per change."""
    warnings, trials = [], []
    for i, t in enumerate(doc["trials"]):
        if not (isinstance(t, dict) and isinstance(t.get("number"), int) and isinstance(t.get("state"), str)):
            warnings.append(f"{file}: trial entry {i} has no number/state; left out")
            continue
        t["params"] = t.get("params") if isinstance(t.get("params"), dict) else {}
        t["distributions"] = t.get("distributions") if isinstance(t.get("distributions"), dict) else {}
        if t.get("value") is not None and not _finite(t["value"]):
            warnings.append(f"{file}: trial {t['number']} has value {t['value']!r}, not a finite number; shown as "
                            "failed with no value")
            t["value"], t["state"] = None, "FAIL" if t["state"] == "COMPLETE" else t["state"]
        trials.append(t)
    doc["trials"] = trials
    done = [t for t in trials if t["state"] == "COMPLETE" and t.get("value") is not None]
    pick = max if doc.get("direction", "maximize") == "maximize" else min  # Optuna's best_trial, from what is kept
    doc["best"] = {"number": pick(done, key=lambda t: t["value"])["number"]} if done else None
    return warnings


def importances(doc: dict) -> dict[str, float]:
    """Parameter -> importance (Optuna's default evaluator) over the completed trials; {} when they do not
    vary enough to tell (fewer than two, or one objective value)."""
    import optuna
    from optuna.distributions import json_to_distribution
    from optuna.trial import create_trial

    done = [t for t in doc["trials"] if t["state"] == "COMPLETE" and t.get("value") is not None]
    if len(done) < 2 or len({t["value"] for t in done}) < 2:
        return {}
    optuna.logging.set_verbosity(optuna.logging.ERROR)
    study = optuna.create_study(direction=doc.get("direction", "maximize"))
    for t in done:
        dists = {k: json_to_distribution(json.dumps(v)) for k, v in t["distributions"].items()}
        study.add_trial(create_trial(params=t["params"], distributions=dists, value=t["value"]))
    try:
        return dict(optuna.importance.get_param_importances(study))
    except (ValueError, RuntimeError):  # e.g. a parameter with one value only
        return {}


def _pruner(doc: dict) -> str:
    args = ", ".join(f"{k}={v}" for k, v in sorted((doc.get("pruner_args") or {}).items()))
    return f"{doc.get('pruner')} ({args})" if args else str(doc.get("pruner"))


def _label(doc: dict) -> str:
    return f"{Path(doc['_path']).parent.name} ({doc.get('study_name', 'sweep')})"


def sweep_tables(doc: dict) -> list[Table]:
    # checked up front, so a sweep folder needs optuna whether or not its trials vary enough yet for importances
    require("sweep", what=f"the sweep folder {Path(doc['_path']).parent} (its parameter importances)")
    trials = doc["trials"]
    params = sorted({k for t in trials for k in t.get("params", {})})
    sign = -1 if doc.get("direction") == "maximize" else 1
    best = (doc.get("best") or {}).get("number")

    def order(t):
        value = t.get("value")
        return (_ORDER.get(t["state"], 5), sign * value if isinstance(value, (int, float)) else 0, t["number"])

    rows = [[("★ " if t["number"] == best else "") + str(t["number"]), *[_param(t["params"].get(p)) for p in params],
             t.get("value"), t["state"].lower(), t.get("duration_s")] for t in sorted(trials, key=order)]
    validation = doc.get("validation") or {}
    note = (f"Objective `{doc['objective']}` ({doc.get('direction')}) on a validation split carved from the "
            f"training data (validation_size={validation.get('size', validation.get('validation_size'))}, seed "
            f"{validation.get('seed', validation.get('validation_seed'))}), never on an evaluation split; "
            f"{doc.get('sampler')} sampler, {_pruner(doc)} pruner. ★ marks the best trial "
            "(its config: best.yaml beside sweep.json).")
    table = Table("sweep", f"Sweep {_label(doc)}: trials", ["trial", *params, doc["objective"], "state",
                                                               "duration_s"], rows, note=note,
                  decimals={"duration_s": 1})
    out = [table]
    found = importances(doc)
    if not found:
        table.note += (" Parameter importances: not computable yet (they need at least two completed trials "
                       "with different objective values).")
    else:
        rows = [[name, value] for name, value in sorted(found.items(), key=lambda kv: (-kv[1], kv[0]))]
        out.append(Table("sweep_importance", f"Sweep {_label(doc)}: parameter importances",
                         ["parameter", "importance"], rows, note="Optuna's default importance evaluator over "
                         "the completed trials (importances sum to 1).", decimals={"importance": 3}))
    return out


def _param(value):
    """A sampled float as 4 significant digits (a learning rate of 3e-5 is not 0.000)."""
    return f"{value:.4g}" if isinstance(value, float) else value


def _numeric(values) -> bool:
    return all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in values)


def sweep_plots(doc: dict, tables: list[Table], out_dir: Path, stem: str) -> list[str]:
    """objective vs trial number, and objective vs the most important parameter; names attached to the
    trial table."""
    from leaderboards.plots import _figure, _save, _slug

    done = [t for t in doc["trials"] if isinstance(t.get("value"), (int, float))]
    if not done:
        return []
    slug = _slug(Path(doc["_path"]).parent.name)
    names = []
    fig = _figure()
    ax = fig.add_subplot(1, 1, 1)
    ax.plot([t["number"] for t in done], [t["value"] for t in done], "o", label="trial")
    running, best = [], -math.inf if doc.get("direction") == "maximize" else math.inf
    for t in done:
        best = max(best, t["value"]) if doc.get("direction") == "maximize" else min(best, t["value"])
        running.append(best)
    ax.step([t["number"] for t in done], running, where="post", label="best so far")
    ax.set(xlabel="trial", ylabel=doc["objective"], title=f"{doc['objective']} per trial")
    ax.legend(loc="best")
    names.append(f"{stem}_sweep_{slug}_trials.png")
    _save(fig, out_dir / names[-1])
    ranked = [row[0] for row in tables[1].rows] if len(tables) > 1 else sorted(
        {k for t in done for k in t["params"]})
    if ranked:
        param = ranked[0]
        xs = [t["params"].get(param) for t in done]
        fig = _figure()
        ax = fig.add_subplot(1, 1, 1)
        if _numeric(xs):
            ax.plot(xs, [t["value"] for t in done], "o")
            dist = done[0]["distributions"].get(param, {}).get("attributes", {})
            if dist.get("log"):
                ax.set_xscale("log")
        else:
            labels = sorted({str(x) for x in xs})
            ax.plot([labels.index(str(x)) for x in xs], [t["value"] for t in done], "o")
            ax.set_xticks(range(len(labels)), labels)
        ax.set(xlabel=param, ylabel=doc["objective"], title=f"{doc['objective']} vs {param}")
        names.append(f"{stem}_sweep_{slug}_{_slug(param)}.png")
        _save(fig, out_dir / names[-1])
    tables[0].plots = names
    return names
