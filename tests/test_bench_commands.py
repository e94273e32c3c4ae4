"""Every command recorded in bench/RESULTS.md still runs and still reports the figures RESULTS.md quotes:
each is rerun with ``--smoke`` (tiny sizes, one repeat), from the repository root, without PYTHONPATH, and
what it prints is checked for form, not value (a harness table per comparison with its arms, one repeat and
a positive ratio; the JSON fields of a part; the rows of a per-phase table), so no recorded figure points at
a command that no longer exists, no longer parses or no longer reports that figure.

Each recorded command is its own pytest-xdist group (tests/conftest.py), the long ones marked ``heavy``, so
that under ``--dist loadgroup`` these minutes of subprocess runs spread over the workers."""

from __future__ import annotations

import ast
import json
import os
import re
import shlex
import subprocess
import sys
from dataclasses import dataclass, field

import pytest

from bench.bench_rollout import _ending_at
from bench.harness import SMOKE_REPEATS
from tests.toolkit.env import DATA_DIR, ROOT

RESULTS = ROOT / "bench" / "RESULTS.md"
_COMMAND = re.compile(r"python -m (bench\.\w+)([^`\n]*)")


def recorded_commands(text: str) -> list[tuple[str, list[str]]]:
    """(module, arguments) of every ``python -m bench.<name> ...`` line in ``text``; backslash line
    continuations are joined, environment assignments before ``python`` and ``# comments`` dropped."""
    joined = re.sub(r"\\\n\s*", " ", text)
    out = []
    for line in joined.splitlines():
        match = _COMMAND.search(line)
        if match:
            args = shlex.split(match.group(2).split(" #", 1)[0], comments=False)
            if (match.group(1), args) not in out:
                out.append((match.group(1), args))
    return out


COMMANDS = recorded_commands(RESULTS.read_text(encoding="utf-8"))

def _real_server(module: str, args: list[str]) -> bool:
    """Whether the command starts a real ``transformers serve``."""
    return module == "bench.bench_rollout" and "--api" in args and "--simulated" not in args


def _takes_a_minute(module: str, args: list[str]) -> bool:
    """Commands whose smoke run takes 20 s to over a minute on 2 cores (training, a real server, fresh lm_eval
    processes): they start before the light test files (``heavy``), the ones that time nothing fast do not."""
    if module == "bench.bench_rollout":
        return _real_server(module, args)
    return module not in {"bench.bench_math_grader", "bench.bench_startup", "bench.dry_run_extras"}


def _group(module: str, args: list[str]) -> str:
    """A command's pytest-xdist group: its own (its place in RESULTS.md), except that the commands starting a
    real ``transformers serve`` share one, so that no two such servers load at once, as before they were
    grouped (a continuous-batching server once failed to load, "The model's process stopped while loading the
    model", while another loaded beside it on 2 busy cores)."""
    if _real_server(module, args):
        return "bench.bench_rollout --api (transformers serve)"
    return f"{module}#{COMMANDS.index((module, args)) + 1}"


def commands(*modules: str) -> list:
    """pytest params of the recorded commands of ``modules`` (all of them when none is named), each in its
    own pytest-xdist group."""
    picked = [(m, a) for m, a in COMMANDS if not modules or m in modules]
    params = []
    for m, a in picked:
        marks = [pytest.mark.xdist_group(_group(m, a))]
        if _takes_a_minute(m, a):
            marks.append(pytest.mark.heavy(order=3))
        params.append(pytest.param(m, a, id=" ".join([m, *a]), marks=marks))
    return params


def run_recorded(module: str, args: list[str], tmp_path) -> str:
    """Runs the recorded command at smoke size; its stdout (the test fails on a non-zero exit)."""
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    env.update({"QA_PACK_DATA_DIR": str(DATA_DIR), "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1",
                "TOKENIZERS_PARALLELISM": "false"})
    args = [str(tmp_path / "out.json") if a.startswith("/tmp/") else a for a in args]
    proc = subprocess.run([sys.executable, "-m", module, *args, "--smoke"], cwd=ROOT, env=env, capture_output=True,
                          text=True, timeout=600, check=False)
    assert proc.returncode == 0, f"{module} {args}: {proc.stderr[-2000:]}"
    assert proc.stdout.strip(), "the command printed no result"
    return proc.stdout


# ---- what the benches print ------------------------------------------------------------------------------

_SECONDS = r"\d+\.\d+ m?s"
_HEADER = "| arm | wall median | wall range | CPU median | CPU range |"
_ARM_ROW = re.compile(rf"\| (?P<arm>[^*|][^|]*?) \| (?P<wall>{_SECONDS}) \| {_SECONDS}–{_SECONDS} "
                      rf"\| (?P<cpu>{_SECONDS}) \| {_SECONDS}–{_SECONDS} \|")
_RATIO_ROW = re.compile(r"\| \*\*(?P<slow>.+) / (?P<fast>.+)\*\* \((?P<kind>wall|CPU), per repeat\) "
                        r"\| \*\*(?P<median>\d+\.\d+)×\*\* \| (?P<lo>\d+\.\d+)–(?P<hi>\d+\.\d+)× \| \| \|")
_REPEATS = re.compile(r"(?P<n>\d+) interleaved repeats; load average before (n/a|\d+\.\d+), after (n/a|\d+\.\d+); "
                      r"\d+ CPUs\.")
_SPREAD = r"\d+\.\d+ \(\d+\.\d+–\d+\.\d+\)"  # bench.harness.spread: median (min–max)


def _seconds(cell: str) -> float:
    value, unit = cell.split()
    return float(value) / (1000 if unit == "ms" else 1)


@dataclass
class Table:
    """One ``bench.harness.Report.markdown()`` table: arm -> (wall, CPU) median seconds, (slow, fast, kind)
    -> median per-repeat ratio, and the number of repeats."""

    arms: dict[str, tuple[float, float]] = field(default_factory=dict)
    ratios: dict[tuple[str, str, str], float] = field(default_factory=dict)
    repeats: int = 0


def harness_tables(stdout: str) -> list[Table]:
    """Every harness table in ``stdout``; fails on a row of one that is not an arm, a ratio or its footer."""
    lines, tables = stdout.splitlines(), []
    for i, line in enumerate(lines):
        if line != _HEADER:
            continue
        assert lines[i + 1] == "|---|---:|---:|---:|---:|", lines[i + 1]
        table, rows = Table(), iter(lines[i + 2:])
        for row in rows:
            if not row:
                break
            if arm := _ARM_ROW.fullmatch(row):
                table.arms[arm["arm"]] = (_seconds(arm["wall"]), _seconds(arm["cpu"]))
            else:
                ratio = _RATIO_ROW.fullmatch(row)
                assert ratio, f"neither an arm nor a ratio row: {row!r}"
                table.ratios[ratio["slow"], ratio["fast"], ratio["kind"]] = float(ratio["median"])
                assert float(ratio["lo"]) <= float(ratio["median"]) <= float(ratio["hi"]), row
        footer = _REPEATS.fullmatch(next(rows, ""))
        assert footer, f"no repeats line under the table at line {i + 1}"
        table.repeats = int(footer["n"])
        tables.append(table)
    return tables


def check_tables(stdout: str, arms: list[str], ratios: list[tuple[str, str]]) -> list[Table]:
    """One harness table per entry of ``ratios`` (in that order), each over ``arms`` with positive times, one
    repeat (``--smoke``) and that ratio's wall figure, a positive float (its CPU one, where printed, too)."""
    tables = harness_tables(stdout)
    assert len(tables) == len(ratios), stdout
    for table, (slow, fast) in zip(tables, ratios):
        assert list(table.arms) == arms, table
        assert all(wall > 0 and cpu >= 0 for wall, cpu in table.arms.values()), table
        assert table.repeats == SMOKE_REPEATS, table
        assert set(table.ratios) <= {(slow, fast, "wall"), (slow, fast, "CPU")}, table
        assert table.ratios.get((slow, fast, "wall"), 0) > 0, table
        assert all(r > 0 for r in table.ratios.values()), table
    return tables


def _option(args: list[str], name: str, default: str) -> str:
    for i, a in enumerate(args):
        if a == name:
            return args[i + 1]
        if a.startswith(name + "="):
            return a.split("=", 1)[1]
    return default


def _json_after(stdout: str, prefix: str) -> dict:
    lines = [line for line in stdout.splitlines() if line.startswith(prefix)]
    assert len(lines) == 1, f"expected one {prefix!r} line:\n{stdout[-2000:]}"
    return json.loads(lines[0][len(prefix):])


def check_math_grader(args: list[str], out: str) -> None:
    if _option(args, "--part", "throughput") == "adversarial":
        report = json.loads(out)
        assert report["finished"] is True and report["items"] == len(report["rows"]) > 0, report
        assert isinstance(report["timeouts"], int) and isinstance(report["over_bound"], list), report
        for row in report["rows"]:
            assert row["seconds"] >= 0 and isinstance(row["timed_out"], bool) and row["item"], row
        return
    slow_path = "\nslow path alone: " in out  # a second table, when some items reach math-verify
    check_tables(out, ["pack", "math-verify"], [("math-verify", "pack")] * (1 + slow_path))
    agreement = _json_after(out, "agreement: ")
    for arm in ("pack", "math-verify"):
        assert agreement[arm] and all(0 <= share <= 1 for share in agreement[arm].values()), agreement
    assert isinstance(agreement["disagreements"], int), agreement


def check_rollout(args: list[str], out: str) -> None:
    if "--api" in args:  # real server or --simulated: every arm against the first, one table each
        names = _option(args, "--arms", "stream,rounds").split(",")
        assert re.match(r"\d+ passages, \d+ calls, \d+ rounds \(\d+\.\d requests per round\), num_concurrent "
                        r"\d+; same replies and accounting in every run; reply tokens: min \d+", out), out[:500]
        check_tables(out, names, [(n, names[0]) for n in names[1:]])
        return
    loop, batched = "per-passage loop", "round-batched"
    check_tables(out, [batched, loop], [(loop, batched)] * 2)
    assert re.findall(r"^### (\w+)$", out, re.MULTILINE) == ["sequential", "collab"], out
    same = re.findall(r"GPU ceiling estimate calls / rounds = (\d+\.\d)x; .* same replies in every run of both "
                      r"arms: (True|False)$", out, re.MULTILINE)
    assert [s for _, s in same] == ["True", "True"] and all(float(r) >= 1 for r, _ in same), same


def check_sft(args: list[str], out: str) -> None:
    part = _option(args, "--part", "all")
    report = _json_after(out, "REPORT ")
    if part == "speed":
        check_tables(out, ["finetune.sft", "plain TRL"], [("plain TRL", "finetune.sft")])
        ratio = re.search(r"^- \*\*finetune\.sft / plain TRL tokens/s, per repeat: (\d+\.\d+) \(", out, re.MULTILINE)
        assert ratio and float(ratio[1]) > 0, out
        assert re.search(rf"^- finetune\.sft tokens/s \(trainer's train_runtime\): {_SPREAD}$", out, re.MULTILINE)
    elif part == "phases":
        assert "| phase | finetune.sft CPU s | plain TRL CPU s |" in out, out
        phases = dict(re.findall(rf"^\| ([^|]+) \| ({_SPREAD}) \| (?:{_SPREAD}|—) \|$", out, re.MULTILINE))
        assert {"imports", "model load", "train", "rest", "total"} <= set(phases), out
        assert float(phases["total"].split()[0]) > 0, phases
    elif part == "memory":
        memory = report["memory"]
        assert memory["params"] > 0 and memory["steps"] >= 1, memory
        for method in ("lora", "qlora"):
            assert memory[method]["peak_mib"] > 0 and memory[method]["model_mib"] > 0, memory
    elif part == "gsm8k":
        gsm8k = report["gsm8k"]
        assert isinstance(gsm8k["train_loss"], float) and gsm8k["train_wall_s"] > 0, gsm8k
        for which in ("base", "trained"):  # gsm8k_think's metrics: shares, plus counts and reply lengths
            shares = {k: v for k, v in gsm8k[which].items() if k.endswith(("accuracy", "_rate"))}
            assert {"accuracy", "format_accuracy"} <= set(shares), gsm8k[which]
            assert all(0 <= v <= 1 for v in shares.values()), gsm8k[which]
    else:
        raise AssertionError(f"no check for bench.bench_sft --part {part}")


def check_eval_overhead(args: list[str], out: str) -> None:
    check_tables(out, ["before", "after"], [("before", "after")])
    rows = re.findall(rf"^\| (first|next) \| (overhead_s|model_s|wall_s) \| {_SPREAD} \| {_SPREAD} \|$", out,
                      re.MULTILINE)
    assert rows == [(w, k) for w in ("first", "next") for k in ("overhead_s", "model_s", "wall_s")], out


def check_startup(args: list[str], out: str) -> None:
    assert re.match(r"python -c pass, \d+ runs per arm and repeat", out), out[:300]
    check_tables(out, ["with the pack", "bare"], [("with the pack", "bare")])


def check_task_index(args: list[str], out: str) -> None:
    check_tables(out, ["full index", "pack-only index"], [("full index", "pack-only index")])


def check_dry_run_extras(args: list[str], out: str) -> None:
    # --smoke resolves the pack alone, offline: its name and version
    versions = re.fullmatch(r"\.\[[\w,]+\] without dependencies: (\{.*\})", out.strip())
    assert versions, out
    assert re.fullmatch(r"\d+(\.\d+)+.*", ast.literal_eval(versions[1])["lm-eval-qa-pack"]), versions[1]


def check_sweep(args: list[str], out: str) -> None:
    if "--overhead" in args:
        sft, sweep = "1 fresh finetune.sft run", "sweep of 1 trials"
        check_tables(out, [sft, sweep], [(sweep, sft)])
        return
    workers1, workers2, unpruned = "1 worker, median pruner", "2 workers, median pruner", "1 worker, no pruner"
    check_tables(out, [workers1, workers2, unpruned], [(workers1, workers2)])
    assert re.search(r"^no pruner / median pruner \(wall, per repeat\): median \d+\.\d+x, range", out, re.MULTILINE)
    for arm in (workers1, workers2, unpruned):
        assert re.search(rf"^{arm}: 1 trials each repeat, pruned median \d+", out, re.MULTILINE), out


def check_checkpoints(args: list[str], out: str) -> None:
    check_tables(out, ["one process", "separate lm_eval"], [("separate lm_eval", "one process")])
    assert re.search(r"^\d+ checkpoints, tasks .*; same results in both arms: True$", out, re.MULTILINE), out
    loads = re.findall(r"^\| (one process|separate lm_eval) \| \d+\.\d+ \(.*\) \| \d+\.\d+% \(.*\) \|$", out, re.MULTILINE)
    assert loads == ["one process", "separate lm_eval"], out


def check_grpo(args: list[str], out: str) -> None:
    check_tables(out, ["finetune.grpo", "plain TRL"], [("plain TRL", "finetune.grpo")])
    ratio = re.search(r"^- \*\*finetune\.grpo / plain TRL steps/s, per repeat: (\d+\.\d+) \(", out, re.MULTILINE)
    assert ratio and float(ratio[1]) > 0, out


CHECKS = {"bench.bench_math_grader": check_math_grader, "bench.bench_rollout": check_rollout,
          "bench.bench_sft": check_sft, "bench.bench_eval_overhead": check_eval_overhead,
          "bench.bench_startup": check_startup, "bench.bench_task_index": check_task_index,
          "bench.dry_run_extras": check_dry_run_extras, "bench.bench_sweep": check_sweep,
          "bench.bench_checkpoints": check_checkpoints, "bench.bench_grpo": check_grpo}


def test_results_record_a_command_for_every_bench():
    modules = {m for m, _ in COMMANDS}
    assert {"bench.bench_math_grader", "bench.bench_rollout", "bench.bench_sft", "bench.bench_startup",
            "bench.bench_eval_overhead"} <= modules, modules
    assert modules <= set(CHECKS), f"no check of what these benches print: {modules - set(CHECKS)}"


@pytest.mark.parametrize(("module", "args"), commands())
@pytest.mark.slow
def test_recorded_command_runs_at_smoke_size(module, args, tmp_path):
    CHECKS[module](args, run_recorded(module, args, tmp_path))


# ---- bench_rollout --eos --------------------------------------------------------------------------------

def test_eos_ends_replies_at_every_token_holding_the_text(tiny_model, tmp_path):
    """``--eos`` makes the served model end replies at the tokens holding its text."""
    from transformers import AutoTokenizer

    vocab = AutoTokenizer.from_pretrained(tiny_model).get_vocab()
    base = json.loads((tiny_model / "generation_config.json").read_text())["eos_token_id"]
    out = _ending_at(tiny_model, ["7"], tmp_path / "eos")
    eos = json.loads((out / "generation_config.json").read_text())["eos_token_id"]
    holding = sorted(i for t, i in vocab.items() if "7" in t)
    assert holding and eos == [base, *holding]
    assert json.loads((tiny_model / "generation_config.json").read_text())["eos_token_id"] == base  # a copy


def test_eos_text_no_token_holds_is_one_line_exit_2(tiny_model, tmp_path, capsys):
    with pytest.raises(SystemExit) as stop:
        _ending_at(tiny_model, ["\u2603"], tmp_path / "eos")
    err = capsys.readouterr().err
    assert stop.value.code == 2 and err.count("\n") == 1 and err.startswith("error: --eos '\u2603'")
    assert not (tmp_path / "eos").exists()  # refused before anything is copied
