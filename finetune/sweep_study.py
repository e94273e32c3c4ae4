"""The Optuna study of a sweep: its sampler and pruner, the identity that keeps a resumed study consistent,
and how a trial samples the search space."""

from __future__ import annotations

from finetune.sweep_space import SweepSpec
from qa_tasks.errors import QAPackError

__all__ = ["create_study", "sampler_for", "suggest"]


def sampler_for(kind: str, spec: SweepSpec, seed: int | None):
    import optuna

    return {"tpe": lambda: optuna.samplers.TPESampler(seed=seed),
            "random": lambda: optuna.samplers.RandomSampler(seed=seed),
            "grid": lambda: optuna.samplers.GridSampler(spec.grid, seed=seed)}[kind]()


def create_study(args, spec: SweepSpec, storage, n_trials: int = 0):
    import optuna

    sampler = sampler_for(args.sampler, spec, args.seed)
    study = optuna.create_study(study_name=args.study_name, storage=storage, sampler=sampler, pruner=spec.make_pruner(),
                                direction=spec.objective.direction, load_if_exists=True)
    identity = {"objective": spec.objective.key, "search_space": sorted(spec.space), "sampler": args.sampler}
    stored = study.user_attrs.get("identity")
    if stored is None:
        study.set_user_attr("identity", identity)
    elif stored != identity:
        raise QAPackError(f"study {args.study_name!r} in {args.output_dir} was started with {stored}, not "
                          f"{identity}; use the same sweep config, or a new --output_dir / --study_name")
    return study


def suggest(trial, space: dict) -> None:
    """Sample every field of the search space (an enqueued re-run gets its stored values back)."""
    from optuna.distributions import CategoricalDistribution, IntDistribution

    for name, d in space.items():
        if isinstance(d, CategoricalDistribution):
            trial.suggest_categorical(name, d.choices)
        elif isinstance(d, IntDistribution):
            trial.suggest_int(name, d.low, d.high, step=d.step, log=d.log)
        else:
            trial.suggest_float(name, d.low, d.high, log=d.log)
