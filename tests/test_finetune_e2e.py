"""End to end on CPU: train a tiny model with the real CLI (LoRA and QLoRA), evaluate the adapters with
the real lm_eval CLI against the base model, resume after SIGTERM, 2-process accelerate, watch, merge."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.toolkit.env import BIN, DATA_DIR, ROOT, lm_eval_env
from tests.toolkit.lm_eval_runs import read_samples, run_command, run_lm_eval

pytestmark = [pytest.mark.slow, pytest.mark.heavy(order=2)]

CONFIG = ROOT / "finetune" / "configs" / "recipe_mpr_lora.yaml"
FAST = ["--per_device_train_batch_size", "4", "--gradient_accumulation_steps", "1", "--learning_rate", "1e-2",
        "--warmup_steps", "0", "--logging_steps", "1", "--disable_tqdm", "true", "--max_length", "384",
        "--gradient_checkpointing", "false"]
TASKS = "recipe_mpr_fold0,recipe_mpr_gen_fold0"


def train(model: Path, out: Path, *extra: str, check: bool = True, **popen) -> subprocess.CompletedProcess:
    cmd = [sys.executable, "-m", "finetune.sft", "--config", str(CONFIG), "--model_name_or_path", str(model),
           "--output_dir", str(out), *FAST, *extra]
    proc = run_command(cmd, lm_eval_env(), ROOT)
    if check and proc.returncode != 0:
        raise AssertionError(f"finetune.sft failed ({proc.returncode}):\n{proc.stderr[-4000:]}")
    return proc


@pytest.fixture(scope="module")
def runs(tiny_model, tmp_path_factory):
    root = tmp_path_factory.mktemp("ft")
    lora, qlora = root / "lora", root / "qlora"
    train(tiny_model, lora, "--max_steps", "6", "--save_steps", "3", "--eval_steps", "3", "--eval_limit", "2",
          "--eval_tasks", "recipe_mpr_gen_fold0")
    train(tiny_model, qlora, "--method", "qlora", "--max_steps", "3", "--save_steps", "3", "--eval_tasks", "")
    evals = {}
    for name, args in (("base", f"pretrained={tiny_model}"), ("lora", f"pretrained={tiny_model},peft={lora}"),
                       ("qlora", f"pretrained={tiny_model},peft={qlora}")):
        out = root / f"eval_{name}"
        _, results = run_lm_eval(["--model", "hf", "--model_args", args, "--tasks", TASKS, "--limit", "4",
                                  "--log_samples", "--gen_kwargs", "max_gen_toks=4"], output=out)
        evals[name] = (out, results)
    return {"model": tiny_model, "lora": lora, "qlora": qlora, "evals": evals, "root": root}


def _loglikelihoods(out: Path) -> list[float]:
    return [float(resp[0][0]) for s in read_samples(out, "recipe_mpr_fold0") for resp in s["resps"]]


@pytest.mark.parametrize("method", ["lora", "qlora"])
def test_adapter_changes_what_lm_eval_measures(runs, method):
    base_out, base = runs["evals"]["base"]
    out, results = runs["evals"][method]
    assert results["config"]["model_args"]["peft"] == str(runs[method])
    assert results["results"]["recipe_mpr_fold0"]["n,none"] == base["results"]["recipe_mpr_fold0"]["n,none"] == 4
    before, after = _loglikelihoods(base_out), _loglikelihoods(out)
    assert len(before) == len(after) == 20
    assert sum(abs(a - b) for a, b in zip(before, after)) > 1e-3


@pytest.mark.parametrize("method", ["lora", "qlora"])
def test_output_layout_and_manifest(runs, method):
    out = runs[method]
    for name in ("adapter_model.safetensors", "adapter_config.json", "manifest.json", "tokenizer_config.json"):
        assert (out / name).is_file(), name
    assert not list(out.glob(".*tmp*"))
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["base_model"] == str(runs["model"]) and manifest["task"] == "recipe_mpr"
    assert manifest["method"] == method
    data = manifest["data"]
    assert (data["source"], data["split"], data["fold"], data["n_examples"]) == ("recipe_mpr/500QA.json", "train",
                                                                                 0, 400)
    assert len(data["sha256"]) == 64
    hp = manifest["hyperparameters"]
    assert (hp["lora_r"], hp["lora_alpha"], hp["lora_dropout"], hp["learning_rate"]) == (16, 32, 0.05, 1e-2)
    assert hp["completion_only_loss"] is True and hp["effective_batch_size"] == 4
    if method == "qlora":
        assert (hp["bnb_4bit_quant_type"], hp["bnb_4bit_use_double_quant"]) == ("nf4", True)
    assert {"torch", "transformers", "trl", "peft", "bitsandbytes", "lm_eval"} <= set(manifest["versions"])
    assert manifest["metrics"]["global_step"] == (6 if method == "lora" else 3)
    assert manifest["metrics"]["train_loss"] > 0 and manifest["created"]
    adapter = json.loads((out / "adapter_config.json").read_text())
    assert adapter["r"] == 16 and adapter["peft_type"] == "LORA"
    assert "q_proj" in " ".join(adapter["target_modules"])  # explicit names, as vLLM's lora_local_path needs

    from transformers import AutoTokenizer

    assert AutoTokenizer.from_pretrained(out).padding_side == "left"  # generation pads left


def test_eval_during_training_in_lm_eval_layout(runs):
    out = runs["lora"]
    steps = sorted(int(p.name.split("-")[1]) for p in (out / "eval").glob("step-*"))
    assert steps == [3, 6]
    for step in steps:
        results = json.loads(next((out / "eval" / f"step-{step}").glob("results_*.json")).read_text())
        assert results["config"]["model_args"] == f"pretrained={runs['model']},peft={out}/checkpoint-{step}"
        assert results["results"]["recipe_mpr_gen_fold0"]["n,none"] == 2
        samples = read_samples(out / "eval" / f"step-{step}", "recipe_mpr_gen_fold0")
        assert len(samples) == 2
    manifest = json.loads((out / "manifest.json").read_text())
    assert [e["step"] for e in manifest["eval_during_training"]] == [3, 6]


def test_watch_evaluates_new_checkpoints(runs, tmp_path):
    import shutil

    run = tmp_path / "run"
    shutil.copytree(runs["lora"], run, ignore=shutil.ignore_patterns("eval"))
    proc = run_command([sys.executable, "-m", "finetune.watch", str(run), "--tasks", "recipe_mpr_gen_fold0",
                        "--limit", "2", "--once", "--gen_kwargs", "max_gen_toks=4"], lm_eval_env(), ROOT, 600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    for step in (3, 6):
        results = json.loads(next((run / "eval" / f"step-{step}").glob("results_*.json")).read_text())
        assert results["config"]["model_args"] == f"pretrained={runs['model']},peft={run}/checkpoint-{step}"
    from finetune.watch import pending_checkpoints

    assert pending_checkpoints(run) == []  # a second look finds nothing new to evaluate


def _assert_merged_matches_adapter(merged_dir: Path, base: Path, adapter: Path):
    import torch
    from peft import PeftModel
    from transformers import AutoModelForCausalLM

    merged = AutoModelForCausalLM.from_pretrained(merged_dir)
    adapted = PeftModel.from_pretrained(AutoModelForCausalLM.from_pretrained(base), adapter).eval()
    ids = torch.tensor([[5, 17, 300, 42, 99, 7]])
    with torch.no_grad():
        assert torch.allclose(merged(ids).logits, adapted(ids).logits, atol=1e-4)
    return merged


def test_merge_exports_the_same_model(runs, tmp_path):
    from finetune.merge import main

    assert main([str(runs["lora"]), "--out", str(tmp_path / "merged")]) == 0
    _assert_merged_matches_adapter(tmp_path / "merged", runs["model"], runs["lora"])
    assert main([str(runs["lora"]), "--out", str(tmp_path / "merged")]) == 2  # never overwrites


def test_output_layer_trained_in_full_loads_in_lm_eval_and_merges(tmp_path):
    """lora_modules_to_save=lm_head on a model with its own output weights: the adapter carries the trained
    head, lm_eval loads it (and sees the change), and the merged export keeps it."""
    import torch
    from safetensors.torch import load_file
    from transformers import AutoModelForCausalLM

    from finetune.merge import main as merge_main
    from qa_tasks.testing import build_tiny_model

    model = build_tiny_model(tmp_path / "untied", data_dir=DATA_DIR, tie_embeddings=False)
    out = tmp_path / "run"
    proc = train(model, out, "--max_steps", "3", "--save_steps", "3", "--eval_tasks", "",
                 "--lora_modules_to_save", "lm_head")
    # vLLM's lora_local_path refuses modules_to_save: said at training time, once
    assert proc.stderr.count("vLLM cannot serve this adapter as trained") == 1, proc.stderr[-2000:]
    assert json.loads((out / "adapter_config.json").read_text())["modules_to_save"] == ["lm_head"]
    assert json.loads((out / "manifest.json").read_text())["hyperparameters"]["lora_modules_to_save"] == "lm_head"
    assert any("lm_head.modules_to_save" in k or k.endswith("lm_head.weight")
               for k in load_file(out / "adapter_model.safetensors"))
    lls = []
    for args in (f"pretrained={model}", f"pretrained={model},peft={out}"):
        ev = tmp_path / f"eval{len(lls)}"
        run_lm_eval(["--model", "hf", "--model_args", args, "--tasks", "recipe_mpr_fold0", "--limit", "2",
                     "--log_samples"], output=ev)
        lls.append(_loglikelihoods(ev))
    assert len(lls[0]) == len(lls[1]) == 10 and sum(abs(a - b) for a, b in zip(*lls)) > 1e-3

    assert merge_main([str(out), "--out", str(tmp_path / "merged")]) == 0
    merged = _assert_merged_matches_adapter(tmp_path / "merged", model, out)
    assert not torch.equal(merged.lm_head.weight, AutoModelForCausalLM.from_pretrained(model).lm_head.weight)


def test_resume_after_sigterm_continues_from_the_checkpoint(tiny_model, tmp_path):
    out = tmp_path / "run"
    cmd = [sys.executable, "-m", "finetune.sft", "--config", str(CONFIG), "--model_name_or_path", str(tiny_model),
           "--output_dir", str(out), *FAST, "--max_steps", "5000", "--save_steps", "2", "--eval_tasks", ""]
    log = (tmp_path / "log.txt").open("w")
    proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, env=lm_eval_env(), cwd=ROOT)
    deadline = time.time() + 400
    # any complete checkpoint: on an idle machine older ones are rotated away within a second
    while not any((p / "trainer_state.json").is_file() for p in out.glob("checkpoint-*")):
        assert proc.poll() is None and time.time() < deadline, (tmp_path / "log.txt").read_text()[-3000:]
        time.sleep(0.2)
    proc.send_signal(signal.SIGINT)  # Ctrl-C during a training step
    assert proc.wait(timeout=300) == 128 + signal.SIGINT
    text = (tmp_path / "log.txt").read_text()
    assert "Traceback" not in text and "rerun the same command with --resume" in text
    assert json.loads((out / "manifest.json").read_text())["status"] == "interrupted"
    steps = sorted(int(p.name.split("-")[1]) for p in out.glob("checkpoint-*"))
    stopped = steps[-1]
    state = json.loads((out / f"checkpoint-{stopped}" / "trainer_state.json").read_text())
    assert state["global_step"] == stopped >= 2  # the step the signal arrived in was saved, not lost

    resumed = train(tiny_model, out, "--max_steps", str(stopped + 2), "--save_steps", "2", "--eval_tasks", "",
                    "--resume", "true")
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["metrics"]["resumed_from"] == f"checkpoint-{stopped}"
    assert manifest["metrics"]["global_step"] == stopped + 2
    final = json.loads((out / f"checkpoint-{stopped + 2}" / "trainer_state.json").read_text())
    logged = [e for e in final["log_history"] if "loss" in e]
    assert [e["step"] for e in logged] == list(range(1, stopped + 3))  # one history, no step lost or repeated
    # train_loss covers the whole run, not only the steps after the resume
    assert manifest["metrics"]["train_loss"] == pytest.approx(sum(e["loss"] for e in logged) / len(logged))
    assert resumed.returncode == 0


def test_accelerate_launch_two_cpu_processes(tiny_model, tmp_path):
    out = tmp_path / "ddp"
    cmd = [str(BIN / "accelerate"), "launch", "--multi_gpu", "--num_processes", "2", "--num_machines", "1",
           "--mixed_precision", "no", "--dynamo_backend", "no", "-m", "finetune.sft", "--config", str(CONFIG),
           "--model_name_or_path", str(tiny_model), "--output_dir", str(out), *FAST, "--max_steps", "2",
           "--eval_tasks", "", "--max_examples", "16"]
    env = lm_eval_env(CUDA_VISIBLE_DEVICES="")
    proc = subprocess.run(cmd, check=False, capture_output=True, text=True, env=env, cwd=ROOT, timeout=600)
    assert proc.returncode == 0, proc.stderr[-4000:]
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["hyperparameters"]["world_size"] == 2
    assert manifest["hyperparameters"]["effective_batch_size"] == 8
    assert manifest["metrics"]["global_step"] == 2
    assert (out / "adapter_model.safetensors").is_file()
    assert os.path.getsize(out / "adapter_model.safetensors") > 0
