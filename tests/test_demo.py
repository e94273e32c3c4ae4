"""The README's demo, shortened with --quick: tiny model -> LoRA fine-tune -> lm-eval of the base and the
adapter on every family (python -m finetune.evaluate) -> leaderboard with the base vs adapter comparison."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

import qa_pack_demo as demo
from leaderboards.render import fmt
from qa_tasks.errors import QAPackError
from tests.toolkit.env import ROOT, lm_eval_env

pytestmark = pytest.mark.heavy(order=6)

ALL_TASKS = [t for tasks in demo.FAMILY_TASKS.values() for t in tasks]
ADAPTER_RESULTS = "eval/recipe-mpr-lora/final"  # python -m finetune.evaluate's folder for the run's final adapter


def _demo(*args: str, timeout: int = 1800) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "qa_pack_demo", *args], capture_output=True, text=True, check=False,
                          cwd=ROOT, env=lm_eval_env(), timeout=timeout)


@pytest.fixture(scope="module")
def quick_demo(tmp_path_factory):
    out = tmp_path_factory.mktemp("demo") / "out"
    proc = _demo("--out", str(out), "--quick")
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    return out, proc


def _md_rows(md: str, section: str) -> list[list[str]]:
    body = md.split(f"## {section}\n", 1)[1].split("\n## ", 1)[0]
    lines = [line for line in body.splitlines() if line.startswith("|")]
    return [[c.strip() for c in line.strip("|").split(" | ")] for line in lines]  # header, ---, rows


@pytest.mark.slow
def test_demo_shows_progress_and_prints_outputs(quick_demo):
    out, proc = quick_demo
    for step in range(1, 5):
        assert f"[{step}/4]" in proc.stdout
    assert "finetune.evaluate" in proc.stdout and " lm_eval run " not in proc.stdout  # the base loaded once
    listed = proc.stdout.split("Outputs:", 1)[1]
    for name in ("LEADERBOARD.md", "eval/base", ADAPTER_RESULTS, "recipe-mpr-lora", "logs"):
        assert str(out / name) in listed
    assert (out / "LEADERBOARD.md").is_file()
    for plot in out.glob("LEADERBOARD_*.png"):
        assert str(plot) in listed


def _results(folder: Path) -> dict:
    (path,) = folder.rglob("results_*.json")
    return json.loads(path.read_text())


@pytest.mark.slow
def test_demo_leaderboard_compares_base_and_adapter_on_every_family(quick_demo):
    out, _ = quick_demo
    md = (out / "LEADERBOARD.md").read_text()
    base, tuned = _results(out / "eval" / "base"), _results(out / ADAPTER_RESULTS)
    assert sorted(base["results"]) == sorted(tuned["results"]) == sorted(ALL_TASKS)
    header, _, *rows = _md_rows(md, "Overview")
    assert header == ["Task", "Metric", "Model", "Rank", "Score [95% CI] (n)", "SE"]
    labels = {"tiny-qwen2", "tiny-qwen2 + recipe-mpr-lora (lora)"}
    assert {(row[0], row[2]) for row in rows} == {(t, m) for t in ALL_TASKS for m in labels}
    for task, metric, label, rank, cell, se in rows:
        results = tuned if "+" in label else base
        assert cell.startswith(fmt(results["results"][task][f"{metric},none"]))
        assert " [" in cell or se == "1 passage: no interval", (task, cell, se)  # with its 95% interval
        assert cell.endswith(f"(n={results['n-samples'][task]['effective']})")
        assert rank in ("1", "2", "1–2")
    head, _ = md.split("## Base vs adapter\n", 1)[1].split("\n|", 1)
    assert "### tiny-qwen2 → tiny-qwen2 + recipe-mpr-lora (lora)" in head  # the pair named once
    header, _, *rows = _md_rows(md, "Base vs adapter")
    compared = {row[header.index("Task")] for row in rows}
    assert compared == set(ALL_TASKS)
    for row in rows:
        task, metric = row[header.index("Task")], row[header.index("Metric")]
        assert row[header.index("Base")].startswith(fmt(base["results"][task][f"{metric},none"]))
        assert row[header.index("Adapter")].startswith(fmt(tuned["results"][task][f"{metric},none"]))
        assert row[header.index("Same setup")] == "yes"
        verdict = row[header.index("Significant")]
        assert verdict in ("yes", "no", "unknown") or verdict.startswith("underpowered"), verdict
    assert "p adjusted by Holm across the " in md
    from tests.test_leaderboards import GITHUB_WIDTH, _md_table_widths

    assert [(h, w) for h, w in _md_table_widths(md) if w > GITHUB_WIDTH] == []  # no table scrolls sideways


@pytest.mark.slow
def test_demo_leaderboard_has_the_training_progression(quick_demo):
    out, _ = quick_demo
    md = (out / "LEADERBOARD.md").read_text()
    body = md.split("## Training progression\n", 1)[1].split("\n## ", 1)[0]
    series = next(part for part in body.split("### ")[1:] if part.split("\n", 1)[0].endswith(" on recipe_mpr_fold0"))
    rows = [[c.strip() for c in line.strip("|").split(" | ")] for line in series.splitlines() if line.startswith("|")]
    steps = [row[0] for row in rows[2:] if row[1] == "acc"]
    assert steps == ["base", "2", "final"]
    assert "Benjamini–Hochberg" in body  # a screening table
    manifest = json.loads((out / "recipe-mpr-lora" / "manifest.json").read_text())
    _, _, adapter_row = _md_rows(md, "Adapters")
    assert adapter_row[0] == "recipe-mpr-lora" and adapter_row[3] == manifest["method"] == "lora"
    for section in ("SQuAD strategies", "Recipe-MPR: accuracy by query type", "Recipe-MPR: position bias",
                    "Math: think/answer format"):
        assert f"## {section}" in md


def test_demo_refuses_a_folder_it_did_not_write(tmp_path):
    (tmp_path / "notes.txt").write_text("mine")
    proc = _demo("--out", str(tmp_path), "--quick", timeout=120)
    assert proc.returncode == 2
    assert proc.stderr.startswith("error: ") and len(proc.stderr.strip().splitlines()) == 1
    assert (tmp_path / "notes.txt").read_text() == "mine"


def test_demo_names_a_missing_family(monkeypatch):
    from qa_tasks.harness import task_index

    known = {t: fam for fam, tasks in demo.FAMILY_TASKS.items() for t in tasks if fam != "math"}
    monkeypatch.setattr(task_index, "pack_tasks", lambda: known)
    with pytest.raises(QAPackError, match=r"math: gsm8k_think, math500_think"):
        demo._check_tasks()


def test_demo_names_missing_extras_before_any_step(monkeypatch):
    """A plain `pip install .` lacks the math and train extras: one line naming them, before the first step."""
    real = demo.importlib.util.find_spec
    monkeypatch.setattr(demo.importlib.util, "find_spec",
                        lambda name, *a: None if name in ("math_verify", "trl") else real(name, *a))
    with pytest.raises(QAPackError, match=r"needs trl, math_verify, which are not installed: "
                                          r"pip install 'lm-eval-qa-pack\[train,math\]'"):
        demo._check_tasks()


@pytest.mark.parametrize(("quick", "groups"), [
    (True, [(ALL_TASKS, 2)]),
    (False, [(["recipe_mpr_fold0", "recipe_mpr_gen_fold0", "squad_v1", "gsm8k_think", "math500_think"], 20),
             (["squad_all_in_one", "squad_batch", "squad_sequential", "squad_collab"], 3)]),
])
def test_demo_limits_passages_harder_than_questions(quick, groups):
    assert demo.plan(quick).eval_groups(ALL_TASKS) == groups
