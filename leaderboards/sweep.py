"""Sweep folders of ``python -m finetune.sweep`` (``D/sweep.json``): a trial table (sorted best first, the
best trial marked), parameter importances (Optuna's default importance evaluator, over the completed
trials) and PNGs of the objective per trial and against the most important parameter.

A sweep folder given to ``python -m leaderboards build`` is read from its ``sweep.json`` only: the
trials' in-training evaluations score the validation split, not an evaluation split, so they stay out of
the model tables.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

from leaderboards.tables import Table
from qa_tasks.errors import QAPackError
from qa_tasks.extras import require

__all__ = ["SWEEP_FILE", "importances", "is_sweep", "read_sweep", "sweep_plots", "sweep_tables"]

SWEEP_FILE = "sweep.json"
_ORDER = {"COMPLETE": 0, "PRUNED": 1, "RUNNING": 2, "WAITING": 3, "FAIL": 4}


def is_sweep(path) -> bool:
    path = Path(path)
    return (path / SWEEP_FILE).is_file() if path.is_dir() else path.name == SWEEP_FILE


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
    return doc


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
            f"{doc.get('sampler')} sampler, {doc.get('pruner')} pruner. ★ marks the best trial "
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
