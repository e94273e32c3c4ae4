"""Hostile input and faults for ``python -m finetune.watch``: each mistake is one ``error:`` line and exit 2
before any model loads, earlier results stay as they were; checkpoints the trainer removed before they could
be evaluated (``save_total_limit``) are named, the others evaluated.

The run folders are built here: a ``run_config.json`` as ``finetune.sft`` writes it and checkpoints holding a
real peft LoRA adapter of the tiny model (untrained: what is tested is the watcher, not the scores).
"""

from __future__ import annotations

import hashlib
import json
import sys
from pathlib import Path

import pytest

from tests.toolkit.env import ROOT, lm_eval_env
from tests.toolkit.lm_eval_runs import run_command

pytestmark = pytest.mark.slow  # every case is a python -m finetune.watch process
TASK = "recipe_mpr_gen_fold0"


@pytest.fixture(scope="module")
def adapter(tiny_model, tmp_path_factory) -> Path:
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    out = tmp_path_factory.mktemp("adapter")
    model = AutoModelForCausalLM.from_pretrained(tiny_model)
    get_peft_model(model, LoraConfig(r=4, target_modules=["q_proj", "v_proj"])).save_pretrained(out)
    return out


def _run(root: Path, base: Path, adapter: Path, steps=(2, 4), save_steps: int = 2) -> Path:
    import shutil

    run = root / "run"
    run.mkdir()
    (run / "run_config.json").write_text(json.dumps({"identity": {"base_model": str(base)}, "argv": []}))
    for step in steps:
        ckpt = run / f"checkpoint-{step}"
        shutil.copytree(adapter, ckpt)
        (ckpt / "trainer_state.json").write_text(json.dumps({"global_step": step, "save_steps": save_steps}))
    return run


def _hashes(run: Path) -> dict:
    return {str(p.relative_to(run)): hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(run.rglob("*"))
            if p.is_file()}


def _watch(run: Path, *args: str):
    return run_command([sys.executable, "-m", "finetune.watch", str(run), "--tasks", TASK, "--once", *args],
                       lm_eval_env(), ROOT, 600)


def _truncate(path: Path) -> None:
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])


# (id, how the run folder is spoiled, extra arguments, the error line's start)
CASES = [
    ("limit-0", None, ["--limit", "0"], "error: --limit 0 must be > 0"),
    ("limit-negative", None, ["--limit", "-3"], "error: --limit -3 must be > 0"),
    ("poll-negative", None, ["--poll", "-1"], "error: --poll -1 must be > 0"),
    ("batch-size-0", None, ["--batch_size", "0"], "error: --batch_size 0 must be > 0"),
    ("model-missing", None, ["--model", "/no/such/model"], "error: pretrained=/no/such/model: no such file"),
    ("run-config-corrupt", lambda run: (run / "run_config.json").write_text("{not json"), [],
     "is not the run_config.json python -m finetune.sft writes"),
    ("run-config-incomplete", lambda run: (run / "run_config.json").write_text('{"identity": {}}'), [],
     "is not the run_config.json python -m finetune.sft writes"),
    ("eval-is-a-file", lambda run: (run / "eval").write_text("x"), [], "is a file, where the evaluations go"),
    ("adapter-truncated", lambda run: _truncate(run / "checkpoint-2" / "adapter_model.safetensors"), [],
     "its adapter files are damaged"),
    ("adapter-missing", lambda run: (run / "checkpoint-2" / "adapter_model.safetensors").unlink(), [],
     "adapter_model.safetensors is missing"),
    ("adapter-config-corrupt", lambda run: (run / "checkpoint-2" / "adapter_config.json").write_text("{"), [],
     "its adapter files are damaged"),
]


@pytest.mark.parametrize(("spoil", "args", "line"), [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_bad_input_is_one_line_and_keeps_everything(spoil, args, line, adapter, tiny_model, tmp_path):
    run = _run(tmp_path, tiny_model, adapter)
    if spoil is not None:
        spoil(run)
    before = _hashes(run)
    proc = _watch(run, *args)
    errors = [x for x in proc.stderr.splitlines() if x.startswith("error:")]
    assert proc.returncode == 2 and "Traceback" not in proc.stderr + proc.stdout, proc.stderr[-3000:]
    assert len(errors) == 1 and (errors[0].startswith(line) or line in errors[0]), proc.stderr[-2000:]
    assert _hashes(run) == before and not (run / "eval" / "step-2").exists()


def test_checkpoints_removed_before_evaluation_are_named(adapter, tiny_model, tmp_path):
    """save_total_limit 1: only checkpoint-6 is left of the steps 2, 4, 6 the trainer saved; it is evaluated
    and steps 2 and 4 are named as not evaluated."""
    run = _run(tmp_path, tiny_model, adapter, steps=(6,))
    proc = _watch(run, "--limit", "2", "--gen_kwargs", "max_gen_toks=4")
    assert proc.returncode == 0 and "Traceback" not in proc.stderr, proc.stderr[-3000:]
    assert (run / "eval" / "step-6").is_dir() and not (run / "eval" / "step-2").exists()
    assert "[watch] not evaluated: step(s) 2, 4, whose checkpoints were removed" in proc.stdout


def test_a_checkpoint_removed_while_the_watcher_loads_it_is_named(adapter, tiny_model, tmp_path, monkeypatch):
    """The trainer's rotation deletes checkpoint-2 after the watcher listed it, before peft read it: the
    watcher goes on with checkpoint-4 and names step 2."""
    import shutil

    from finetune import watch

    run = _run(tmp_path, tiny_model, adapter)
    check = watch._check_adapter

    def rotate_then_check(ckpt):
        if ckpt.name == "checkpoint-2":
            shutil.rmtree(ckpt)
        check(ckpt)

    monkeypatch.setattr(watch, "_check_adapter", rotate_then_check)
    lines: list[str] = []
    written = watch.watch(run, [TASK], limit=2, gen_kwargs="max_gen_toks=4", once=True, log=lines.append)
    assert written == [run / "eval" / "step-4"] and not (run / "eval" / "step-2").exists()
    assert any(x.startswith("[watch] not evaluated: step(s) 2,") for x in lines), lines
