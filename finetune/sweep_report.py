"""What a sweep leaves in its folder: ``sweep.json`` (every trial), ``best.yaml`` (a ready ``finetune.sft``
config) and the one-line progress and final messages."""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path

from qa_tasks.files import write_json

__all__ = [
    "BEST_FILE",
    "SWEEP_FILE",
    "best_trial",
    "full_run_command",
    "progress_line",
    "trial_rows",
    "write_best",
    "write_sweep_json",
]

SWEEP_FILE = "sweep.json"
BEST_FILE = "best.yaml"
_VALIDATION_FIELDS = ("validation_size", "validation_seed")


def _duration(t) -> float | None:
    if t.datetime_start is None or t.datetime_complete is None:
        return None
    return round((t.datetime_complete - t.datetime_start).total_seconds(), 2)


def trial_rows(study) -> list[dict]:
    from optuna.distributions import distribution_to_json

    rows = []
    for t in study.get_trials(deepcopy=False):
        rows.append({"number": t.number, "state": t.state.name, "value": t.value, "params": t.params,
                     "distributions": {k: json.loads(distribution_to_json(d)) for k, d in t.distributions.items()},
                     "intermediate": {str(k): v for k, v in sorted(t.intermediate_values.items())},
                     "duration_s": _duration(t), "output_dir": t.user_attrs.get("output_dir"),
                     **{k: t.user_attrs[k] for k in ("error", "interrupted", "retry_of") if k in t.user_attrs}})
    return rows


def best_trial(study):
    from optuna.trial import TrialState

    done = [t for t in study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))]
    if not done:
        return None
    return study.best_trial


def _validation(rows: list[dict]) -> dict | None:
    """The validation split as the trials' manifests recorded it (the same for every trial)."""
    for row in rows:
        path = Path(row["output_dir"] or "") / "run" / "manifest.json"
        if row["output_dir"] and path.is_file():
            info = json.loads(path.read_text(encoding="utf-8")).get("data", {}).get("validation")
            if info:
                return info
    return None


def write_sweep_json(out: Path, study, spec, storage: str, sampler: str, n_trials: int) -> dict:
    rows = trial_rows(study)
    best = best_trial(study)
    doc = {"study_name": study.study_name, "storage": storage, "sampler": sampler, "pruner": spec.pruner,
           "pruner_args": spec.pruner_args, "objective": spec.objective.key, "direction": spec.objective.direction, "n_trials": n_trials,
           "validation": _validation(rows) or {k: spec.base[k] for k in _VALIDATION_FIELDS},
           "base_config": str(spec.path),
           "best": None if best is None else {"number": best.number, "value": best.value, "params": best.params,
                                             "output_dir": best.user_attrs.get("output_dir")},
           "trials": rows}
    write_json(out / SWEEP_FILE, doc)
    return doc


def write_best(out: Path, spec, best) -> Path:
    """The base config with the best trial's values, for a full run on all the training data (no
    validation split held out) with the base config's own eval_tasks."""
    import yaml

    config = {k: v for k, v in spec.base.items() if k not in _VALIDATION_FIELDS and k != "output_dir"}
    config.update(best.params)
    if spec.env:
        config["env"] = spec.env
    header = (f"# Best trial {best.number} of the sweep in {out}: {spec.objective.key}={best.value:.6g} on the "
              f"validation split carved from the training data.\n# Full run: {full_run_command(out, '')}\n")
    path = out / BEST_FILE
    with tempfile.NamedTemporaryFile("w", dir=out, prefix=f".{BEST_FILE}.", delete=False, encoding="utf-8") as tmp:
        tmp.write(header + yaml.safe_dump(config, sort_keys=False))
    os.replace(tmp.name, path)
    return path


def full_run_command(out: Path, model: str) -> str:
    return (f"python -m finetune.sft --config {out / BEST_FILE} --model_name_or_path {model or 'MODEL'} "
            f"--output_dir {out.parent / (out.name + '-best')}")


def _fmt(value) -> str:
    return f"{value:.4g}" if isinstance(value, float) else str(value)


def progress_line(trial, study, key: str) -> str:
    best = best_trial(study)
    value = "-" if trial.value is None else f"{trial.value:.4f}"
    best_text = "none yet" if best is None else f"{best.value:.4f} (trial {best.number})"
    params = " ".join(f"{k}={_fmt(v)}" for k, v in trial.params.items())
    duration = _duration(trial)
    error = f" | {trial.user_attrs['error']}" if "error" in trial.user_attrs else ""
    return (f"[sweep] trial {trial.number} {trial.state.name.lower()}: {key}={value} | best {best_text} | "
            f"{duration if duration is not None else '-'} s | {params}{error}")
