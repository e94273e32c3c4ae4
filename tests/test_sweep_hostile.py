"""python -m finetune.sweep against hostile input: every bad sweep file, option or storage stops with one line
``error: ...``, exit 2, no traceback, before any trial trains, and leaves an earlier sweep in the output
folder (its study.db and sweep.json) as it was. A worker killed with SIGKILL and a worker stopped by SIGTERM
on the default SQLite study: the next run fails or re-runs what they left and reaches --n_trials."""

from __future__ import annotations

import hashlib
import json
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from tests.test_sweep import TPE
from tests.toolkit.env import ROOT, lm_eval_env
from tests.toolkit.lm_eval_runs import run_command

optuna = pytest.importorskip("optuna")

RANGE = {"learning_rate": {"log_uniform": [1.0e-4, 5.0e-2]}}


def _space(**entries) -> dict:
    return {**TPE, "search_space": entries}


# (id, sweep file (a dict, or raw text), expected part of the error line)
BAD_CONFIGS = [
    ("yaml_syntax", "objective: [unclosed\n  : :", "is not valid YAML"),
    ("yaml_list", "- 1\n- 2\n", "must be a YAML mapping"),
    ("yaml_empty", "", "must be a YAML mapping"),
    ("yaml_binary", b"\xff\xfe\x00bad", "is not UTF-8 text"),
    ("objective_missing", {k: v for k, v in TPE.items() if k != "objective"}, "objective is missing"),
    ("objective_number", {**TPE, "objective": 3}, "objective must be '<task>/<metric>'"),
    ("objective_empty", {**TPE, "objective": ""}, "objective must be '<task>/<metric>'"),
    ("objective_two_slashes", {**TPE, "objective": "recipe_mpr/acc/x"}, "objective must be '<task>/<metric>'"),
    ("objective_unknown_task", {**TPE, "objective": "nosuch/acc"}, "'nosuch' is not a single lm-eval-qa-pack"),
    ("objective_unknown_metric", {**TPE, "objective": "recipe_mpr/f1"}, "does not produce metric 'f1'"),
    ("objective_unknown_filter", {**TPE, "objective": "recipe_mpr/acc,nosuchfilter"},
     "has no filter 'nosuchfilter'; its filters: none"),
    ("objective_eval_split_filter", {**TPE, "objective": "recipe_mpr_gen_fold0/acc,nosuchfilter"},
     "has no filter 'nosuchfilter'"),
    ("space_missing", {k: v for k, v in TPE.items() if k != "search_space"}, "search_space is missing or empty"),
    ("space_empty", _space(), "search_space is missing or empty"),
    ("space_a_list", {**TPE, "search_space": [1, 2]}, "search_space is missing or empty"),
    ("space_unknown_field", _space(lerning_rate=[1e-3]), "lerning_rate are not finetune.sft options"),
    ("space_fixed_field", _space(output_dir=["a", "b"]), "output_dir are set by the sweep itself"),
    ("space_not_a_distribution", _space(lora_r={"normal": [0, 1]}), "must be a list of values or one of"),
    ("space_two_kinds", _space(lora_r={"int": [4, 8], "categorical": [4]}), "categorical beside int"),
    ("step_zero", _space(lora_alpha={"int": [8, 64], "step": 0}), "step must be a positive integer, got 0"),
    ("step_negative", _space(lora_alpha={"int": [8, 64], "step": -8}), "step must be a positive integer, got -8"),
    ("step_fraction", _space(lora_alpha={"int": [8, 64], "step": 2.5}), "step must be a positive integer"),
    ("step_text", _space(lora_alpha={"int": [8, 64], "step": "x"}), "step must be a positive integer, got 'x'"),
    ("step_on_uniform", _space(lora_dropout={"uniform": [0.0, 0.2], "step": 0.1}), "step beside uniform"),
    ("range_bool", _space(learning_rate={"uniform": [True, 5]}), "needs [low, high], finite numbers"),
    ("range_inf", _space(learning_rate={"uniform": [1e-4, float("inf")]}), "needs [low, high], finite numbers"),
    ("range_nan", _space(learning_rate={"uniform": [1e-4, float("nan")]}), "needs [low, high], finite numbers"),
    ("range_reversed", _space(learning_rate={"uniform": [1e-2, 1e-4]}), "with low < high"),
    ("range_three_ends", _space(learning_rate={"uniform": [1e-4, 1e-3, 1e-2]}), "needs [low, high]"),
    ("int_range_fraction", _space(lora_r={"int": [4.5, 8]}), "needs [low, high], integers"),
    ("log_uniform_zero", _space(learning_rate={"log_uniform": [0, 1e-3]}), "log_uniform needs low > 0"),
    ("categorical_empty", _space(lora_r=[]), "empty list of values"),
    ("categorical_mapping", _space(lora_r=[{"a": 1}]), "is not a number, string or bool"),
    ("categorical_repeated", _space(lora_r=[4, 8, 4]), "lists 4 twice"),
    ("categorical_wrong_type", _space(lora_r=["big", "small"]), "invalid int value: 'big'"),
    ("dropout_range_reaching_5", _space(lora_dropout={"uniform": [0.0, 5]}), "lora_dropout=5.0 must be in [0, 1)"),
    ("int_bound_rejected", _space(lora_r={"int": [0, 8]}), "lora_r=0 must be > 0"),
    ("base_wrong_type", {**TPE, "max_steps": "many"}, "--max_steps/--max-steps: invalid int value: 'many'"),
    ("unknown_base_field", {**TPE, "lerning_rate": 1e-3}, "unknown field(s) lerning_rate"),
    ("pruner_unknown", {**TPE, "pruner": "hyperband"}, "pruner='hyperband' is not valid"),
    ("pruner_number", {**TPE, "pruner": 3}, "pruner=3 is not valid"),
    ("pruner_args_unknown", {**TPE, "pruner": {"median": {"n_startup": 2}}},
     "is refused by optuna.pruners.MedianPruner: "),
    ("pruner_args_negative", {**TPE, "pruner": {"median": {"n_startup_trials": -1}}},
     "is refused by optuna.pruners.MedianPruner: Number of startup trials cannot be negative"),
    ("pruner_args_fraction", {**TPE, "pruner": {"median": {"n_warmup_steps": 1.5}}},
     "pruner.median.n_warmup_steps must be a whole number"),
    ("pruner_args_of_unknown_kind", {**TPE, "pruner": {"hyperband": {"min_resource": 1}}},
     "pruner='hyperband' is not valid"),
    ("direction_in_file", {**TPE, "direction": "up"}, "unknown field(s) direction"),
    ("sampler_in_file", {**TPE, "sampler": "cmaes"}, "unknown field(s) sampler"),
    ("env_not_a_mapping", {**TPE, "env": [1, 2]}, "env must map variable names to values"),
]

# (id, arguments replacing or added to the good command ({config}, {out}, {tmp} filled in), expected part)
BAD_ARGS = [
    ("n_trials_zero", ["--n_trials", "0"], "--n_trials=0 must be > 0"),
    ("n_trials_negative", ["--n_trials", "-3"], "--n_trials=-3 must be > 0"),
    ("n_trials_text", ["--n_trials", "many"], "invalid int value: 'many'"),
    ("sampler_unknown", ["--sampler", "cmaes"], "invalid choice: 'cmaes'"),
    ("pruner_unknown", ["--pruner", "hyperband"], "invalid choice: 'hyperband'"),
    ("heartbeat_zero", ["--heartbeat", "0"], "--heartbeat=0 must be > 0 seconds"),
    ("seed_text", ["--seed", "x"], "invalid int value: 'x'"),
    ("unknown_option", ["--lerning_rate", "1e-3"], "unrecognized arguments: --lerning_rate"),
    ("config_missing_file", ["--config", "{tmp}/nosuch.yaml"], "cannot read sweep config"),
    ("config_a_folder", ["--config", "{tmp}"], "is a folder; pass the sweep YAML file"),
    ("output_dir_a_file", ["--output_dir", "{out}/sweep.json"], "is a file; choose a folder"),
    ("output_dir_below_a_file", ["--output_dir", "{out}/sweep.json/D"], "sweep.json is a file, not a folder"),
    ("storage_not_a_url", ["--storage", "notaurl"], "is not a database URL Optuna can use"),
    ("storage_unknown_scheme", ["--storage", "http://host/db"], "is not a database URL Optuna can use"),
    ("storage_sqlite_in_memory", ["--storage", "sqlite://"], "keeps the study in memory only"),
    ("storage_sqlite_missing_folder", ["--storage", "sqlite:///{tmp}/no/such/study.db"],
     "cannot open the study database"),
    ("storage_journal_no_path", ["--storage", "journal:"], "needs a file path"),
    ("storage_journal_a_folder", ["--storage", "journal:{tmp}"], "is a folder; name a file"),
    ("study_of_another_config", ["--config", "{tmp}/other.yaml"], "was started with"),
]


def _digest(folder: Path) -> dict[str, str]:
    """Every file's hash; the workers' lock file (empty, created when a study is opened) aside."""
    return {str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*")) if p.is_file() and p.name != ".sweep.lock"}


@pytest.fixture(scope="module")
def earlier(tmp_path_factory) -> Path:
    """A sweep folder holding an earlier study (one finished trial) and its sweep.json."""
    folder = tmp_path_factory.mktemp("earlier") / "D"
    folder.mkdir()
    study = optuna.create_study(study_name="sweep", storage=f"sqlite:///{folder / 'study.db'}", direction="maximize")
    study.set_user_attr("identity", {"objective": "recipe_mpr/acc", "search_space": ["learning_rate", "lora_r"],
                                     "sampler": "tpe"})
    study.add_trial(optuna.trial.create_trial(
        params={"lora_r": 4}, distributions={"lora_r": optuna.distributions.CategoricalDistribution([4, 8])},
        value=0.5))
    (folder / "sweep.json").write_text(json.dumps({"objective": "recipe_mpr/acc", "trials": []}), encoding="utf-8")
    (folder / "trial-0000").mkdir()
    (folder / "trial-0000" / "config.yaml").write_text("lora_r: 4\n", encoding="utf-8")
    return folder


def _run_bad(args: list[str], tmp_path: Path, earlier: Path, capfd) -> str:
    from finetune.sweep import main

    out = tmp_path / "D"
    shutil.copytree(earlier, out)
    before = _digest(out)
    fill = {"config": str(tmp_path / "s.yaml"), "out": str(out), "tmp": str(tmp_path)}
    args = [a.format(**fill) for a in args]
    base = {"--config": fill["config"], "--model_name_or_path": str(tmp_path / "model"), "--output_dir": str(out)}
    for flag in base:
        if flag in args:  # the case replaces this option
            i = args.index(flag)
            base[flag] = args.pop(i + 1)
            args.pop(i)
    code = main([x for kv in base.items() for x in kv] + args)
    captured = capfd.readouterr()
    err = captured.err.strip()
    assert "Traceback" not in captured.out + captured.err, err
    assert code == 2 and len(err.splitlines()) == 1 and err.startswith("error: "), (code, err)
    assert _digest(out) == before and not (out / "trial-0001").exists(), err
    return err


@pytest.fixture
def model(tiny_model, tmp_path) -> Path:
    (tmp_path / "model").symlink_to(tiny_model)
    return tiny_model


@pytest.mark.parametrize("doc,expected", [c[1:] for c in BAD_CONFIGS], ids=[c[0] for c in BAD_CONFIGS])
def test_bad_sweep_file_is_one_line_exit_2(doc, expected, model, earlier, tmp_path, capfd):
    path = tmp_path / "s.yaml"
    if isinstance(doc, bytes):
        path.write_bytes(doc)
    else:
        path.write_text(doc if isinstance(doc, str) else yaml.safe_dump(doc), encoding="utf-8")
    assert expected in _run_bad([], tmp_path, earlier, capfd)


@pytest.mark.parametrize("args,expected", [c[1:] for c in BAD_ARGS], ids=[c[0] for c in BAD_ARGS])
def test_bad_option_is_one_line_exit_2(args, expected, model, earlier, tmp_path, capfd):
    (tmp_path / "s.yaml").write_text(yaml.safe_dump(TPE), encoding="utf-8")
    (tmp_path / "other.yaml").write_text(yaml.safe_dump(_space(**RANGE)), encoding="utf-8")
    assert expected in _run_bad(list(args), tmp_path, earlier, capfd)


@pytest.mark.parametrize("case", ["step_zero", "output_dir_below_a_file"])
def test_the_command_line_itself_prints_one_line(case, tiny_model, earlier, tmp_path):
    """The real ``python -m finetune.sweep`` process: one line on stderr, exit 2, no traceback."""
    out = tmp_path / "D"
    shutil.copytree(earlier, out)
    before = _digest(out)
    doc = {c[0]: c[1] for c in BAD_CONFIGS}["step_zero"] if case == "step_zero" else TPE
    (tmp_path / "s.yaml").write_text(yaml.safe_dump(doc), encoding="utf-8")
    target = out if case == "step_zero" else out / "sweep.json" / "D"
    done = run_command([sys.executable, "-m", "finetune.sweep", "--config", tmp_path / "s.yaml",
                        "--model_name_or_path", tiny_model, "--output_dir", target], lm_eval_env(), ROOT, timeout=300)
    assert done.stdout.count("Traceback") + done.stderr.count("Traceback") == 0, done.stderr
    assert done.returncode == 2 and len(done.stderr.strip().splitlines()) == 1, done.stderr
    assert done.stderr.startswith("error: ") and _digest(out) == before


# --- killed and stopped workers on the default SQLite study (trains: a few 2-step trials of the tiny model)

def _wait_training(proc: subprocess.Popen, run_dir_glob: str, out: Path, log: Path) -> Path:
    deadline = time.time() + 600
    while True:
        found = sorted(out.glob(run_dir_glob))
        if found:
            return found[0]
        assert proc.poll() is None and time.time() < deadline, log.read_text()[-3000:]
        time.sleep(0.1)


@pytest.fixture(scope="module")
def killed_then_stopped(tiny_model, tmp_path_factory):
    """Worker A is killed with SIGKILL while trial 0 trains; worker B (the same command) is stopped by SIGTERM
    while its first trial trains; worker C runs the same command to the end."""
    root = tmp_path_factory.mktemp("killed")
    config, out = root / "sweep.yaml", root / "D"
    config.write_text(yaml.safe_dump({**TPE, "pruner": "none"}), encoding="utf-8")
    cmd = [sys.executable, "-m", "finetune.sweep", "--config", str(config), "--model_name_or_path", str(tiny_model),
           "--output_dir", str(out), "--n_trials", "2", "--sampler", "random", "--seed", "0", "--heartbeat", "1"]
    logs = {name: root / f"{name}.log" for name in "AB"}
    a = subprocess.Popen(cmd, stdout=logs["A"].open("w"), stderr=subprocess.STDOUT, env=lm_eval_env(), cwd=ROOT)
    _wait_training(a, "trial-0000/run/checkpoint-1", out, logs["A"])
    a.send_signal(signal.SIGKILL)
    a.wait(timeout=30)
    b = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=logs["B"].open("w"), env=lm_eval_env(), cwd=ROOT)
    _wait_training(b, "trial-000[1-9]/run/checkpoint-1", out, logs["B"])
    b.send_signal(signal.SIGTERM)
    code_b = b.wait(timeout=120)
    c = run_command(cmd, lm_eval_env(), ROOT)
    return {"out": out, "code_b": code_b, "err_b": logs["B"].read_text(), "c": c}


@pytest.mark.slow
def test_sigterm_is_one_line_and_exit_143(killed_then_stopped):
    err = killed_then_stopped["err_b"]
    assert killed_then_stopped["code_b"] == 143, err[-2000:]
    assert err.count("Traceback") == 0, err[-2000:]
    assert [ln for ln in err.splitlines() if ln.strip()] == [err.strip()], err  # one line
    assert err.startswith("[sweep] stopped by SIGTERM") and "rerun the same command to resume" in err


@pytest.mark.slow
def test_rerun_after_a_killed_worker_reaches_n_trials(killed_then_stopped):
    c = killed_then_stopped["c"]
    assert c.returncode == 0 and "Traceback" not in c.stdout + c.stderr, c.stdout[-2000:] + c.stderr[-2000:]
    doc = json.loads((killed_then_stopped["out"] / "sweep.json").read_text())
    trials = {t["number"]: t for t in doc["trials"]}
    assert sum(t["state"] == "COMPLETE" for t in trials.values()) == 2, doc["trials"]
    assert not [t for t in trials.values() if t["state"] in ("RUNNING", "WAITING")]  # sweep.json tells the truth
    assert trials[0]["state"] == "FAIL" and "error" not in trials[0]  # the killed worker's trial
    # every interrupted trial (killed or stopped) was re-run with its own values
    for t in trials.values():
        if t["state"] == "FAIL":
            rerun = [r for r in trials.values() if r.get("retry_of") == t["number"]]
            assert len(rerun) == 1 and rerun[0]["params"] == t["params"], doc["trials"]
    assert doc["best"]["number"] in trials and trials[doc["best"]["number"]]["state"] == "COMPLETE"
