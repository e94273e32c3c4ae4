"""Stopping a training run cleanly: SIGTERM/SIGINT within seconds, and a resumed run that has nothing left.

``run_interruptible`` runs a command's body with the signal handler installed; ``Interrupt`` tracks the
phase the run is in (start, train, save, eval, final) and decides what a signal does there; its callback and
``stop_at_max_steps`` are the trainer callbacks that carry it out.
"""

from __future__ import annotations

import signal
import sys

__all__ = ["EXIT_INTERRUPTED", "Interrupt", "Interrupted", "TrainingDone", "run_interruptible", "stop_at_max_steps"]

EXIT_INTERRUPTED = 128 + signal.SIGTERM


class TrainingDone(BaseException):
    """Raised at the first step of a run resumed from its last step (``max_steps``): transformers' loop
    would train one step more before it checks ``max_steps``."""


def stop_at_max_steps():
    """The last callback: the others (a resumed run's pending evaluation) see the step begin first."""
    from transformers import TrainerCallback

    class StopAtMaxSteps(TrainerCallback):
        def on_step_begin(self, args, state, control, **kwargs):
            if 0 < args.max_steps <= state.global_step:
                raise TrainingDone

    return StopAtMaxSteps()


class Interrupted(BaseException):
    """Raised by the signal handler to abandon an evaluation or an overlong training step (a BaseException,
    so that no library's ``except Exception`` swallows it)."""


class Interrupt:
    """SIGTERM/SIGINT: stop within seconds, keep the last complete checkpoint.

    During a training step the step is allowed ``GRACE_S`` to finish, then a checkpoint is saved at that
    step; a step still running after that is abandoned. A checkpoint being written is finished (a checkpoint
    without trainer_state.json does not count). An evaluation is abandoned at once. A second signal stops
    at once."""

    GRACE_S = 5.0

    def __init__(self):
        self.signum: int | None = None
        self.phase = "start"  # start | train | save | eval | final

    def install(self):
        for sig in (signal.SIGTERM, signal.SIGINT):
            signal.signal(sig, self._handle)

    @property
    def exit_code(self) -> int:
        return 128 + (self.signum or signal.SIGTERM)

    def _handle(self, signum, frame):
        first = self.signum is None
        self.signum = self.signum or signum
        if not first or self.phase in ("start", "eval"):
            raise Interrupted(signum)
        if self.phase == "train":
            self._arm()

    def _arm(self) -> None:
        signal.signal(signal.SIGALRM, self._grace_over)
        signal.setitimer(signal.ITIMER_REAL, self.GRACE_S)

    def _grace_over(self, signum, frame):
        if self.phase == "train":
            raise Interrupted(self.signum)

    def enter(self, phase: str) -> None:
        if phase != "train":
            signal.setitimer(signal.ITIMER_REAL, 0)
        self.phase = phase
        if self.signum is not None and phase == "eval":
            raise Interrupted(self.signum)
        if self.signum is not None and phase == "train":  # the signal came between steps: one more, then save
            self._arm()

    def callback(self):
        from transformers import TrainerCallback

        interrupt = self

        class SaveAndStopOnSignal(TrainerCallback):
            def on_step_begin(self, args, state, control, **kwargs):
                interrupt.enter("train")

            def on_step_end(self, args, state, control, **kwargs):
                interrupt.enter("save")
                if interrupt.signum is not None:
                    control.should_save = True
                    control.should_training_stop = True
                if control.should_save:  # the log history then covers every step a checkpoint holds
                    control.should_log = True
                return control

        return SaveAndStopOnSignal()


def run_interruptible(body, argv: list[str] | None = None) -> int:
    """``body(argv, interrupt)`` with SIGTERM/SIGINT handled (``Interrupt``); its exit code."""
    interrupt = Interrupt()
    interrupt.install()  # from here on a signal never leaves a half-written file behind
    try:
        return body(argv, interrupt)
    except Interrupted:
        if interrupt.phase == "start":  # nothing trained yet, nothing to keep
            print("[finetune] interrupted before training started", file=sys.stderr, flush=True)
        return interrupt.exit_code
