"""python -m finetune.sweep end to end on the tiny model: a 4-trial TPE sweep filled by two concurrent workers
on one journal-file study, a 2x2 grid ablation on the default SQLite study stopped by SIGTERM mid-trial and resumed, the objective scored
only on the validation split carved from fold 0's train queries, the leaderboard of a sweep folder; bad
sweep files stop with one line and exit 2 before any training."""

from __future__ import annotations

import itertools
import json
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from tests.toolkit.env import ROOT, lm_eval_env
from tests.toolkit.lm_eval_runs import run_command

pytestmark = pytest.mark.heavy(order=1)

optuna = pytest.importorskip("optuna")

BASE = {"task": "recipe_mpr", "fold": 0, "validation_size": 0.2, "validation_seed": 3,
        "per_device_train_batch_size": 2, "gradient_accumulation_steps": 1, "warmup_steps": 0,
        "logging_steps": 1, "disable_tqdm": True, "max_length": 256, "gradient_checkpointing": False,
        "max_steps": 2, "save_steps": 1, "eval_steps": 1, "eval_limit": 6, "report_to": "none",
        "eval_tasks": "recipe_mpr_fold0"}  # the base's own eval tasks: replaced by the objective in trials
TPE = {"objective": "recipe_mpr/acc", **BASE,
       "search_space": {"learning_rate": {"log_uniform": [1.0e-4, 5.0e-2]}, "lora_r": [4, 8]}}
GRID = {"objective": "recipe_mpr/acc", "pruner": "none", **BASE,
        "search_space": {"lora_r": [4, 8], "learning_rate": [1.0e-3, 3.0e-2]}}


def _write(path: Path, doc: dict) -> Path:
    path.write_text(yaml.safe_dump(doc), encoding="utf-8")
    return path


def _cmd(config: Path, model: Path, out: Path, *extra: str) -> list[str]:
    return [sys.executable, "-m", "finetune.sweep", "--config", str(config), "--model_name_or_path", str(model),
            "--output_dir", str(out), *extra]


def _popen(cmd: list[str], log: Path) -> subprocess.Popen:
    return subprocess.Popen(cmd, stdout=log.open("w"), stderr=subprocess.STDOUT, env=lm_eval_env(), cwd=ROOT)


def _sweep(out: Path) -> dict:
    return json.loads((out / "sweep.json").read_text())


@pytest.fixture(scope="module")
def tpe(tiny_model, tmp_path_factory):
    """Two workers started together on one journal-file study of 4 trials, both with --seed 0, the median
    pruner judging from the second trial on."""
    root = tmp_path_factory.mktemp("tpe")
    config, out = _write(root / "sweep.yaml", {**TPE, "pruner": {"median": {"n_startup_trials": 1}}}), root / "D"
    cmd = _cmd(config, tiny_model, out, "--n_trials", "4", "--sampler", "tpe", "--seed", "0",
               "--storage", f"journal:{root / 'study.log'}")
    procs = [_popen(cmd, root / f"worker{i}.log") for i in range(2)]
    codes = [p.wait(timeout=900) for p in procs]
    logs = [(root / f"worker{i}.log").read_text() for i in range(2)]
    assert codes == [0, 0], "\n".join(log[-3000:] for log in logs)
    return {"out": out, "logs": logs, "model": tiny_model, "root": root}


@pytest.fixture(scope="module")
def grid(tiny_model, tmp_path_factory):
    """A 2x2 grid: SIGTERM while the second trial trains, then the same command again."""
    root = tmp_path_factory.mktemp("grid")
    config, out = _write(root / "sweep.yaml", GRID), root / "D"
    cmd = _cmd(config, tiny_model, out, "--sampler", "grid")
    proc = _popen(cmd, root / "first.log")
    deadline = time.time() + 600
    while not list((out / "trial-0001" / "run").glob("checkpoint-1")):  # the second trial is training
        assert proc.poll() is None and time.time() < deadline, (root / "first.log").read_text()[-3000:]
        time.sleep(0.1)
    proc.send_signal(signal.SIGTERM)
    code = proc.wait(timeout=120)
    stopped = _sweep(out)
    resumed = run_command(cmd, lm_eval_env(), ROOT)
    assert resumed.returncode == 0, resumed.stdout[-2000:] + resumed.stderr[-3000:]
    return {"out": out, "code": code, "stopped": stopped, "first": (root / "first.log").read_text(),
            "resumed": resumed, "model": tiny_model}


@pytest.mark.slow
def test_two_workers_fill_one_study_without_duplicates(tpe):
    doc = _sweep(tpe["out"])
    trials = doc["trials"]
    assert sorted(t["number"] for t in trials) == [0, 1, 2, 3]
    assert all(t["state"] in ("COMPLETE", "PRUNED") for t in trials), trials
    assert len({t["output_dir"] for t in trials}) == 4
    # the same --seed in both workers: still four different draws (one seed per trial number)
    assert len({json.dumps(t["params"], sort_keys=True) for t in trials}) == 4, [t["params"] for t in trials]
    assert all((Path(t["output_dir"]) / "run" / "run_config.json").is_file() for t in trials)
    # each worker ran at least one trial and printed one line per trial it ran
    lines = [[ln for ln in log.splitlines() if ln.startswith("[sweep] trial ")] for log in tpe["logs"]]
    assert sorted(int(ln.split()[2]) for ln in lines[0] + lines[1]) == [0, 1, 2, 3]
    assert all(lines), lines
    assert not any("Trial 0 finished" in log or "[I 20" in log for log in tpe["logs"])  # Optuna kept quiet


@pytest.mark.slow
def test_every_evaluation_is_reported_and_the_best_is_picked(tpe):
    doc = _sweep(tpe["out"])
    done = [t for t in doc["trials"] if t["state"] == "COMPLETE"]
    assert done and all(set(t["intermediate"]) == {"1", "2"} for t in done)
    assert all(t["value"] == t["intermediate"]["2"] for t in done)
    assert doc["best"]["value"] == max(t["value"] for t in done)
    assert doc["direction"] == "maximize" and doc["objective"] == "recipe_mpr/acc"
    assert doc["pruner"] == "median" and doc["pruner_args"] == {"n_startup_trials": 1}
    assert all("4 trials, tpe sampler, median (n_startup_trials=1) pruner;" in log for log in tpe["logs"])


@pytest.mark.slow
def test_best_yaml_is_a_ready_finetune_config(tpe):
    from finetune.config import SftParser

    doc = _sweep(tpe["out"])
    text = (tpe["out"] / "best.yaml").read_text()
    config = yaml.safe_load(text)
    assert "validation_size" not in config and config["eval_tasks"] == "recipe_mpr_fold0"
    assert {k: config[k] for k in doc["best"]["params"]} == doc["best"]["params"]
    _, lora, sft = SftParser().parse(["--config", str(tpe["out"] / "best.yaml"), "--model_name_or_path", "m",
                                      "--output_dir", "x"])
    assert lora.lora_r == doc["best"]["params"]["lora_r"]
    assert sft.learning_rate == pytest.approx(doc["best"]["params"]["learning_rate"])
    final = "".join(tpe["logs"])
    assert f"python -m finetune.sft --config {tpe['out'] / 'best.yaml'}" in final


@pytest.mark.slow
def test_only_the_carved_validation_split_is_scored(tpe, grid):
    from qa_tasks.recipe_mpr import load_folds

    train, test = (set(part) for part in load_folds()[0])
    scored = set()
    for out in (tpe["out"], grid["out"]):
        for path in out.glob("trial-*/run/eval/step-*/samples_*.jsonl"):
            scored |= {json.loads(line)["doc"]["idx"] for line in path.read_text().splitlines() if line.strip()}
        manifest = json.loads(next(out.glob("trial-*/run/manifest.json")).read_text())
        validation = manifest["data"]["validation"]
        assert validation["seed"] == 3 and validation["n_items"] == round(0.2 * len(train))
        assert manifest["data"]["n_examples"] == len(train) - validation["n_items"]
    assert scored and not scored & test
    assert scored <= train
    assert _sweep(tpe["out"])["validation"]["n_items"] == round(0.2 * len(train))


@pytest.mark.slow
def test_sigterm_keeps_finished_trials_and_resume_completes_the_grid(grid):
    assert grid["code"] == 143, grid["first"][-2000:]
    stopped = {t["number"]: t for t in grid["stopped"]["trials"]}
    assert stopped[0]["state"] == "COMPLETE" and stopped[1]["state"] == "FAIL"
    assert "rerun the same command to resume" in grid["first"] and "Traceback" not in grid["first"]
    trials = _sweep(grid["out"])["trials"]
    done = [t for t in trials if t["state"] == "COMPLETE"]
    combos = {(t["params"]["lora_r"], t["params"]["learning_rate"]) for t in done}
    assert not (grid["out"].parent / "study.log").exists() and (grid["out"] / "study.db").is_file()
    assert len(done) == 4 and combos == set(itertools.product([4, 8], [1.0e-3, 3.0e-2]))
    kept = next(t for t in trials if t["number"] == 0)
    assert kept["value"] == stopped[0]["value"] and kept["duration_s"] == stopped[0]["duration_s"]
    assert [t["retry_of"] for t in trials if "retry_of" in t] == [1]
    assert "trial 0 " not in grid["resumed"].stdout  # not run again


@pytest.mark.slow
def test_leaderboard_of_a_sweep_folder(tpe, tmp_path):
    from leaderboards.__main__ import main

    assert main(["build", str(tpe["out"]), "-o", str(tmp_path / "SWEEP.md")]) == 0
    text = (tmp_path / "SWEEP.md").read_text()
    doc = _sweep(tpe["out"])
    assert "## Sweep D (sweep): trials" in text and "| trial | learning_rate | lora_r | recipe_mpr/acc |" in text
    table = [ln for ln in text.splitlines() if ln.startswith("| ") and ln[2].isdigit() or ln.startswith("| ★")]
    assert len(table) == 4 and table[0].startswith(f"| ★ {doc['best']['number']} |")
    assert "parameter importances" in text or "importances: not computable" in text
    assert "tpe sampler, median (n_startup_trials=1) pruner." in text
    pngs = sorted(p.name for p in tmp_path.glob("SWEEP_sweep_*.png"))
    assert len(pngs) == 2 and pngs[1].endswith("_trials.png")
    assert "trial-0000" not in text  # the trials' validation evaluations are not model results


@pytest.mark.parametrize("importances_values,expected", [([0.5, 0.5], False), ([0.2, 0.6], True)])
def test_importances_need_varying_values(importances_values, expected):
    from leaderboards.sweep import importances

    dist = {"name": "FloatDistribution", "attributes": {"low": 1e-4, "high": 1e-1, "log": True, "step": None}}
    trials = [{"number": i, "state": "COMPLETE", "value": v, "params": {"learning_rate": 10 ** -(i % 3 + 1),
                                                                         "lora_r": 4},
               "distributions": {"learning_rate": dist, "lora_r": {"name": "CategoricalDistribution",
                                                                   "attributes": {"choices": [4, 8]}}}}
              for i, v in enumerate(importances_values * 2)]
    found = importances({"trials": trials, "direction": "maximize"})
    assert bool(found) is expected
    if expected:
        assert sum(found.values()) == pytest.approx(1.0)


BAD = [
    ("unknown_field", {**TPE, "lerning_rate": 1e-3}, [], "unknown field(s) lerning_rate"),
    ("unknown_space_field", {**TPE, "search_space": {"lora_rank": [4, 8]}}, [], "lora_rank are not finetune.sft"),
    ("empty_grid", {**GRID, "search_space": {"lora_r": []}}, ["--sampler", "grid"], "empty list of values"),
    ("grid_of_a_range", TPE, ["--sampler", "grid"], "learning_rate is a range"),
    ("metric_not_produced", {**TPE, "objective": "recipe_mpr/f1"}, [], "does not produce metric 'f1'"),
    ("objective_on_test_split", {**TPE, "objective": "recipe_mpr_fold0/acc"}, [],
     "has no document among the"),
    ("storage_driver_missing", TPE, ["--storage", "mysql://u:secret@localhost/db"],
     "database driver is not installed"),
    ("storage_unreachable", TPE, ["--storage", "postgresql://u:secret@127.0.0.1:1/db"],
     "cannot open the study database"),
    ("journal_in_missing_folder", TPE, ["--storage", "journal:no/such/folder/study.log"],
     "does not exist; create it"),
    ("space_value_rejected", {**TPE, "search_space": {"lora_dropout": [0.0, 1.5]}}, [],
     "lora_dropout=1.5 must be in [0, 1)"),
    ("space_bound_rejected", {**TPE, "search_space": {"lora_r": {"int": [0, 8]}}}, [],
     "lora_r=0 must be > 0"),
    ("space_target_rejected", {**TPE, "search_space": {"lora_target_modules": ["q_proj", "qq_proj"]}}, [],
     "qq_proj match no module"),
]


@pytest.mark.parametrize("name,doc,extra,message", BAD, ids=[b[0] for b in BAD])
def test_bad_input_is_one_line_exit_2_before_training(name, doc, extra, message, tiny_model, tmp_path, capsys):
    from finetune.sweep import main

    out = tmp_path / "D"
    code = main(["--config", str(_write(tmp_path / "s.yaml", doc)), "--model_name_or_path", str(tiny_model),
                 "--output_dir", str(out), *extra])
    err = capsys.readouterr().err.strip()
    assert code == 2 and message in err and len(err.splitlines()) == 1, err
    assert "secret" not in err and "Traceback" not in err
    assert not list(out.glob("trial-*"))


@pytest.mark.parametrize("size,expected_items", [(0.2, 80), (25, 25)])
def test_carve_is_seeded_and_disjoint(size, expected_items):
    from finetune.data import build_training_data
    from finetune.validation import carve

    data = build_training_data("recipe_mpr", 0)
    train, held = carve(data, size, seed=7)
    _, held_again = carve(data, size, seed=7)
    _, other = carve(data, size, seed=8)
    assert len(set(held.keys)) == expected_items and held.keys == held_again.keys and held.keys != other.keys
    assert not set(train.keys) & set(held.keys) and len(train.rows) + len(held.rows) == len(data.rows)
    assert train.extra["validation"]["n_items"] == expected_items


@pytest.mark.parametrize("path", sorted((ROOT / "finetune" / "configs" / "sweeps").glob("*.yaml")),
                         ids=lambda p: p.stem)
def test_example_sweep_configs_load(path):
    from finetune.sweep_space import load_spec

    spec = load_spec(path, "tpe")
    assert spec.objective.direction == "maximize" and spec.space and spec.base["validation_size"] > 0


@pytest.mark.parametrize("value,override,expected", [
    (None, None, ("median", {})),
    ("none", None, ("none", {})),
    ("none", "median", ("median", {})),
    ({"median": {"n_startup_trials": 1, "n_warmup_steps": 4}}, None,
     ("median", {"n_startup_trials": 1, "n_warmup_steps": 4})),
    ({"median": {"n_startup_trials": 1}}, "none", ("none", {})),
    ({"median": None}, None, ("median", {})),
])
def test_pruner_kind_and_arguments(value, override, expected):
    from finetune.sweep_space import parse_pruner

    assert parse_pruner(value, override, "f.yaml") == expected


@pytest.mark.parametrize("args,pruned", [({}, False), ({"n_startup_trials": 1}, True)])
def test_pruner_arguments_reach_optuna(args, pruned, tmp_path):
    """The file's MedianPruner arguments are the study's: with one startup trial a trial below the first one's
    value is pruned at its first report; Optuna's default (5 startup trials) lets it run."""
    from finetune.sweep_space import SweepSpec

    spec = SweepSpec(tmp_path, {}, None, {}, None, pruner_args=args)
    study = optuna.create_study(direction="maximize", pruner=spec.make_pruner())
    first = study.ask()
    first.report(0.5, 2)
    study.tell(first, 0.5)
    second = study.ask()
    second.report(0.1, 2)
    assert bool(second.should_prune()) is pruned
