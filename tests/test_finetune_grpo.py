"""python -m finetune.grpo: the rewards are the math tasks' metrics (every row of the grader's case tables),
bad input is one line before any model loads, and on the tiny model a few GRPO steps (LoRA and QLoRA) run
end to end through the real CLI: adapter, manifest, reward scalars in TensorBoard, evaluation during training,
and the adapter evaluated by the real lm_eval CLI."""

from __future__ import annotations

import json
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from finetune.rewards import STOP, answer_reward, build_rewards, format_reward, parse_rewards, reply_text
from qa_tasks import math as mt
from qa_tasks.errors import QAPackError
from tests.test_math_grader import CS336_DEPARTURES, FORMAT_CASES, GRADING_CASES, HOSTILE_ANSWERS, gold_of
from tests.toolkit.env import ROOT, lm_eval_env
from tests.toolkit.lm_eval_runs import run_command, run_lm_eval

LORA = ROOT / "finetune" / "configs" / "grpo" / "gsm8k_grpo_lora.yaml"
QLORA = ROOT / "finetune" / "configs" / "grpo" / "gsm8k_grpo_qlora.yaml"
FAST = ["--max_steps", "2", "--per_device_train_batch_size", "4", "--gradient_accumulation_steps", "1",
        "--num_generations", "2", "--max_completion_length", "12", "--max_examples", "16", "--logging_steps", "1",
        "--warmup_steps", "0", "--disable_tqdm", "true", "--save_steps", "2"]


def _gold(source: str) -> str:
    return gold_of(source) if re.fullmatch(r"(math500|gsm8k):\d+", source) else source


def _formatted(pred: str) -> str:
    return f" ok </think> <answer> {pred} </answer>"


def table_rows() -> list[tuple[str, str, str]]:
    """(case name, response, gold) for every row of the math grader's case tables."""
    rows = [(f"format:{name}", response, "5") for name, response, *_ in FORMAT_CASES]
    rows += [(f"grading:{source}:{pred}", _formatted(pred), gold_of(source)) for source, pred, _ in GRADING_CASES]
    rows += [(f"cs336:{name}", response, gold) for name, response, gold, _ in CS336_DEPARTURES]
    rows += [(f"hostile:{name}", _formatted(pred), _gold(gold)) for name, pred, gold, *_ in HOSTILE_ANSWERS]
    return rows


def test_rewards_equal_the_task_metrics_on_every_case_table_row():
    rows = table_rows()
    assert len(rows) > 250
    completions, golds = [r[1] for r in rows], [r[2] for r in rows]
    fmt, ans = format_reward(completions, gold=golds), answer_reward(completions, gold=golds)
    assert 0 < sum(ans) < sum(fmt) < len(rows)  # the tables hold right, wrong and unformatted replies
    for (name, response, gold), f, a in zip(rows, fmt, ans):
        metrics = mt.score_response(response, gold)
        if metrics["grader_timeouts"]:  # a timeout is 0 for both, but which item times out is not fixed
            continue
        assert (f, a) == (metrics["format_accuracy"], metrics["accuracy"]), name


def test_a_reply_is_cut_where_the_task_stops():
    template = (ROOT / "tasks_yaml" / "math" / "_think_template_yaml").read_text(encoding="utf-8")
    assert f'until: [{json.dumps(STOP)}]' in template
    completion = " 2+3 </think> <answer> 5 </answer>\nUser: next </think> <answer> 6 </answer>"
    assert reply_text(completion) == " 2+3 </think> <answer> 5 </answer>"
    assert format_reward([" r\nUser: </think> <answer> 5 </answer>"]) == [0.0]  # the task never sees the tags
    chat = [{"role": "assistant", "content": "<think> r </think> <answer> 5 </answer>"}]
    assert answer_reward([chat], gold=["5"]) == [1.0]


def test_truncation_and_length_penalties():
    truncation, length = build_rewards(["truncation", "length"], 4, (0, None))
    ids = [[5, 6, 7, 8], [5, 6, 7, 0], [5, 0]]  # hit the cap; ended on EOS at the cap; ended early
    assert truncation(completions=["a"] * 3, completion_ids=ids) == [-1.0, 0.0, 0.0]
    assert length(completions=["a"] * 3, completion_ids=ids) == [-1.0, -1.0, -0.5]
    assert (truncation.__name__, length.__name__) == ("truncation_reward", "length_reward")


def test_reward_names():
    assert parse_rewards(" format, answer ") == ["format", "answer"]
    for value, message in (("format,score", "unknown reward score"), ("", "empty"), ("answer,answer", "twice")):
        with pytest.raises(QAPackError, match=message):
            parse_rewards(value)


def _grpo_cmd(*args: str, config: Path = LORA) -> list[str]:
    return [sys.executable, "-m", "finetune.grpo", "--config", str(config), *args]


def _grpo(*args: str, config: Path = LORA, check: bool = True):
    proc = run_command(_grpo_cmd(*args, config=config), lm_eval_env(), ROOT)
    if check and proc.returncode != 0:
        raise AssertionError(f"finetune.grpo failed ({proc.returncode}):\n{proc.stderr[-4000:]}")
    return proc


@pytest.mark.parametrize("extra,data,message", [
    (["--reward_funcs", "format,score"], None, "reward_funcs: unknown reward score"),
    (["--num_generations", "3"], None, "generation_batch_size (4) must be divisible by num_generations (3)"),
    (["--reward_weights", "1"], None, "reward_weights has 1 value(s) for 2 reward(s)"),
    (["--task", "recipe_mpr"], None, "task='recipe_mpr' has no GRPO prompts"),
    (["--task", "jsonl"], [{"question": "What is 2+3?", "answer": "5"}, {"question": "What is 2+2?"}],
     "row 2 has no `answer`"),
], ids=["unknown reward", "group size", "weights", "sft-only task", "no answers"])
def test_bad_input_is_one_line_before_the_model_loads(tiny_model, tmp_path, extra, data, message):
    if data is not None:
        (tmp_path / "d.jsonl").write_text("".join(json.dumps(r) + "\n" for r in data))
        extra = [*extra, "--data_path", str(tmp_path / "d.jsonl")]
    out = tmp_path / "out"
    proc = _grpo("--model_name_or_path", str(tiny_model), "--output_dir", str(out), *FAST, "--eval_tasks", "",
                 *extra, check=False)
    assert proc.returncode == 2, proc.stderr[-2000:]
    lines = [ln for ln in proc.stderr.splitlines() if ln.strip()]
    assert lines[-1].startswith("error: ") and message in lines[-1], proc.stderr[-2000:]
    assert "Traceback" not in proc.stderr and "Loading weights" not in proc.stderr
    assert not out.exists()


@pytest.fixture(scope="module")
def runs(tiny_model, tmp_path_factory):
    root = tmp_path_factory.mktemp("grpo")
    lora, qlora = root / "lora", root / "qlora"
    _grpo("--model_name_or_path", str(tiny_model), "--output_dir", str(lora), *FAST, "--eval_tasks", "gsm8k_think",
          "--eval_limit", "2", "--eval_gen_kwargs", "max_gen_toks=8", "--report_to", "tensorboard",
          "--reward_funcs", "format,answer,truncation", "--reward_weights", "0.1", "1", "0.5")
    _grpo("--model_name_or_path", str(tiny_model), "--output_dir", str(qlora), *FAST, "--eval_tasks", "",
          config=QLORA)
    evals = {}
    for name, args in (("lora", f"pretrained={tiny_model},peft={lora}"), ("qlora", f"pretrained={tiny_model},peft={qlora}")):
        _, evals[name] = run_lm_eval(["--model", "hf", "--model_args", args, "--tasks", "gsm8k_think", "--limit", "2",
                                      "--gen_kwargs", "max_gen_toks=8"], output=root / f"eval_{name}")
    return {"model": tiny_model, "lora": lora, "qlora": qlora, "evals": evals}


@pytest.mark.slow
@pytest.mark.parametrize("method", ["lora", "qlora"])
def test_adapter_and_manifest(runs, method):
    out = runs[method]
    for name in ("adapter_model.safetensors", "adapter_config.json", "manifest.json", "tokenizer_config.json"):
        assert (out / name).is_file(), name
    manifest = json.loads((out / "manifest.json").read_text())
    assert (manifest["status"], manifest["trainer"], manifest["method"]) == ("complete", "grpo", method)
    assert (manifest["data"]["source"], manifest["data"]["split"], manifest["data"]["n_examples"]) == (
        "math/gsm8k_train.jsonl", "train", 16)
    hp = manifest["hyperparameters"]
    assert (hp["num_generations"], hp["max_completion_length"], hp["generation_batch_size"]) == (2, 12, 4)
    metrics = manifest["metrics"]
    assert metrics["global_step"] == 2 and "final_reward" in metrics
    assert metrics["final_completions/clipped_ratio"] == pytest.approx(1.0)  # 12 tokens: every reply is cut
    if method == "lora":
        assert manifest["rewards"] == {"funcs": ["format", "answer", "truncation"], "weights": [0.1, 1.0, 0.5]}
        # every completion hit the cap, nothing was formatted: 0.5 * -1
        assert metrics["final_reward"] == pytest.approx(-0.5)
        assert metrics["final_rewards/truncation_reward/mean"] == pytest.approx(-1.0)
    else:
        assert manifest["rewards"]["funcs"] == ["format", "answer"]
        assert json.loads((out / "adapter_config.json").read_text())["peft_type"] == "LORA"
        assert (hp["bnb_4bit_quant_type"], hp["bnb_4bit_use_double_quant"]) == ("nf4", True)


@pytest.mark.slow
def test_reward_scalars_in_tensorboard(runs):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    [events] = list((runs["lora"] / "runs").rglob("events.out.tfevents.*"))
    acc = EventAccumulator(str(events.parent))
    acc.Reload()
    tags = set(acc.Tags()["scalars"])
    for tag in ("train/reward", "train/rewards/format_reward/mean", "train/rewards/answer_reward/mean",
                "train/rewards/truncation_reward/mean", "train/completions/clipped_ratio",
                "eval/gsm8k_think/format_accuracy"):
        assert tag in tags, (tag, sorted(tags))
    assert [e.step for e in acc.Scalars("train/reward")] == [1, 2]


@pytest.mark.slow
def test_evaluation_during_training_and_the_adapter_in_lm_eval(runs):
    manifest = json.loads((runs["lora"] / "manifest.json").read_text())
    [step] = manifest["eval_during_training"]
    assert step["step"] == 2 and step["metrics"]["gsm8k_think"]["n,none"] == 2
    for method in ("lora", "qlora"):
        results = runs["evals"][method]
        assert results["config"]["model_args"]["peft"] == str(runs[method])
        assert results["results"]["gsm8k_think"]["n,none"] == 2


@pytest.mark.slow
def test_sigterm_stops_a_grpo_run_that_resume_finishes(tiny_model, tmp_path):
    """SIGTERM after the first checkpoint: exit 143 within 10 s, an interrupted manifest naming the checkpoint;
    the same command with --resume continues from it to the last step and writes the adapter."""
    out = tmp_path / "run"
    args = ["--model_name_or_path", str(tiny_model), "--output_dir", str(out), *FAST, "--max_steps", "3",
            "--save_steps", "1", "--eval_tasks", ""]
    with (tmp_path / "log.txt").open("w") as log:
        proc = subprocess.Popen(_grpo_cmd(*args), stdout=log, stderr=subprocess.STDOUT, env=lm_eval_env(), cwd=ROOT)
        deadline = time.time() + 600
        while not (out / "checkpoint-1" / "trainer_state.json").is_file():
            assert proc.poll() is None and time.time() < deadline, (tmp_path / "log.txt").read_text()[-3000:]
            time.sleep(0.05)
        sent = time.time()
        proc.send_signal(signal.SIGTERM)
        code = proc.wait(timeout=120)
    text = (tmp_path / "log.txt").read_text()
    assert code == 143 and time.time() - sent < 10, text[-3000:]
    assert "Traceback" not in text and "rerun the same command with --resume" in text
    manifest = json.loads((out / "manifest.json").read_text())
    assert (manifest["status"], manifest["trainer"]) == ("interrupted", "grpo")
    assert not (out / "adapter_model.safetensors").exists()
    resumed = _grpo(*args, "--resume", "true")
    manifest = json.loads((out / "manifest.json").read_text())
    assert (manifest["status"], manifest["metrics"]["global_step"]) == ("complete", 3), resumed.stderr[-2000:]
    assert manifest["metrics"]["resumed_from"].startswith("checkpoint-")
    assert (out / "adapter_model.safetensors").is_file()
