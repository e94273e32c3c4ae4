"""finetune.config: every field as YAML key and CLI flag; bad configs fail in one line before any model loads."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from finetune import sft
from finetune.config import parse_config, tasks
from qa_tasks.errors import QAPackError
from tests.toolkit.env import ROOT, lm_eval_env
from tests.toolkit.lm_eval_runs import run_command

CONFIGS = sorted((ROOT / "finetune" / "configs").glob("*.yaml"))


def _write(tmp_path: Path, **fields) -> Path:
    path = tmp_path / "cfg.yaml"
    path.write_text(yaml.safe_dump(fields))
    return path


def test_yaml_fields_and_cli_override(tmp_path, tiny_model):
    cfg = _write(tmp_path, model_name_or_path=str(tiny_model), task="recipe_mpr", fold=2, lora_r=8,
                 lora_target_modules="q_proj,v_proj", learning_rate=1e-4, num_train_epochs=3,
                 gradient_accumulation_steps=4, eval_tasks="recipe_mpr_gen_fold2", report_to="tensorboard",
                 output_dir=str(tmp_path / "out"))
    task, lora, args = parse_config(["--config", str(cfg), "--lora_r", "32", "--learning_rate", "5e-5"])
    assert (task.task, task.fold, task.eval_tasks) == ("recipe_mpr", 2, "recipe_mpr_gen_fold2")
    assert (lora.lora_r, lora.lora_alpha, lora.lora_target_modules) == (32, 32, ["q_proj", "v_proj"])
    assert task.model is lora and task.model_name_or_path == str(tiny_model)
    assert (args.learning_rate, args.num_train_epochs, args.gradient_accumulation_steps) == (5e-5, 3, 4)
    assert args.report_to == ["tensorboard"]
    assert args.use_cpu is True and args.bf16 is False  # no CUDA here: SFTConfig would refuse bf16


def test_every_field_is_a_flag():
    from finetune.config import SftParser

    flags = {o for a in SftParser().parser._actions for o in a.option_strings}
    for name in ("--model_name_or_path", "--task", "--fold", "--data_path", "--eval_tasks", "--eval_limit",
                 "--resume", "--method", "--lora_r", "--lora_alpha", "--lora_dropout", "--lora_target_modules",
                 "--lora_modules_to_save",
                 "--bnb_4bit_quant_type", "--bnb_4bit_use_double_quant", "--bnb_4bit_compute_dtype",
                 "--learning_rate", "--num_train_epochs", "--per_device_train_batch_size",
                 "--gradient_accumulation_steps", "--eval_steps", "--report_to", "--max_length"):
        assert name in flags


@pytest.mark.parametrize("path", CONFIGS, ids=[p.stem for p in CONFIGS])
def test_example_configs_parse_with_published_values(path, tmp_path):
    task, lora, args = parse_config(["--config", str(path), "--model_name_or_path", "m",
                                     "--output_dir", str(tmp_path)])
    assert task.task in tasks()
    assert (lora.lora_r, lora.lora_alpha, lora.lora_dropout) == (16, 32, 0.05)
    assert 5e-5 <= args.learning_rate <= 2e-4
    assert args.per_device_train_batch_size * args.gradient_accumulation_steps >= 16


def test_every_task_family_has_a_config():
    assert {yaml.safe_load(p.read_text())["task"] for p in CONFIGS} == set(tasks())


@pytest.fixture
def no_model_load(monkeypatch):
    def refuse(*a, **k):
        raise AssertionError("a model was loaded although the config is bad")

    monkeypatch.setattr(sft, "load_base_model", refuse)


def _bad(tiny_model, tmp_path, **override):
    fields = {"model_name_or_path": str(tiny_model), "task": "recipe_mpr", "output_dir": str(tmp_path / "out"),
              "max_steps": 1}
    fields.update(override)
    argv = []
    for key, value in fields.items():
        argv += [f"--{key}", str(value)]
    return argv


@pytest.mark.parametrize("override, words", [
    ({"task": "squad_everything"}, "task='squad_everything' is unknown"),
    ({"lora_r": 0}, "lora_r=0 must be > 0"),
    ({"lora_r": -4}, "lora_r=-4 must be > 0"),
    ({"model_name_or_path": "/nonexistent/model"}, "no model there"),
    ({"lora_target_modules": "q_proj,attn_c"}, "attn_c match no module"),
    ({"fold": 7}, "fold=7 is not valid"),
    ({"task": "jsonl"}, "needs data_path"),
    ({"eval_tasks": "recipe_mpr_gen_fold0,no_such_task_xyz"}, "no_such_task_xyz are unknown"),
    ({"eval_tasks": "recipe_mpr_gen"}, "400 training row(s) contain evaluation documents of recipe_mpr_gen "),
    ({"eval_tasks": "recipe_mpr_gen_fold1"}, "100 training row(s) contain evaluation documents of recipe_mpr_gen_fold1"),
    ({"warmup_steps": -1}, "bad training option"),
    ({"learning_rate": -1e-3}, "learning_rate=-0.001 must be > 0"),
    ({"learning_rate": 0}, "learning_rate=0.0 must be > 0"),
    ({"max_steps": -1, "num_train_epochs": -1}, "max_steps=-1 and num_train_epochs=-1.0 train 0 steps"),
    ({"max_steps": -1, "num_train_epochs": 0}, "train 0 steps"),
    ({"per_device_train_batch_size": 0}, "per_device_train_batch_size=0 must be > 0"),
    ({"lora_target_modules": "q_proj,lm_head"}, "lm_head is the output layer, which TRL cannot train"),
    ({"lora_modules_to_save": "score"}, "lora_modules_to_save score match no module"),
    ({"lora_modules_to_save": "lm_head"}, "ties its input and output embeddings"),
], ids=["unknown-task", "r0", "r-neg", "missing-model", "targets", "fold", "jsonl-no-path", "eval-task",
        "eval-overlaps-all", "eval-other-fold", "bad-sft-option", "lr-negative", "lr-zero", "zero-steps",
    "zero-epochs", "batch-0", "lora-on-head", "save-unknown", "save-tied"])
def test_bad_config_one_line_exit_2(override, words, tiny_model, tmp_path, capsys, no_model_load):
    code = sft.main(_bad(tiny_model, tmp_path, **override))
    err = capsys.readouterr().err
    assert code == 2
    assert err.startswith("error: ") and err.count("\n") == 1, err
    assert words in err
    assert not (tmp_path / "out").exists()  # nothing claimed: the corrected command starts at once


def _help(module: str, flag: str = "--help") -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", module, flag], check=False, capture_output=True, text=True,
                          cwd=ROOT, timeout=300)


@pytest.mark.parametrize("module", ["finetune.sft", "finetune.grpo"])
def test_help_lists_every_pack_option_and_choice_in_full(module):
    from dataclasses import fields

    from finetune import grpo
    from finetune.config import ADAPTER_OPTIONS, MODEL_OPTIONS, TaskArguments
    from finetune.grpo_data import TASKS as GRPO_TASKS

    proc = _help(module)
    assert proc.returncode == 0 and proc.stderr == ""  # no bitsandbytes/kernels start-up noise
    lines = proc.stdout.splitlines()
    words = set(proc.stdout.split())
    task_cls, choices = (grpo.GrpoTaskArguments, GRPO_TASKS) if module == "finetune.grpo" else (TaskArguments, tasks())
    pack = [f.name for f in fields(task_cls) if f.init] + list(MODEL_OPTIONS + ADAPTER_OPTIONS)
    if module == "finetune.grpo":
        pack += [f.name for f in fields(grpo.RewardArguments)] + ["num_generations"]  # GRPOConfig's, curated
    assert {f"--{name}" for name in pack} | {"--config", "--help-all"} <= words
    task_help = proc.stdout[proc.stdout.index("  --task "):proc.stdout.index("  --fold ")]
    assert all(choice in task_help for choice in choices), task_help
    assert not [line for line in lines if line.rstrip().endswith(("e.g.", "i.e.", "..."))]
    assert len(lines) <= 90 and "--lr_scheduler_type" not in words  # the pack's options, not TRL's long tail


@pytest.mark.slow
def test_help_all_lists_trl_options_too():
    full = _help("finetune.sft", "--help-all")
    assert full.returncode == 0
    for option in ("--lr_scheduler_type", "--lora_r", "--use_dora", "--load_in_4bit", "--task"):
        assert option in full.stdout
    assert "{choices}" not in full.stdout and "gsm8k_r1_zero" in full.stdout


def test_output_dir_holding_another_run(tiny_model, tmp_path, capsys, no_model_load):
    out = tmp_path / "out"
    out.mkdir()
    (out / "run_config.json").write_text(json.dumps({"identity": {}}))
    assert sft.main(_bad(tiny_model, tmp_path)) == 2
    assert "already holds another run; pass --resume" in capsys.readouterr().err
    (out / "run_config.json").unlink()
    assert sft.main(_bad(tiny_model, tmp_path, resume="true")) == 2
    assert "holds no run to continue" in capsys.readouterr().err


def test_resume_with_another_config_is_refused(tiny_model, tmp_path, capsys, no_model_load):
    out = tmp_path / "out"
    out.mkdir()
    (out / "run_config.json").write_text(json.dumps({"identity": {"base_model": str(tiny_model),
                                                                  "task": "recipe_mpr", "lora_r": 8}}))
    assert sft.main(_bad(tiny_model, tmp_path, resume="true")) == 2
    assert "holds a run with different" in capsys.readouterr().err


def test_unknown_yaml_key(tmp_path, capsys):
    cfg = _write(tmp_path, task="recipe_mpr", lora_rank=16)
    assert sft.main(["--config", str(cfg)]) == 2
    err = capsys.readouterr().err
    assert "unknown field(s) lora_rank" in err and err.count("\n") == 1


@pytest.mark.slow
def test_cli_exit_code_and_single_line(tiny_model, tmp_path):
    proc = run_command([sys.executable, "-m", "finetune.sft", *_bad(tiny_model, tmp_path, lora_r=0)],
                       lm_eval_env(), ROOT, 300)
    assert proc.returncode == 2
    assert proc.stderr.strip().splitlines()[-1] == "error: lora_r=0 must be > 0 (published studies use 8-64, e.g. 16)"
    assert "Traceback" not in proc.stderr and "Loading weights" not in proc.stderr + proc.stdout
    bad_flag = run_command([sys.executable, "-m", "finetune.sft", "--no_such_flag", "1"], lm_eval_env(), ROOT, 300)
    assert bad_flag.returncode == 2 and "Traceback" not in bad_flag.stderr


def test_parse_errors_are_qapackerrors(tmp_path):
    with pytest.raises(QAPackError, match="cannot read config"):
        parse_config(["--config", str(tmp_path / "missing.yaml")])
    (tmp_path / "list.yaml").write_text("- a\n- b\n")
    with pytest.raises(QAPackError, match="must be a YAML mapping"):
        parse_config(["--config", str(tmp_path / "list.yaml")])
    (tmp_path / "utf16.yaml").write_bytes("task: recipe_mpr\n".encode("utf-16"))
    with pytest.raises(QAPackError, match="is not UTF-8 text"):
        parse_config(["--config", str(tmp_path / "utf16.yaml")])


@pytest.mark.parametrize("history, resumed, session_loss, step, expected", [
    ([], 0, 2.0, 4, 2.0),  # not resumed: the trainer's own mean
    ([{"step": 1, "loss": 4.0}, {"step": 2, "loss": 2.0}], 2, 1.0, 4, (4 + 2 + 1 + 1) / 4),
    ([{"step": 2, "loss": 3.0}, {"step": 3, "loss": 9.0}], 2, 1.0, 3, (3 * 2 + 1) / 3),  # step 3 is this session's
    ([{"step": 5, "loss": 2.0}, {"step": 6, "loss": 1.0, "eval_x/acc": 0.5}], 6, 0.0, 6, (2 * 5 + 1) / 6),
], ids=["fresh", "every-step-logged", "later-logs-ignored", "logged-at-save-only"])
def test_whole_run_loss(history, resumed, session_loss, step, expected):
    history = [dict(e) for e in history] + [{"step": 4, "eval_x/acc": 1.0}]  # eval entries carry no loss
    assert sft.whole_run_loss(history, resumed, session_loss, step) == pytest.approx(expected)


@pytest.mark.parametrize("targets, expected", [
    ("all-linear", "all-linear"), ("q_proj", {"q_proj"}), ("q_proj, v_proj", {"q_proj", "v_proj"}),
], ids=["all-linear", "one-name", "two-names"])
def test_lora_config_through_trl(targets, expected):
    from finetune.config import ModelArguments

    config = sft.lora_config(ModelArguments(lora_r=8, lora_alpha=16, lora_target_modules=targets))
    assert (config.r, config.lora_alpha, config.lora_dropout, config.bias) == (8, 16, 0.05, "none")
    assert config.target_modules == expected and config.task_type == "CAUSAL_LM"


@pytest.mark.parametrize("status, words", [
    ("complete", "already finished (manifest.json present)"),
    ("interrupted", "holds a run with different"),  # resumable: it gets as far as comparing the configs
])
def test_resume_after_a_finished_or_interrupted_run(status, words, tiny_model, tmp_path, capsys, no_model_load):
    out = tmp_path / "out"
    out.mkdir()
    (out / "run_config.json").write_text(json.dumps({"identity": {"base_model": "another"}}))
    (out / "manifest.json").write_text(json.dumps({"status": status}))
    assert sft.main(_bad(tiny_model, tmp_path, resume="true")) == 2
    assert words in capsys.readouterr().err
