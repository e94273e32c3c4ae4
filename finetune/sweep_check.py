"""The sweep file checked in full before any trial: its fields (``finetune.sweep_space``), then every value
the search space can give a trial through ``finetune.sft``'s own checks, and the objective task must
score documents of the validation split carved from the training data, whose rows hold no document of the
training set's evaluation split (SQuAD dev, GSM8K test, the Recipe-MPR fold's test queries).

Runs in a process forked from the trial server (``finetune.sweep_runner.call``), which has imported TRL
and torch already, so the sweep worker itself never imports them.
"""

from __future__ import annotations

import tempfile
from pathlib import Path

import yaml

from finetune.sweep_space import SweepSpec, load_spec

__all__ = ["check_spec", "edge_values", "trial_config"]


def trial_config(spec: SweepSpec, params: dict, run_dir: Path) -> dict:
    """A trial's ``finetune.sft`` config: the base, the trial's values, the objective task scored."""
    return {**spec.base, **params, "eval_tasks": spec.objective.task, "output_dir": str(run_dir),
            **({"env": spec.env} if spec.env else {})}


def edge_values(dist) -> list:
    """The values of a distribution the trainer must accept: every choice, or both ends of a range."""
    return list(dist.choices) if hasattr(dist, "choices") else [dist.low, dist.high]


def _check_config(spec: SweepSpec, params: dict, model: str, tmp: Path):
    from finetune.config import SftParser, validate
    from qa_tasks.errors import QAPackError

    path = tmp / "trial.yaml"
    path.write_text(yaml.safe_dump(trial_config(spec, params, tmp / "run"), sort_keys=False), encoding="utf-8")
    try:
        task, lora, sft = SftParser().parse(["--config", str(path), "--model_name_or_path", model])
        validate(task, lora, sft)
    except QAPackError as e:
        varied = {k: v for k, v in params.items() if k in spec.space}
        raise QAPackError(f"{spec.path}: a trial with {varied} is refused by finetune.sft: {e}") from None
    return task


def check_spec(path: str, sampler: str, pruner: str | None, model: str) -> SweepSpec:
    """The checked sweep spec; a QAPackError names the first problem."""
    import warnings

    from finetune.data import build_training_data
    from finetune.guard import check_no_overlap
    from finetune.validation import carve, validation_samples
    from qa_tasks.errors import QAPackError

    warnings.simplefilter("ignore")  # deprecations of a field reach each trial's train.log; an error is one line
    spec = load_spec(path, sampler, pruner)
    first = {name: edge_values(dist)[0] for name, dist in spec.space.items()}
    with tempfile.TemporaryDirectory() as tmp:
        task = _check_config(spec, first, model, Path(tmp))
        for name, dist in spec.space.items():  # one field at a time, the others at their first value
            for value in edge_values(dist)[1:]:
                _check_config(spec, {**first, name: value}, model, Path(tmp))
    data = build_training_data(task.task, task.fold, task.data_path, task.max_examples)
    train, held_out = carve(data, task.validation_size, task.validation_seed)
    try:  # the objective is never scored on a dev/test document: the held-out rows must not hold one either
        check_no_overlap(held_out, task.task, [], task.fold)
    except QAPackError as e:
        raise QAPackError(f"{spec.path}: the validation split carved from task={task.task}: {e}") from None
    validation_samples(held_out, train, [spec.objective.task])
    return spec
