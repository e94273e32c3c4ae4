"""Hyper-parameter searches and ablations of ``finetune.sft`` runs with Optuna, selected on a validation
split carved from the training data::

    python -m finetune.sweep --config SWEEP.yaml --model_name_or_path M --output_dir D \\
        [--n_trials N] [--sampler tpe|grid|random] [--pruner median|none] [--storage URL] [--study_name S]

Each trial is one ``finetune.sft`` run in ``D/trial-<n>/run``, a process forked from a server that has
imported the training libraries once (``finetune.sweep_runner``); its objective is one
lm-eval metric (``objective: recipe_mpr_gen/acc``, direction from the task's ``higher_is_better``) scored on
the held-out ``validation_size`` examples (``finetune.validation``), never on an evaluation split. Every
in-training evaluation is reported to Optuna, so the pruner stops bad trials (SIGTERM to the trial).

The study lives in ``D/study.db`` (SQLite) unless ``--storage`` names another (``finetune.sweep_storage``):
``journal:PATH`` (a file, several workers on one host) or an Optuna RDB URL (``postgresql://...``,
``mysql://...``) shared by workers on several machines. Run the same command again to resume a killed sweep
(finished trials kept, an interrupted one re-run), or in several terminals at once: the workers fill one
study of ``--n_trials`` trials together.
Writes ``D/sweep.json`` and ``D/best.yaml``; ``python -m leaderboards build D -o SWEEP.md`` renders it.
"""

from __future__ import annotations

import argparse
import contextlib
import fcntl
import math
import os
import signal
import sys
import time
from pathlib import Path

import yaml

from finetune import sweep_report as report
from finetune.sweep_runner import Trial, call, start
from finetune.sweep_space import SweepSpec
from finetune.sweep_storage import Storage, fail_orphaned_trials, open_storage, worker_id
from finetune.sweep_study import create_study, sampler_for, suggest
from qa_tasks.errors import QAPackError, exit_code_of
from qa_tasks.extras import require

__all__ = ["EXIT_INTERRUPTED", "main", "run"]

EXIT_INTERRUPTED = 128 + signal.SIGTERM
HEARTBEAT_S = 5  # RDB storage: a trial whose worker was killed outright is failed (and re-run) after 4x this
POLL_S = 0.25


class _Stop(KeyboardInterrupt):
    """The sweep got SIGTERM/SIGINT: the running trial is stopped and failed (Optuna fails a trial on a
    KeyboardInterrupt), the study kept; the next run re-runs the failed trial."""


class _TrialError(Exception):
    """A trial's training failed (its log says why): the trial is failed and the sweep goes on."""


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m finetune.sweep", description=__doc__.split("\n\n")[0],
                                epilog=__doc__.split("\n\n", 1)[1], formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--config", required=True, help="sweep YAML: objective, search_space, base finetune.sft config")
    p.add_argument("--model_name_or_path", required=True, help="base model (local folder or cached Hub id)")
    p.add_argument("--output_dir", required=True, help="sweep folder D (study.db, trial-*/, sweep.json, best.yaml)")
    p.add_argument("--n_trials", type=int, default=None,
                   help="trials the study holds when done (default: the grid size for grid, else 20)")
    p.add_argument("--sampler", choices=("tpe", "grid", "random"), default="tpe")
    p.add_argument("--pruner", choices=("median", "none"), default=None, help="default: the file's, else median")
    p.add_argument("--storage", default=None,
                   help="journal:PATH (a file, workers on one host) or an Optuna RDB URL such as "
                        "postgresql://user:pass@host/db (default: sqlite:///D/study.db)")
    p.add_argument("--heartbeat", type=int, default=HEARTBEAT_S,
                   help="RDB storage: seconds between a running trial's heartbeats; a trial silent for 4x this "
                        "(its worker was killed) is failed and re-run")
    p.add_argument("--study_name", default="sweep")
    p.add_argument("--seed", type=int, default=None,
                   help="sampler seed (default: random); trial n draws with seed + n, so workers sharing it differ")
    return p


class _Args(argparse.ArgumentParser):
    def error(self, message):
        raise QAPackError(f"{message}; run `python -m finetune.sweep --help` for the options")


def _parse(argv) -> argparse.Namespace:
    p = parser()
    p.__class__ = _Args
    return p.parse_args(argv)


def _write_yaml(path: Path, config: dict) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(yaml.safe_dump(config, sort_keys=False), encoding="utf-8")


class _Worker:
    def __init__(self, args, spec: SweepSpec, study, storage: Storage, out: Path, n_trials: int):
        self.args, self.spec, self.study, self.storage, self.out = args, spec, study, storage, out
        self.n_trials = n_trials
        self.child: Trial | None = None
        self.stopping = False
        self.lock_file = open(out / ".sweep.lock", "a+")  # noqa: SIM115 (held for the worker's life)
        self.locked = False
        self.current: int | None = None
        self.waiting = False

    # --- signals: forward to the running trial, stop after it
    def install(self) -> None:
        for sig in (signal.SIGTERM, signal.SIGINT):
            signal.signal(sig, self._signal)

    def _signal(self, signum, frame):
        self.stopping = signal.Signals(signum).name
        if self.child is not None and self.child.poll() is None:
            self.child.send_signal(signal.SIGTERM)
        else:
            raise _Stop()

    def _lock(self) -> None:
        fcntl.flock(self.lock_file, fcntl.LOCK_EX)
        self.locked = True

    def _unlock(self) -> None:
        if self.locked:
            fcntl.flock(self.lock_file, fcntl.LOCK_UN)
            self.locked = False

    # --- which trial next: one worker at a time decides (the lock), so no trial is run twice or lost
    def _requeue_interrupted(self) -> None:
        from optuna.trial import TrialState

        trials = self.study.get_trials(deepcopy=False)
        retried = {t.user_attrs.get("retry_of") for t in trials}
        for t in trials:
            if t.state == TrialState.FAIL and "error" not in t.user_attrs and t.number not in retried:
                self.study.enqueue_trial(t.params, user_attrs={"retry_of": t.number}, skip_if_exists=False)
                if "grid_id" in t.system_attrs:  # the re-run stands for the same grid point (GridSampler reads it)
                    queued = self.study.get_trials(deepcopy=False)[-1]
                    for key in ("grid_id", "search_space"):
                        self.study._storage.set_trial_system_attr(queued._trial_id, key, t.system_attrs[key])

    def _counted(self) -> tuple[int, int, int]:
        """(trials that count towards --n_trials: finished (a failure with an error too), running, queued;
        of them running; of them queued)."""
        from optuna.trial import TrialState

        trials = self.study.get_trials(deepcopy=False)
        counted = sum(1 for t in trials if t.state != TrialState.FAIL or "error" in t.user_attrs)
        return (counted, sum(1 for t in trials if t.state == TrialState.RUNNING),
                sum(1 for t in trials if t.state == TrialState.WAITING))

    def _next(self) -> bool:
        """True (the lock held) when this worker should ask for a trial. While every remaining trial is
        running in other workers it waits: one whose worker dies is failed and re-run here."""
        while True:
            self._lock()
            fail_orphaned_trials(self.study, self.storage)
            self._requeue_interrupted()
            counted, running, queued = self._counted()
            if counted < self.n_trials or queued:  # a queued re-run is asked for first (Optuna's rule)
                break
            self._unlock()
            if not running or self.stopping:
                return False
            if not self.waiting:
                self.waiting = True
                print(f"[sweep] every trial is taken; waiting for the {running} running in other workers (one "
                      "whose worker is killed is re-run here)", flush=True)
            time.sleep(max(1, min(self.args.heartbeat, 5)))
        if self.args.seed is not None:
            # one seed per trial number, not one random stream per worker process: two workers (or a
            # resumed worker) given the same --seed would otherwise propose the same values again
            number = len(self.study.get_trials(deepcopy=False))  # the trial Optuna creates next, under the lock
            self.study.sampler = sampler_for(self.args.sampler, self.spec, self.args.seed + number)
        return True  # still locked: the objective unlocks once Optuna has created (asked) the trial

    # --- one trial
    def objective(self, trial) -> float:
        import optuna

        from finetune.sweep_check import trial_config

        if not self.storage.heartbeat:  # a journal: other workers on this host see whether this one lives
            self.study._storage.set_trial_system_attr(trial._trial_id, "worker", worker_id())
        self._unlock()
        self.current = trial.number
        suggest(trial, self.spec.space)
        folder = self.out / f"trial-{trial.number:04d}"
        run_dir = folder / "run"
        trial.set_user_attr("output_dir", str(folder))
        config = folder / "config.yaml"
        _write_yaml(config, trial_config(self.spec, trial.params, run_dir))
        argv = ["--config", str(config), "--model_name_or_path", self.args.model_name_or_path]
        env = {str(k): str(v) for k, v in self.spec.env.items()}
        self.child = Trial(argv, folder / "train.log", env)
        pruned, values = False, {}
        try:
            while self.child.wait(POLL_S) is None:
                pruned = self._report(trial, run_dir, values) or pruned
        finally:  # the storage failed under us (a dead database server): stop the trial, it is re-run later
            if self.child.poll() is None:
                self.child.send_signal(signal.SIGTERM)
                self.child.wait()
        code, self.child = self.child.poll(), None
        if self.stopping:
            trial.set_user_attr("interrupted", True)
            raise _Stop()
        if pruned:
            raise optuna.TrialPruned()
        self._report(trial, run_dir, values)
        if code != 0 or not values:
            why = _last_line(folder / "train.log") if code != 0 else "no evaluation of the objective was written"
            trial.set_user_attr("error", f"exit {code}: {why}"[:300])
            raise _TrialError(why)
        return values[max(values)]

    def _report(self, trial, run_dir: Path, values: dict) -> bool:
        """Report each new evaluation step; True (and SIGTERM to the trial) when the pruner says stop."""
        from finetune.sft import collect_evals

        obj = self.spec.objective
        for entry in collect_evals(run_dir) if (run_dir / "eval").is_dir() else []:
            step = entry["step"]
            value = entry["metrics"].get(obj.task, {}).get(f"{obj.metric},{obj.filter}")
            if step in values or not isinstance(value, (int, float)):
                continue
            values[step] = float(value)
            trial.report(float(value), step)
            if trial.should_prune() and self.child is not None and self.child.poll() is None:
                self.child.send_signal(signal.SIGTERM)
                return True
        return False

    def loop(self) -> None:
        while not self.stopping and self._next():
            self.current = None
            try:
                self.study.optimize(self.objective, n_trials=1, catch=(_TrialError,))
            finally:
                self._unlock()
                report.write_sweep_json(self.out, self.study, self.spec, self.storage.label, self.args.sampler,
                                        self.n_trials)
            if self.current is not None:  # this worker ran a trial (not only found the study full)
                trial = self.study.get_trials(deepcopy=False)[self.current]
                print(report.progress_line(trial, self.study, self.spec.objective.key), flush=True)


def _last_line(path: Path) -> str:
    lines = [ln for ln in path.read_text(encoding="utf-8", errors="replace").splitlines() if ln.strip()]
    return lines[-1].strip() if lines else "no output"


def _file_env(config: str) -> dict[str, str]:
    """The sweep file's ``env:`` mapping, set before the trial server starts (some variables, such as thread
    counts, are read when torch is imported); the file itself is checked later."""
    try:
        env = (yaml.safe_load(Path(config).read_text(encoding="utf-8")) or {}).get("env") or {}
    except (OSError, ValueError, yaml.YAMLError, AttributeError):  # ValueError: not UTF-8
        return {}
    return {str(k): str(v) for k, v in env.items()} if isinstance(env, dict) else {}


def _open_study(args, spec: SweepSpec, out: Path, storage: Storage | None) -> tuple[Storage, object]:
    import sqlalchemy

    with open(out / ".sweep.lock", "a+") as lock:  # workers started together create the schema one at a time
        fcntl.flock(lock, fcntl.LOCK_EX)
        storage = storage or open_storage(None, out, args.heartbeat)
        for attempt in range(3):  # workers on other machines may race on a new schema/study too
            try:
                return storage, create_study(args, spec, storage.storage)
            except sqlalchemy.exc.IntegrityError:
                if attempt == 2:
                    raise
                time.sleep(1)
    raise AssertionError("unreachable")


def run(argv: list[str] | None = None) -> int:
    args = _parse(argv)  # --help and usage errors first: they need no optuna
    require("sweep,train", what="python -m finetune.sweep")  # optuna, and TRL for the trials' finetune.sft
    out = Path(args.output_dir)
    _check_output_dir(out)
    if args.n_trials is not None and args.n_trials <= 0:
        raise QAPackError(f"--n_trials={args.n_trials} must be > 0")
    if args.heartbeat <= 0:
        raise QAPackError(f"--heartbeat={args.heartbeat} must be > 0 seconds")
    os.environ.update(_file_env(args.config))  # before the trial server starts: it imports torch
    start()  # its imports run while this process imports optuna and opens the storage
    import optuna
    import sqlalchemy

    storage = open_storage(args.storage, out, args.heartbeat) if args.storage else None
    spec = call("finetune.sweep_check:check_spec", args.config, args.sampler, args.pruner, args.model_name_or_path)
    out.mkdir(parents=True, exist_ok=True)
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    # a failed trial is one progress line of ours; Optuna's warning would add the traceback of the failure
    # (a SIGTERM included), which the trial's train.log already holds
    optuna.logging.get_logger("optuna.study._optimize").setLevel(optuna.logging.ERROR)
    import warnings

    warnings.filterwarnings("ignore", category=optuna.exceptions.ExperimentalWarning)
    try:
        storage, study = _open_study(args, spec, out, storage)
        return _sweep(args, spec, out, storage, study)
    except sqlalchemy.exc.SQLAlchemyError as e:  # the database server went away mid-sweep
        reason = str(getattr(e, "orig", None) or e).strip().splitlines()[0][:160]
        raise QAPackError(f"the study database stopped answering ({reason}); finished trials are kept there: "
                          "rerun the same command once it is back") from None


def _sweep(args, spec: SweepSpec, out: Path, storage: Storage, study) -> int:
    grid_size = math.prod(len(v) for v in spec.grid.values()) if spec.grid else None
    n_trials = args.n_trials or grid_size or 20
    info = spec.base
    print(f"[sweep] study {args.study_name!r} in {storage.label}: {n_trials} trials, {args.sampler} sampler, "
          f"{spec.pruner_label} pruner; objective {spec.objective.key} ({spec.objective.direction}) on a validation "
          f"split of validation_size={info['validation_size']} (seed {info['validation_seed']}) carved from the "
          "training data", flush=True)
    worker = _Worker(args, spec, study, storage, out, n_trials)
    worker.install()
    try:
        worker.loop()
    except _Stop:
        doc = report.write_sweep_json(out, study, spec, storage.label, args.sampler, n_trials)
        done = sum(1 for t in doc["trials"] if t["state"] in ("COMPLETE", "PRUNED"))
        print(f"[sweep] stopped by {worker.stopping or 'a signal'}: {done} finished trial(s) kept in "
              f"{storage.label}, the interrupted one failed; rerun the same command to resume", file=sys.stderr,
              flush=True)
        return EXIT_INTERRUPTED
    # the final state, also when this run found nothing left to do (e.g. a rerun after a kill)
    report.write_sweep_json(out, study, spec, storage.label, args.sampler, n_trials)
    best = report.best_trial(study)
    if best is None:
        from optuna.trial import TrialState

        running = sum(1 for t in study.get_trials(deepcopy=False) if t.state == TrialState.RUNNING)
        if running:  # every trial is taken, by other workers that are still running them
            print(f"[sweep] no trial left for this worker; {running} still running in other workers, whose "
                  f"last one writes {out / report.SWEEP_FILE} and the best config", flush=True)
            return 0
        print("[sweep] no trial completed; see the train.log of each trial folder", file=sys.stderr, flush=True)
        return 1
    path = report.write_best(out, spec, best)
    print(f"[sweep] best trial {best.number}: {spec.objective.key}={best.value:.4f} {best.params}; wrote "
          f"{out / report.SWEEP_FILE} and {path}\n[sweep] full run on all the training data: "
          f"{report.full_run_command(out, args.model_name_or_path)}", flush=True)
    return 0


def _check_output_dir(out: Path) -> None:
    if out.exists() and not out.is_dir():
        raise QAPackError(f"--output_dir {out} is a file; choose a folder")
    parent = next((p for p in out.parents if p.exists()), None)
    if parent is not None and not parent.is_dir():
        raise QAPackError(f"--output_dir {out}: {parent} is a file, not a folder; choose a path under a folder")


def main(argv: list[str] | None = None) -> int:
    try:
        return exit_code_of(run, argv)
    except KeyboardInterrupt:  # Ctrl-C before the first trial (later ones are the worker's _Stop)
        print("[sweep] interrupted before any trial started", file=sys.stderr, flush=True)
        return 128 + signal.SIGINT


if __name__ == "__main__":
    with contextlib.suppress(BrokenPipeError):
        sys.exit(main())
