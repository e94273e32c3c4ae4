"""python -m leaderboards build with hostile sweep folders: a trial value that is not a finite number is shown
as a failed trial with a warning (no crash); a folder that looks like a finetune.sweep folder but has no
sweep.json, given or found below a given folder, stops with one line and exit 2 instead of merging its
trials' validation scores into a model's tables; a sweep below a given folder is read from its sweep.json."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from tests.test_leaderboards import synthetic_run
from tests.toolkit.env import ROOT, lm_eval_env

pytest.importorskip("optuna")

DIST = {"name": "CategoricalDistribution", "attributes": {"choices": [4, 8, 16, 32]}}


def _trial(number: int, value, state: str = "COMPLETE") -> dict:
    return {"number": number, "state": state, "value": value, "params": {"lora_r": [4, 8, 16, 32][number % 4]},
            "distributions": {"lora_r": DIST}, "intermediate": {}, "duration_s": 1.0,
            "output_dir": f"D/trial-{number:04d}"}


def _sweep(folder: Path, trials: list, best: int | None = 0, with_results: bool = True) -> Path:
    """A sweep folder: its sweep.json (``trials`` as given) and trial folders holding lm-eval results."""
    folder.mkdir(parents=True)
    doc = {"study_name": "sweep", "objective": "recipe_mpr/acc", "direction": "maximize", "sampler": "tpe",
           "pruner": "median", "n_trials": len(trials), "validation": {"size": 0.2, "seed": 0},
           "best": None if best is None else {"number": best, "value": 0.1}, "trials": trials}
    (folder / "sweep.json").write_text(json.dumps(doc), encoding="utf-8")  # NaN/Infinity as Python writes them
    if with_results:
        for i in range(2):
            synthetic_run(folder / f"trial-{i:04d}" / "run" / "eval" / "step-1", seed=i,
                          model_args=f"pretrained=m,peft={folder}/trial-{i:04d}/run")
    return folder


def _build(args: list, capfd) -> tuple[int, str, str]:
    from leaderboards.__main__ import main

    code = main(["build", *map(str, args)])
    captured = capfd.readouterr()
    assert "Traceback" not in captured.out + captured.err, captured.err
    return code, captured.out, captured.err


# (id, the trial's value in sweep.json, expected warning)
BAD_VALUES = [
    ("nan", float("nan"), "trial 1 has value nan, not a finite number; shown as failed with no value"),
    ("infinity", float("inf"), "trial 1 has value inf, not a finite number"),
    ("text", "0.5", "trial 1 has value '0.5', not a finite number"),
    ("bool", True, "trial 1 has value True, not a finite number"),
]


@pytest.mark.parametrize("value,warning", [c[1:] for c in BAD_VALUES], ids=[c[0] for c in BAD_VALUES])
def test_a_trial_value_that_is_not_a_number_is_a_failed_trial(value, warning, tmp_path, capfd):
    # the bad trial is also the one sweep.json names best: the best is taken from the kept trials instead
    folder = _sweep(tmp_path / "D", [_trial(0, 0.3), _trial(1, value), _trial(2, 0.6), _trial(3, 0.4)], best=1)
    code, _, err = _build([folder, "-o", tmp_path / "S.md"], capfd)
    assert code == 0 and f"warning: D/sweep.json: {warning}" in err, err
    text = (tmp_path / "S.md").read_text()
    assert warning in text  # the leaderboard says so too
    rows = [ln for ln in text.splitlines() if ln.startswith("| ") and ln[2:3].isdigit() or ln.startswith("| ★")]
    assert rows[0].startswith("| ★ 2 | 16 | 0.600 | complete") and "| 1 | 8 | – | fail | 1.0 |" in rows, rows
    assert "parameter importances" in text


def test_a_trial_entry_without_number_is_left_out(tmp_path, capfd):
    folder = _sweep(tmp_path / "D", [_trial(0, 0.3), {"state": "COMPLETE", "value": 0.9}, _trial(2, 0.6)])
    code, _, err = _build([folder, "-o", tmp_path / "S.md", "--no-plots"], capfd)
    assert code == 0 and "trial entry 1 has no number/state; left out" in err, err
    assert "★ 2 |" in (tmp_path / "S.md").read_text()


def _without_json(root: Path) -> Path:
    folder = _sweep(root / "sweeps" / "D", [_trial(0, 0.3), _trial(1, 0.5)])
    (folder / "sweep.json").unlink()
    return folder


def _lock_only(root: Path) -> Path:
    folder = root / "D"
    synthetic_run(folder / "eval" / "step-1", seed=0, model_args="pretrained=m")
    (folder / ".sweep.lock").touch()
    return folder


# (id, builds the folders and returns what to pass, the folder the error must name)
NO_SWEEP_JSON = [
    ("sweep_folder_given", lambda root: [_without_json(root)], "sweeps/D"),
    ("parent_folder_given", lambda root: [_without_json(root).parent], "sweeps/D"),
    ("beside_a_model_run", lambda root: [synthetic_run(root / "base", 0, "pretrained=m"), _without_json(root)],
     "sweeps/D"),
    ("lock_file_only", lambda root: [_lock_only(root)], "/D"),
]


@pytest.mark.parametrize("make,named", [c[1:] for c in NO_SWEEP_JSON], ids=[c[0] for c in NO_SWEEP_JSON])
def test_a_sweep_folder_without_sweep_json_is_refused(make, named, tmp_path, capfd):
    paths = make(tmp_path / "in")
    code, _, err = _build([*paths, "-o", tmp_path / "S.md", "--no-plots"], capfd)
    assert code == 2 and len(err.strip().splitlines()) == 1 and err.startswith("error: "), err
    assert f"{named} looks like a python -m finetune.sweep folder" in err and "rerun the same" in err
    assert "pass its trial folders (trial-*/run)" in err and not (tmp_path / "S.md").exists()


def test_trial_folders_given_explicitly_are_read_as_runs(tmp_path, capfd):
    folder = _without_json(tmp_path)
    code, _, err = _build([*sorted(folder.glob("trial-*/run")), "-o", tmp_path / "S.md", "--no-plots"], capfd)
    assert code == 0, err
    assert "trial-0000" in (tmp_path / "S.md").read_text()


def test_a_sweep_below_a_given_folder_is_read_from_its_sweep_json(tmp_path, capfd):
    root = tmp_path / "runs"
    synthetic_run(root / "base", 0, "pretrained=m")
    _sweep(root / "sweeps" / "D", [_trial(0, 0.3), _trial(1, 0.5)], best=1)
    code, _, err = _build([root, "-o", tmp_path / "S.md", "--no-plots"], capfd)
    text = (tmp_path / "S.md").read_text()
    assert code == 0 and "## Sweep D (sweep): trials" in text, err
    assert "trial-0000" not in text and "results_" not in err  # the trials' validation scores stay out


def test_the_command_line_prints_one_line(tmp_path):
    folder = _without_json(tmp_path)
    done = subprocess.run([sys.executable, "-m", "leaderboards", "build", str(folder), "-o", str(tmp_path / "S.md")],
                          capture_output=True, text=True, env=lm_eval_env(), cwd=ROOT, timeout=300, check=False)
    assert done.stdout.count("Traceback") + done.stderr.count("Traceback") == 0, done.stderr
    assert done.returncode == 2 and len(done.stderr.strip().splitlines()) == 1, done.stderr
