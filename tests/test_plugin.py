"""Plain ``lm_eval`` finds the pack's tasks: regular wheel and editable installs, user include paths."""

from __future__ import annotations

import re
import subprocess
import sys
import sysconfig
from pathlib import Path

import pytest

from tests.conftest import ROOT, lm_eval_env, run_lm_eval

PACK_TASKS = ("recipe_mpr", "recipe_mpr_gen", "recipe_mpr_fold0")


def _fresh_venv(path: Path) -> Path:
    """A new virtualenv without the pack; the heavy dependencies (torch, lm-eval ...) are borrowed
    from this interpreter's site-packages through a plain path line, which does not run their .pth
    files, so the pack's own hook is active only where the install under test put it."""
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(path)], check=True)
    python = path / "bin" / "python"
    site = subprocess.run([python, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                          capture_output=True, text=True, check=True).stdout.strip()
    Path(site, "borrowed_deps.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    return python


def _install(python: Path, *args: str) -> None:
    # --ignore-installed: the borrowed site-packages may already hold the pack (e.g. tox installs it there);
    # pip must install into the new venv anyway, without touching that copy
    subprocess.run([sys.executable, "-m", "pip", "--python", str(python), "install", "-q", "--no-deps",
                    "--no-build-isolation", "--ignore-installed", *args], check=True, cwd=ROOT)


def _env() -> dict[str, str]:
    env = lm_eval_env()
    env.pop("PYTHONPATH")  # the install under test must be enough on its own
    return env


@pytest.fixture(scope="module", params=["wheel", "editable"])
def installed(request, tmp_path_factory):
    tmp = tmp_path_factory.mktemp(request.param)
    python = _fresh_venv(tmp / "venv")
    if request.param == "wheel":
        subprocess.run([sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "--no-build-isolation",
                        "-w", str(tmp / "dist"), str(ROOT)], check=True)
        _install(python, str(next((tmp / "dist").glob("*.whl"))))
    else:
        _install(python, "-e", str(ROOT))
    return request.param, python, tmp


def _python_lm_eval(python: Path, *args: str, cwd: Path) -> subprocess.CompletedProcess:
    # cwd outside the source tree, so only the install can provide qa_tasks
    return subprocess.run([str(python), "-m", "lm_eval", *args], capture_output=True, text=True, check=False,
                          env=_env(), cwd=cwd, timeout=600)


@pytest.mark.slow
def test_install_lists_validates_and_runs(installed, tiny_model):
    kind, python, tmp = installed
    where = subprocess.run([str(python), "-c", "import qa_tasks.plugin as p; print(p.tasks_dir())"],
                           capture_output=True, text=True, env=_env(), cwd=tmp, check=True).stdout.strip()
    if kind == "wheel":
        assert where.startswith(str(tmp / "venv")), where
    else:
        assert where == str(ROOT / "tasks_yaml")

    listing = _python_lm_eval(python, "ls", "tasks", cwd=tmp)
    assert listing.returncode == 0, listing.stderr[-2000:]
    for task in PACK_TASKS:
        assert f"|{task} " in listing.stdout

    validate = _python_lm_eval(python, "validate", "--tasks", "recipe_mpr,recipe_mpr_gen", cwd=tmp)
    assert validate.returncode == 0, validate.stderr[-2000:]

    out = tmp / "out"
    run = _python_lm_eval(python, "run", "--model", "hf", "--model_args", f"pretrained={tiny_model}",
                          "--tasks", "recipe_mpr", "--limit", "5", "--output_path", str(out), cwd=tmp)
    assert run.returncode == 0, run.stderr[-3000:]
    assert list(out.rglob("results_*.json"))


def test_hook_switch_off(tmp_path):
    """QA_PACK_DISABLE_HOOK=1 leaves lm-eval untouched; by default the hook arms on lm_eval import."""
    code = ("import sys, lm_eval.tasks as t; "
            "print(getattr(t.TaskManager, '__qa_pack_patched__', False), 'qa_tasks._startup' in sys.modules)")
    on = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=False, env=_env(), cwd=tmp_path)
    off = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=False,
                         env={**_env(), "QA_PACK_DISABLE_HOOK": "1"}, cwd=tmp_path)
    assert on.stdout.split() == ["True", "True"], on.stderr
    assert off.stdout.split() == ["False", "False"], off.stderr


def test_hook_imports_nothing_heavy(tmp_path):
    """A process that never imports lm_eval pays for the finder only: no lm_eval, torch or importlib.abc."""
    code = "import sys; print(sorted(m for m in sys.modules if m.split('.')[0] in ('lm_eval', 'torch', 'qa_tasks') or m == 'importlib.abc'))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=False, env=_env(), cwd=tmp_path)
    assert out.stdout.strip() == "['qa_tasks', 'qa_tasks._startup']", out.stdout + out.stderr


@pytest.mark.slow
def test_user_include_path_still_works(tmp_path):
    """The `lm_eval` console script with a user's own --include_path lists both their tasks and the pack's."""
    own = tmp_path / "own_tasks"
    own.mkdir()
    (own / "my_task.yaml").write_text(
        "task: my_own_task\ndataset_path: json\ndataset_kwargs:\n  data_files: x.json\n"
        "output_type: generate_until\ndoc_to_text: q\ndoc_to_target: a\n"
        "metric_list:\n  - metric: exact_match\n")
    proc, _ = run_lm_eval(["ls", "tasks", "--include_path", str(own)], env=_env())
    assert "|my_own_task " in proc.stdout
    assert "|recipe_mpr " in proc.stdout


def test_pack_task_index_holds_the_contract_names_only():
    from qa_tasks.plugin import pack_tasks

    names = pack_tasks()
    contract = {"recipe_mpr", "recipe_mpr_gen", "squad_v1", "squad_all_in_one", "squad_sequential", "squad_batch",
                "squad_collab", "squad_strategies", "math500_think", "gsm8k_think", "hendrycks_math_think"}
    assert contract <= set(names)
    assert all(re.fullmatch(r"[a-z0-9_]+", n) for n in names), sorted(names)  # no YAML list dashes
    assert names["squad_strategies"] == "squad" and names["recipe_mpr_fold3"] == "recipe_mpr"
