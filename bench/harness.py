"""The one timing harness every bench uses: arms interleaved, repeated, reported as median and range.

A load shift on a shared machine moves a ratio measured arm after arm, so each repeat runs every arm
once, in an order that alternates between repeats (A B, then B A, ...), and the ratio is taken per
repeat before its median is. CPU time (this process and its children) is recorded beside wall time,
and the load average before and after the run, so a reader can tell a busy machine from a slow arm.

    from bench.harness import add_arguments, compare   # scripts run as ``python -m bench.<name>``
    report = compare({"pack": run_pack, "baseline": run_baseline}, repeats=5)
    print(report.markdown(ratio=("pack", "baseline")))

Every bench script takes ``--repeats`` and ``--smoke`` (tiny sizes, so that a test can run each
command recorded in bench/RESULTS.md and none goes stale).
"""

from __future__ import annotations

import argparse
import os
import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

__all__ = ["SMOKE_REPEATS", "Report", "Sample", "add_arguments", "compare", "load_average", "spread"]

# --smoke checks that a recorded command still runs; one repeat is enough for that
SMOKE_REPEATS = 1


def load_average() -> tuple[float, float, float] | None:
    try:
        return os.getloadavg()
    except OSError:  # not available on every platform
        return None


def _live_children_cpu() -> float:
    """CPU seconds of this process's live children so far (Linux /proc; 0 elsewhere): a worker that
    outlives one arm's run (e.g. the math grader's) is counted while it runs, and once reaped its whole
    time moves into RUSAGE_CHILDREN, so a difference of two readings stays right."""
    total, tick = 0, os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100
    try:
        tasks = os.listdir("/proc/self/task")
    except OSError:
        return 0.0
    for task in tasks:
        try:
            pids = Path(f"/proc/self/task/{task}/children").read_text().split()
        except OSError:
            continue
        for pid in pids:
            try:
                fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
            except OSError:  # exited meanwhile
                continue
            total += int(fields[11]) + int(fields[12])
    return total / tick


def _cpu_seconds() -> float:
    """User + system CPU seconds of this process, its finished children and its live ones."""
    import resource

    own, kids = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + kids.ru_utime + kids.ru_stime + _live_children_cpu()


@dataclass
class Sample:
    """One arm's run in one repeat: wall and CPU seconds, plus whatever the arm returned."""

    wall_s: float
    cpu_s: float
    value: object = None


@dataclass
class Report:
    arms: dict[str, list[Sample]]
    load_before: tuple[float, float, float] | None
    load_after: tuple[float, float, float] | None
    notes: list[str] = field(default_factory=list)

    @property
    def repeats(self) -> int:
        return min(len(s) for s in self.arms.values())

    def wall(self, arm: str) -> list[float]:
        return [s.wall_s for s in self.arms[arm]]

    def cpu(self, arm: str) -> list[float]:
        return [s.cpu_s for s in self.arms[arm]]

    def values(self, arm: str, key: str | None = None) -> list:
        """What the arm returned in each repeat (``value[key]`` when a key is given)."""
        return [s.value if key is None else s.value[key] for s in self.arms[arm]]

    def ratios(self, slow: str, fast: str, cpu: bool = False) -> list[float]:
        """Per-repeat ``slow / fast`` (how many times faster ``fast`` is), wall or CPU time."""
        get = self.cpu if cpu else self.wall
        return [s / f for s, f in zip(get(slow), get(fast)) if f > 0]

    def markdown(self, ratio: tuple[str, str] | None = None, unit: str = "s") -> str:
        """A table of every arm (median and range of wall and CPU time) and the per-repeat ratio."""
        lines = ["| arm | wall median | wall range | CPU median | CPU range |", "|---|---:|---:|---:|---:|"]
        for arm in self.arms:
            w, c = self.wall(arm), self.cpu(arm)
            lines.append(f"| {arm} | {_fmt(statistics.median(w), unit)} | {_span(w, unit)} "
                         f"| {_fmt(statistics.median(c), unit)} | {_span(c, unit)} |")
        if ratio is not None:
            for kind, cpu in (("wall", False), ("CPU", True)):
                r = self.ratios(*ratio, cpu=cpu)
                if r:
                    lines.append(f"| **{ratio[0]} / {ratio[1]}** ({kind}, per repeat) | "
                                 f"**{statistics.median(r):.2f}×** | {min(r):.2f}–{max(r):.2f}× | | |")
        lines.append("")
        lines.append(f"{self.repeats} interleaved repeats; load average before {_load(self.load_before)}, "
                     f"after {_load(self.load_after)}; {os.cpu_count()} CPUs.")
        lines.extend(self.notes)
        return "\n".join(lines)


def spread(xs: list[float], fmt: str = "{:.3f}") -> str:
    """``median (min–max)`` of a list of figures, for quantities an arm returns (tokens/s, overheads)."""
    return f"{fmt.format(statistics.median(xs))} ({fmt.format(min(xs))}–{fmt.format(max(xs))})"


def _fmt(x: float, unit: str) -> str:
    return f"{x * 1000:.1f} ms" if unit == "ms" else f"{x:.3f} s"


def _span(xs: list[float], unit: str) -> str:
    return f"{_fmt(min(xs), unit)}–{_fmt(max(xs), unit)}"


def _load(load: tuple[float, float, float] | None) -> str:
    return "n/a" if load is None else f"{load[0]:.2f}"


def compare(arms: dict[str, Callable[[], object]], repeats: int = 5, warmup: bool = False) -> Report:
    """Run every arm ``repeats`` times, interleaved, alternating the order each repeat.

    An arm is a callable doing the whole timed work; what it returns is kept in ``Sample.value``
    (e.g. the replies, so a bench can check both arms did the same work).
    """
    names = list(arms)
    if warmup:
        for name in names:
            arms[name]()
    samples: dict[str, list[Sample]] = {n: [] for n in names}
    before = load_average()
    for rep in range(repeats):
        for name in names if rep % 2 == 0 else reversed(names):
            cpu0, wall0 = _cpu_seconds(), time.perf_counter()
            value = arms[name]()
            samples[name].append(Sample(time.perf_counter() - wall0, _cpu_seconds() - cpu0, value))
    return Report(samples, before, load_average())


def add_arguments(parser: argparse.ArgumentParser, repeats: int = 5) -> None:
    """The options every bench script shares."""
    parser.add_argument("--repeats", type=int, default=repeats, help="interleaved repeats per arm (≥ 5 to record)")
    parser.add_argument("--smoke", action="store_true",
                        help="tiny sizes and one repeat: checks the command still runs, measures nothing")
