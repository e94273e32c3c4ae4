"""Plain ``lm_eval`` finds the pack's tasks: regular wheel and editable installs, user include paths."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import sysconfig
from pathlib import Path

import pytest

from qa_tasks.errors import QAPackError
from tests.toolkit.env import ROOT, lm_eval_env
from tests.toolkit.lm_eval_runs import run_lm_eval

pytestmark = pytest.mark.heavy(order=4)

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


OWN_TASK = ("task: my_own_task\ndataset_path: json\ndataset_kwargs:\n  data_files: x.json\n"
            "output_type: generate_until\ndoc_to_text: q\ndoc_to_target: a\n"
            "metric_list:\n  - metric: exact_match\n")


@pytest.fixture(scope="module", params=["wheel", "editable"])
def installed(request, tmp_path_factory):
    """The pack installed into a fresh venv, and that venv's full `lm_eval ls tasks` (lm-eval's ~14,700
    entries, the slow part): under the wheel with a user's own --include_path, under the editable without."""
    tmp = tmp_path_factory.mktemp(request.param)
    python = _fresh_venv(tmp / "venv")
    if request.param == "wheel":
        subprocess.run([sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "--no-build-isolation",
                        "-w", str(tmp / "dist"), str(ROOT)], check=True)
        _install(python, str(next((tmp / "dist").glob("*.whl"))))
        own = tmp / "own_tasks"
        own.mkdir()
        (own / "my_task.yaml").write_text(OWN_TASK)
        listing = _python_lm_eval(python, "ls", "tasks", "--include_path", str(own), cwd=tmp)
    else:
        _install(python, "-e", str(ROOT))
        listing = _python_lm_eval(python, "ls", "tasks", cwd=tmp)
    assert listing.returncode == 0, listing.stderr[-2000:]
    return request.param, python, tmp, listing.stdout


def _python_lm_eval(python: Path, *args: str, cwd: Path) -> subprocess.CompletedProcess:
    # cwd outside the source tree, so only the install can provide qa_tasks
    return subprocess.run([str(python), "-m", "lm_eval", *args], capture_output=True, text=True, check=False,
                          env=_env(), cwd=cwd, timeout=600)


@pytest.mark.slow
def test_install_lists_validates_and_runs(installed, tiny_model):
    kind, python, tmp, listing = installed
    where = subprocess.run([str(python), "-c", "from qa_tasks.harness import task_index as p; print(p.tasks_dir())"],
                           capture_output=True, text=True, env=_env(), cwd=tmp, check=True).stdout.strip()
    if kind == "wheel":
        assert where.startswith(str(tmp / "venv")), where
    else:
        assert where == str(ROOT / "tasks_yaml")

    for task in PACK_TASKS:
        assert f"|{task} " in listing
    assert "|hellaswag " in listing  # lm-eval's own tasks stay listed beside the pack's

    validate = _python_lm_eval(python, "validate", "--tasks", "recipe_mpr,recipe_mpr_gen", cwd=tmp)
    assert validate.returncode == 0, validate.stderr[-2000:]
    assert "All tasks found and valid" in validate.stdout

    out = tmp / "out"
    run = _python_lm_eval(python, "run", "--model", "hf", "--model_args", f"pretrained={tiny_model}",
                          "--tasks", "recipe_mpr", "--limit", "5", "--output_path", str(out), cwd=tmp)
    assert run.returncode == 0, run.stderr[-3000:]
    assert list(out.rglob("results_*.json"))


@pytest.mark.slow
def test_user_include_path_still_works(installed):
    """`lm_eval ls tasks --include_path own` lists both the user's tasks and the pack's (the wheel's
    listing); without the option the user's task is not listed (the editable's)."""
    kind, _, _, listing = installed
    assert "|recipe_mpr " in listing
    assert ("|my_own_task " in listing) == (kind == "wheel")


@pytest.mark.slow
def test_hook_switch_off(tmp_path):
    """QA_PACK_DISABLE_HOOK=1 leaves lm-eval untouched; by default the hook arms on lm_eval import."""
    code = ("import sys, lm_eval.tasks as t; "
            "print(getattr(t.TaskManager.__init__, '__qa_pack_patch__', False), 'qa_tasks.harness.startup' in sys.modules)")
    on = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=False, env=_env(), cwd=tmp_path)
    off = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=False,
                         env={**_env(), "QA_PACK_DISABLE_HOOK": "1"}, cwd=tmp_path)
    assert on.stdout.split() == ["True", "True"], on.stderr
    assert off.stdout.split() == ["False", "False"], off.stderr


@pytest.mark.slow
def test_a_hook_line_of_an_earlier_install_keeps_working(tmp_path):
    """A `.pth` written by an install of the earlier layout (it imports qa_tasks._startup) still arms the hook,
    with nothing on stderr."""
    site = tmp_path / "site"
    site.mkdir()
    (site / "old_hook.pth").write_text('import os; os.environ.get("QA_PACK_DISABLE_HOOK", "0") not in ("", "0") '
                                       'or __import__("qa_tasks._startup")\n')
    code = ("import site, sys; site.addsitedir(sys.argv[1]); import lm_eval.tasks as t; "
            "print(getattr(t.TaskManager.__init__, '__qa_pack_patch__', False))")
    # -S: no site-packages .pth runs (the installed hook line stays out); the packages come in as plain paths
    env = lm_eval_env()
    env["PYTHONPATH"] = os.pathsep.join((env["PYTHONPATH"], sysconfig.get_paths()["purelib"]))
    proc = subprocess.run([sys.executable, "-S", "-c", code, str(site)], capture_output=True, text=True, check=False,
                          env=env, cwd=tmp_path)
    assert proc.stdout.split() == ["True"] and proc.stderr == "", proc.stderr


def test_a_caller_choosing_its_folders_gets_exactly_them(tmp_path):
    """TaskManager(include_defaults=False, include_path=...) indexes the caller's folder alone: no pack tasks."""
    from lm_eval.tasks import TaskManager

    (tmp_path / "own.yaml").write_text(OWN_TASK)
    assert set(TaskManager(include_defaults=False, include_path=str(tmp_path)).task_index) == {"my_own_task"}


def test_lm_eval_warnings_point_at_the_callers_line(tmp_path):
    """lm-eval's `verbosity` DeprecationWarning names the line that built the TaskManager, not the hook."""
    from lm_eval.tasks import TaskManager

    (tmp_path / "own.yaml").write_text(OWN_TASK)
    with pytest.warns(DeprecationWarning, match="verbosity") as caught:
        TaskManager(verbosity="INFO", include_defaults=False, include_path=str(tmp_path))
    assert [Path(w.filename).name for w in caught] == [Path(__file__).name]


def test_a_plain_lm_eval_run_without_a_task_manager_gets_no_rollout_layer():
    """simple_evaluate(model=..., tasks=["arc_easy"]) builds lm-eval's own index: its tasks cannot hold a pack task."""
    from qa_tasks.harness.checks import needs_rollout

    assert needs_rollout(["arc_easy"]) is False and needs_rollout("arc_easy,recipe_mpr") is False
    assert needs_rollout(["arc_easy", "squad_batch"]) is True


def test_hook_imports_nothing_heavy(tmp_path):
    """A process that never imports lm_eval pays for the finder only: no lm_eval, torch or importlib.abc."""
    code = "import sys; print(sorted(m for m in sys.modules if m.split('.')[0] in ('lm_eval', 'torch', 'qa_tasks') or m == 'importlib.abc'))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=False, env=_env(), cwd=tmp_path)
    assert out.stdout.strip() == "['qa_tasks', 'qa_tasks.harness', 'qa_tasks.harness.startup']", out.stdout + out.stderr


def test_pack_task_index_holds_the_contract_names_only():
    from qa_tasks.harness.task_index import pack_tasks

    names = pack_tasks()
    contract = {"recipe_mpr", "recipe_mpr_gen", "squad_v1", "squad_all_in_one", "squad_sequential", "squad_batch",
                "squad_collab", "squad_strategies", "math500_think", "gsm8k_think", "hendrycks_math_think"}
    assert contract <= set(names)
    assert all(re.fullmatch(r"[a-z0-9_]+", n) for n in names), sorted(names)  # no YAML list dashes
    assert names["squad_strategies"] == "squad" and names["recipe_mpr_fold3"] == "recipe_mpr"


@pytest.mark.parametrize(("tasks", "include_path", "pack_only"), [
    ("recipe_mpr", None, True),
    ("recipe_mpr,squad_v1", None, True),
    (["squad_strategies", "gsm8k_think,math500_think"], None, True),  # CLI lists, each may hold commas
    ("recipe_mpr,arc_easy", None, False),  # one built-in task: the full index
    ("recipe_mpr", "/my/tasks", False),  # the user's folder may build on built-in tasks
    ("/my/tasks/own.yaml", None, False),
    ("recipe_mpr_misspelled", None, False),  # lm-eval's "Tasks not found" then searches everything
    ([{"task": "recipe_mpr"}], None, False),  # task dicts and objects come from elsewhere
    ("", None, False),
])
def test_runs_of_pack_tasks_only_use_the_pack_only_index(tasks, include_path, pack_only):
    from qa_tasks.harness.checks import pack_only as _pack_only

    assert _pack_only(tasks, include_path) is pack_only


def test_lm_eval_run_indexes_only_the_pack_for_pack_tasks():
    """`lm_eval run` builds its TaskManager in EvaluatorConfig.process_tasks: pack tasks only, no
    built-in entries indexed (seconds saved per run), and the task names resolve as before."""
    from lm_eval.config.evaluate_config import EvaluatorConfig

    from qa_tasks.harness.hook import _SCOPE
    from qa_tasks.harness.task_index import pack_tasks

    cfg = EvaluatorConfig(tasks="recipe_mpr,squad_strategies")
    manager = cfg.process_tasks({"seed": 1})
    assert set(manager.task_index) == set(pack_tasks()) | {"squad_strategies"}
    assert cfg.tasks == ["recipe_mpr", "squad_strategies"] and manager.metadata == {"seed": 1}
    assert _SCOPE.get().pack_only is False  # reset after the call: later TaskManagers index everything


@pytest.mark.parametrize(("tasks", "pack_only"), [("recipe_mpr,recipe_mpr_gen", True), ("recipe_mpr,arc_easy", False)])
def test_lm_eval_validate_indexes_only_the_pack_for_pack_tasks(tasks, pack_only, monkeypatch, capsys):
    """`lm_eval validate --tasks <pack tasks>` builds the pack-only index (seconds, not lm-eval's ~14,700
    entries); one built-in task among them keeps the full index."""
    import lm_eval.tasks
    from lm_eval._cli.harness import HarnessCLI

    from qa_tasks.harness.hook import _SCOPE
    from qa_tasks.harness.task_index import pack_tasks

    pack_tasks()  # the pack's own index (cached) is built before the CLI's manager is replaced
    seen = []

    class Indexed(Exception):
        pass

    def manager(include_path=None):
        seen.append(_SCOPE.get().pack_only)
        raise Indexed

    monkeypatch.setattr(lm_eval.tasks, "TaskManager", manager)
    monkeypatch.setattr(sys, "argv", ["lm_eval", "validate", "--tasks", tasks])
    cli = HarnessCLI()
    with pytest.raises(Indexed):
        cli.execute(cli.parse_args())
    assert seen == [pack_only]
    assert _SCOPE.get().pack_only is False  # reset after the command


# --- a hook that never breaks lm_eval -------------------------------------------------------------

SIM_SITE = ROOT / "tests" / "toolkit" / "sim_site"
ARITHMETIC = Path(sysconfig.get_paths()["purelib"]) / "lm_eval" / "tasks" / "arithmetic" / "arithmetic_1dc.yaml"


def _sim_env(**extra: str) -> dict[str, str]:
    env = lm_eval_env(**extra)
    env["PYTHONPATH"] = f"{SIM_SITE}:{ROOT}"
    return env


def _builtin_task(tmp: Path) -> Path:
    """lm-eval's own arithmetic_1dc config, its data file pointed at a local copy (no network here)."""
    rows = [{"context": f"Q: What is ({a} + {b}) * 2?\n\nA:", "completion": f" {(a + b) * 2}"} for a, b in ((1, 2), (3, 4))]
    (tmp / "ops.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    task = tmp / "arithmetic_local.yaml"
    task.write_text(f"include: {ARITHMETIC}\ntask: arithmetic_1dc_local\n"
                    f"dataset_kwargs:\n  data_files:\n    validation: {tmp / 'ops.jsonl'}\n")
    return task


@pytest.mark.slow
def test_every_patch_target_moved_lm_eval_still_runs_with_one_warning_each(tmp_path, tiny_model):
    """Every target moved: lm-eval runs its own task, and each moved target is named once."""
    proc, results = run_lm_eval(["run", "--model", "hf", "--model_args", f"pretrained={tiny_model}",
                                 "--tasks", str(_builtin_task(tmp_path))], output=tmp_path / "out",
                                env=_sim_env(QA_SIM_MOVE_TARGETS="1"))
    assert results["results"]["arithmetic_1dc_local"]["acc,none"] in (0.0, 0.5, 1.0)
    warnings = [line for line in proc.stderr.splitlines() if "lm-eval-qa-pack" in line]
    named = sorted(re.search(r"in lm-eval 0\.4\.13, (\S+) takes \(args, kwargs\)", w).group(1) for w in warnings)
    assert named == ["lm_eval._cli.harness.HarnessCLI.execute", "lm_eval.api.registry.get_model",
                     "lm_eval.config.evaluate_config.EvaluatorConfig.process_tasks", "lm_eval.evaluator.simple_evaluate",
                     "lm_eval.tasks.manager.TaskManager.__init__"], warnings
    assert all(">=0.4.13,<0.4.14" in w for w in warnings) and "Traceback" not in proc.stderr


def _fake(**attrs):
    return type("Fake", (), attrs)


def _fn_model_name(model_name):
    return model_name


def _fn_renamed(name):
    return name


@pytest.mark.parametrize(("owner", "problem"), [
    (_fake(get_model=staticmethod(_fn_model_name)), None),
    (_fake(get_model=staticmethod(_fn_renamed)), "takes (name), without model_name"),
    (_fake(), "is missing"),
    (_fake(get_model=1), "is missing"),
])
def test_a_moved_target_is_left_untouched_with_one_warning(owner, problem, caplog, monkeypatch):
    from qa_tasks.harness import hook

    monkeypatch.setattr(hook, "_WARNED", set())
    [patch] = [p for p in hook.PATCHES if p.attr == "get_model"]
    fits = hook.fits(owner, patch)
    if problem is None:
        assert fits is owner.get_model and not caplog.records
        return
    assert fits is None
    [record] = caplog.records
    assert f"lm_eval.api.registry.get_model {problem}" in record.getMessage()


def test_a_target_that_does_not_fit_leaves_the_other_patches_applied(caplog, monkeypatch):
    """Each patch stands alone: a moved target is named once and skipped; the rest still apply, once."""
    import types

    from qa_tasks.harness import hook

    monkeypatch.setattr(hook, "_WARNED", set())
    def parse_args(self):
        return "parsed"

    cli = type("HarnessCLI", (), {"parse_args": parse_args, "execute": lambda self, renamed: None})
    module = types.SimpleNamespace(HarnessCLI=cli)
    hook.apply("lm_eval._cli.harness", module)
    hook.apply("lm_eval._cli.harness", module)
    [record] = caplog.records
    assert "lm_eval._cli.harness.HarnessCLI.execute takes (self, renamed), without args" in record.getMessage()
    assert cli.parse_args is not parse_args and cli.parse_args.__wrapped__ is parse_args  # wrapped once
    assert cli().parse_args() == "parsed"


def test_the_startup_hook_names_every_patched_module():
    from qa_tasks.harness import hook, startup

    assert startup.TARGETS == {p.module for p in hook.PATCHES}


def test_a_failing_patch_never_breaks_the_import(monkeypatch):
    from qa_tasks.harness import hook, startup

    def broken(name, module):
        raise RuntimeError("boom")

    monkeypatch.setattr(hook, "apply", broken)
    with pytest.warns(UserWarning, match=r"could not hook lm_eval.api.registry \(RuntimeError: boom\)"):
        startup._patch("lm_eval.api.registry", object())


def test_rollout_tasks_are_the_squad_strategies_and_their_group():
    from qa_tasks.harness.task_index import rollout_tasks

    assert rollout_tasks() == {"squad_all_in_one", "squad_batch", "squad_sequential", "squad_collab",
                               "squad_strategies", "squad_batch_train", "squad_sequential_train"}


class _Entry:
    def __init__(self, kind):
        self.kind = type("Kind", (), {"name": kind})


@pytest.mark.parametrize(("tasks", "needed"), [
    ("recipe_mpr,squad_v1", False),
    ("recipe_mpr,gsm8k_think", True),     # the math tasks count truncated replies in the layer
    (["recipe_mpr", "squad_sequential"], True),
    (["squad_strategies"], True),
    (["arithmetic_1dc"], False),          # a plain lm-eval task
    (["mmlu"], True),                     # a group from elsewhere might hold a pack task
    (["not_indexed"], True),
    ([{"task": "my_yaml_task"}], True),   # a config dict from a YAML path
])
def test_the_rollout_layer_wraps_models_only_for_runs_that_need_it(tasks, needed):
    from qa_tasks.harness.checks import needs_rollout as _needs_rollout

    manager = type("TM", (), {"task_index": {"arithmetic_1dc": _Entry("TASK"), "mmlu": _Entry("GROUP")}})()
    assert _needs_rollout(tasks, manager) is needed


def test_get_model_adds_the_layer_only_when_wanted():
    from lm_eval.api import registry

    from qa_tasks.harness.hook import run_scope
    from qa_tasks.rollout import RolloutMixin

    wrapped = registry.get_model("dummy")  # also fills lm-eval's lazily filled registry
    plain = registry.model_registry.get("dummy")
    with run_scope(rollout=False):
        assert registry.get_model("dummy") is plain
    assert wrapped.__mro__[1:3] == (RolloutMixin, plain)


@pytest.mark.parametrize(("model", "model_args", "tasks", "error"), [
    ("hf", "pretrained=/no/such/dir", [], "pretrained=/no/such/dir: no such file or directory"),
    ("hf", {"pretrained": "./missing"}, [], "pretrained=./missing: no such file"),
    ("vllm", "pretrained=org/model,lora_local_path=/no/adapter", [], "lora_local_path=/no/adapter: no such file"),
    ("hf", "pretrained=org/model", [], None),  # a Hub id, not a path
    ("hf", f"pretrained={ROOT}", [], None),
    ("vllm", "pretrained=org/m,data_parallel_size=2", ["squad_strategies"],
     "data_parallel_size=2 with squad_sequential, squad_collab"),
    ("vllm", "pretrained=org/m,data_parallel_size=2", ["squad_batch"], None),
    ("vllm", "pretrained=org/m,tensor_parallel_size=2", ["squad_sequential"], None),
    ("vllm", "pretrained=org/m,max_lora_rank=24", [], "max_lora_rank=24 is not a value vLLM accepts"),
    ("vllm", "pretrained=org/m,max_lora_rank=32", [], None),
])
def test_model_args_checks(model, model_args, tasks, error, monkeypatch):
    import importlib.util

    from qa_tasks.harness.checks import check_model_args

    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: object())  # every backend installed
    if error is None:
        check_model_args(model, model_args, tasks)
    else:
        with pytest.raises(QAPackError, match=re.escape(error)):
            check_model_args(model, model_args, tasks)


@pytest.mark.parametrize(("message", "expected"), [
    ("Tasks not found: squad_sequentail", "unknown task 'squad_sequentail' (did you mean squad_sequential?)"),
    ("Tasks not found: recipe_mpr_gne, hellaswag", "unknown task 'recipe_mpr_gne' (did you mean recipe_mpr_gen?)"),
    ("Tasks not found: hellaswagg", None),  # not close to a pack task: lm-eval's own error stands
    ("Tasks not found: recipe_mpr", "recipe_mpr is a task of lm-eval-qa-pack, but lm-eval did not index"),
    ("some other ValueError", None),
])
def test_misspelled_pack_task_suggestion(message, expected):
    from qa_tasks.harness.hook import _suggest_pack_task

    hint = _suggest_pack_task(ValueError(message))
    assert (hint is None) if expected is None else expected in str(hint)


@pytest.mark.slow
@pytest.mark.parametrize(("args", "hide", "line"), [
    (["--model", "vllm", "--model_args", "pretrained=TINY", "--tasks", "recipe_mpr"], "",
     "error: --model vllm needs vllm, which is not installed: pip install 'lm-eval-qa-pack[vllm]'"),
    (["--model", "local-chat-completions", "--model_args", "model=m,base_url=http://127.0.0.1:9/v1/chat/completions",
      "--tasks", "recipe_mpr_gen"], "aiohttp",
     "error: --model local-chat-completions needs aiohttp, which is not installed: pip install 'lm-eval-qa-pack[api]'"),
    (["--model", "hf", "--model_args", "pretrained=/no/such/dir", "--tasks", "recipe_mpr"], "",
     "error: pretrained=/no/such/dir: no such file or directory"),
    (["--model", "hf", "--model_args", "pretrained=TINY", "--tasks", "squad_sequentail"], "",
     "error: unknown task 'squad_sequentail' (did you mean squad_sequential?)"),
], ids=["vllm-missing", "api-missing", "no-such-model-dir", "misspelled-task"])
def test_first_mistakes_are_one_line_errors_with_exit_2(args, hide, line, tiny_model):
    args = [a.replace("TINY", str(tiny_model)) for a in args]
    proc, _ = run_lm_eval(["run", *args, "--limit", "2"], env=_sim_env(QA_SIM_HIDE=hide), check=False)
    assert proc.returncode == 2, proc.stderr[-3000:]
    errors = [x for x in proc.stderr.splitlines() if x.startswith("error:")]
    assert len(errors) == 1 and errors[0].startswith(line), proc.stderr[-2000:]
    assert "Traceback" not in proc.stderr
