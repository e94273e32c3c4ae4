"""``python -m finetune.evaluate``: every checkpoint of a real finetune.sft run on one loaded base, compared
with separate lm_eval runs; QLoRA with the run's own quantization; vLLM through the stand-in; resume,
SIGTERM, bad input, leaderboards, finetune.watch (the recorded bench command runs in test_bench_commands.py)."""

from __future__ import annotations

import itertools
import json
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.test_bench_commands import commands
from tests.toolkit.env import ROOT, SITE, lm_eval_env
from tests.toolkit.lm_eval_runs import read_samples, run_command, run_lm_eval

CONFIG = ROOT / "finetune" / "configs" / "recipe_mpr_lora.yaml"
FAST = ["--per_device_train_batch_size", "4", "--gradient_accumulation_steps", "1", "--learning_rate", "1e-2",
        "--warmup_steps", "0", "--logging_steps", "1", "--disable_tqdm", "true", "--max_length", "384",
        "--gradient_checkpointing", "false", "--eval_tasks", "", "--max_steps", "8", "--save_steps", "2",
        "--save_total_limit", "10"]
TASKS = "recipe_mpr_fold0,squad_sequential"  # log-likelihoods, and multi-call generation (rollout layer)
EVAL = ["--tasks", TASKS, "--limit", "2", "--gen_kwargs", "max_gen_toks=4", "--log_samples", "--batch_size", "2"]
STEPS = [2, 4, 6, 8]
STANDIN = ROOT / "tests" / "toolkit" / "vllm_standin"


def _train(model: Path, out: Path, *extra: str) -> Path:
    proc = run_command([sys.executable, "-m", "finetune.sft", "--config", str(CONFIG), "--model_name_or_path",
                        str(model), "--output_dir", str(out), *FAST, *extra], lm_eval_env(), ROOT)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return out


def _evaluate(*args, env=None) -> subprocess.CompletedProcess:
    return run_command([sys.executable, "-m", "finetune.evaluate", *map(str, args)], env or lm_eval_env(), ROOT,
                       600)


@pytest.fixture(scope="module")
def runs(tiny_model, tmp_path_factory):
    """One LoRA and one QLoRA run (fp4, no double quantization: not the NF4 defaults), 4 checkpoints each,
    each evaluated by one finetune.evaluate command."""
    root = tmp_path_factory.mktemp("evaluate")
    lora = _train(tiny_model, root / "lora")
    qlora = _train(tiny_model, root / "qlora", "--method", "qlora", "--bnb_4bit_quant_type", "fp4",
                   "--bnb_4bit_use_double_quant", "false")
    procs = {}
    for name, run in (("lora", lora), ("qlora", qlora)):
        procs[name] = _evaluate(run, *EVAL, *(["--include_base"] if name == "lora" else []),
                                "--output_path", root / f"out_{name}")
        assert procs[name].returncode == 0, procs[name].stderr[-3000:]
    return {"model": tiny_model, "lora": lora, "qlora": qlora, "root": root, "procs": procs,
            "out": {"lora": root / "out_lora", "qlora": root / "out_qlora"}}


def _results(folder: Path) -> dict:
    [path] = folder.rglob("results_*.json")
    return json.loads(path.read_text())


def _untimed(value):
    """``value`` without wall-clock figures (the rollout accounting's ``latency_s``), which no two runs share."""
    if isinstance(value, str) and value.startswith("{"):
        try:
            return _untimed(json.loads(value))
        except ValueError:
            return value
    if isinstance(value, dict):
        return {k: _untimed(v) for k, v in value.items() if not k.startswith("latency")}
    if isinstance(value, list):
        return [_untimed(v) for v in value]
    return value


def _replies(folder: Path, task: str) -> list:
    return [_untimed([s["doc_id"], s["resps"], s["filtered_resps"]]) for s in read_samples(folder, task)]


def _assert_same_evaluation(ours: Path, reference: Path):
    for task in TASKS.split(","):
        assert _replies(ours, task) == _replies(reference, task), task
    assert _untimed(_results(ours)["results"]) == _untimed(_results(reference)["results"])


# --- LoRA: equal to plain lm_eval, one base load -----------------------------------------------------------

@pytest.mark.slow
def test_run_folder_expands_to_checkpoints_then_final(runs):
    out = runs["out"]["lora"]
    assert sorted(p.name for p in (out / "lora").iterdir()) == sorted([f"checkpoint-{s}" for s in STEPS] + ["final"])
    assert (out / "base").is_dir()
    lines = [ln for ln in runs["procs"]["lora"].stdout.splitlines() if " -> " in ln]
    assert [ln.split()[1] for ln in lines] == ["base", *(f"lora/checkpoint-{s}" for s in STEPS), "lora/final"]
    assert runs["procs"]["lora"].stdout.count("loaded once") == 1
    assert not list(out.rglob(".*tmp*"))
    for step in STEPS:
        config = _results(out / "lora" / f"checkpoint-{step}")["config"]
        assert config["model_args"] == f"pretrained={runs['model']},peft={runs['lora']}/checkpoint-{step}"
        assert (config["model"], config["batch_size"]) == ("hf", 2)  # as `lm_eval --model hf` records it
    assert _results(out / "lora" / "final")["config"]["model_args"] == f"pretrained={runs['model']},peft={runs['lora']}"
    assert _results(out / "base")["config"]["model_args"] == f"pretrained={runs['model']}"


@pytest.mark.slow
@pytest.mark.parametrize("name", [*(f"checkpoint-{s}" for s in STEPS), "base"])
def test_lora_equals_a_separate_lm_eval_run(runs, name, tmp_path):
    """Each checkpoint (and the bare base) as a plain `lm_eval --model_args pretrained=BASE,peft=CK` run."""
    args = f"pretrained={runs['model']}" + ("" if name == "base" else f",peft={runs['lora']}/{name}")
    run_lm_eval(["--model", "hf", "--model_args", args, *EVAL], output=tmp_path)
    ours = runs["out"]["lora"] / ("base" if name == "base" else f"lora/{name}")
    _assert_same_evaluation(ours, tmp_path)


@pytest.mark.slow
def test_checkpoints_differ_from_each_other(runs):
    out = runs["out"]["lora"]
    replies = [_replies(out / "lora" / f"checkpoint-{s}", "recipe_mpr_fold0") for s in STEPS]
    assert all(a != b for a, b in itertools.pairwise(replies))  # each step's own adapter was active


# --- QLoRA: the run's quantization, equal to a fresh 4-bit load per checkpoint ------------------------------

FRESH_QLORA = """
import json, sys, torch
from pathlib import Path
from lm_eval import simple_evaluate
from lm_eval.loggers import EvaluationTracker
from lm_eval.models.huggingface import HFLM
from peft import PeftModel
from transformers import AutoModelForCausalLM, AutoTokenizer, BitsAndBytesConfig
from qa_tasks.rollout import wrap

base, run, out, tasks = sys.argv[1:5]
for step in sys.argv[5:]:  # a fresh 4-bit base per checkpoint, as the run's manifest describes it
    hp = json.loads((Path(run) / "manifest.json").read_text())["hyperparameters"]
    quant = BitsAndBytesConfig(load_in_4bit=True, bnb_4bit_quant_type=hp["bnb_4bit_quant_type"],
                               bnb_4bit_use_double_quant=hp["bnb_4bit_use_double_quant"],
                               bnb_4bit_compute_dtype=torch.float32)
    model = AutoModelForCausalLM.from_pretrained(base, quantization_config=quant, dtype=torch.float32)
    model = PeftModel.from_pretrained(model, f"{run}/checkpoint-{step}").eval()
    tok = AutoTokenizer.from_pretrained(base)
    lm = wrap(HFLM(pretrained=model, tokenizer=tok, batch_size=2))
    tracker = EvaluationTracker(output_path=f"{out}/{step}/results.json")
    with torch.no_grad():
        res = simple_evaluate(model=lm, tasks=tasks.split(","), limit=2, gen_kwargs="max_gen_toks=4",
                              log_samples=True, evaluation_tracker=tracker, fewshot_as_multiturn=None)
    samples = res.pop("samples")
    tracker.save_results_aggregated(results=res, samples=samples)
    for name in res["configs"]:
        tracker.save_results_samples(task_name=name, samples=samples[name])
"""


@pytest.mark.slow
def test_qlora_uses_the_runs_quantization_and_equals_fresh_loads(runs, tmp_path):
    out, run = runs["out"]["qlora"], runs["qlora"]
    assert "(4-bit fp4) and 5 adapter(s) loaded once" in runs["procs"]["qlora"].stdout
    config = _results(out / "qlora" / "checkpoint-2")["config"]
    assert config["model_args"] == (f"pretrained={runs['model']},peft={run}/checkpoint-2,load_in_4bit=True,"
                                    "bnb_4bit_quant_type=fp4,bnb_4bit_use_double_quant=False,"
                                    "bnb_4bit_compute_dtype=auto")
    proc = run_command([sys.executable, "-c", FRESH_QLORA, runs["model"], run, tmp_path, TASKS, *STEPS],
                       lm_eval_env(), ROOT)
    assert proc.returncode == 0, proc.stderr[-3000:]
    for step in STEPS:
        _assert_same_evaluation(out / "qlora" / f"checkpoint-{step}", tmp_path / str(step))
    record = json.loads((out / "qlora" / "checkpoint-2" / "evaluate.json").read_text())
    assert record["setup"]["quantization"]["bnb_4bit_quant_type"] == "fp4"
    assert record["setup"]["quantization"]["bnb_4bit_use_double_quant"] is False


# --- resume, signals --------------------------------------------------------------------------------------

@pytest.mark.slow
def test_rerun_skips_what_exists_and_redoes_what_changed(runs, tmp_path):
    out = tmp_path / "out"
    shutil.copytree(runs["out"]["lora"], out)
    before = {p: p.stat().st_mtime_ns for p in out.rglob("results_*.json")}
    proc = _evaluate(runs["lora"], *EVAL, "--include_base", "--output_path", out)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "loaded once" not in proc.stdout and proc.stdout.count("skipped") == 6  # nothing loads
    assert {p: p.stat().st_mtime_ns for p in out.rglob("results_*.json")} == before
    # another adapter content (here: its recorded fingerprint no longer matches) is evaluated again
    record = out / "lora" / "checkpoint-4" / "evaluate.json"
    record.write_text(record.read_text().replace('"fingerprint": "', '"fingerprint": "0'))
    proc = _evaluate(runs["lora"], *EVAL, "--include_base", "--output_path", out)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert [ln.split()[1] for ln in proc.stdout.splitlines() if " -> " in ln] == ["lora/checkpoint-4"]


def test_fingerprint_follows_adapter_bytes_and_settings(tmp_path):
    from finetune.adapters import fingerprint

    (tmp_path / "adapter_config.json").write_text("{}")
    (tmp_path / "adapter_model.safetensors").write_bytes(b"a")
    first = fingerprint(tmp_path, {"tasks": ["x"], "limit": 2})
    assert fingerprint(tmp_path, {"limit": 2, "tasks": ["x"]}) == first
    assert fingerprint(tmp_path, {"tasks": ["x"], "limit": 3}) != first
    (tmp_path / "adapter_model.safetensors").write_bytes(b"b")
    assert fingerprint(tmp_path, {"tasks": ["x"], "limit": 2}) != first


@pytest.mark.slow
def test_sigterm_stops_within_seconds_and_leaves_only_complete_results(runs, tmp_path):
    out = tmp_path / "out"
    cmd = [sys.executable, "-m", "finetune.evaluate", runs["lora"], *EVAL, "--output_path", out]
    proc = subprocess.Popen(list(map(str, cmd)), cwd=ROOT, env=lm_eval_env(), stdout=subprocess.PIPE,
                            stderr=subprocess.DEVNULL, text=True)
    for line in proc.stdout:  # the first checkpoint is done: the second is under way
        if " -> " in line:
            break
    sent = time.monotonic()
    proc.send_signal(signal.SIGTERM)
    proc.wait(timeout=30)
    assert time.monotonic() - sent < 10 and proc.returncode == 128 + signal.SIGTERM
    assert not list(out.rglob(".*tmp*"))
    done = [p for p in (out / "lora").iterdir()]
    assert 1 <= len(done) < 5
    for folder in done:  # whatever is there is complete
        assert (folder / "evaluate.json").is_file() and list(folder.glob("results_*.json"))


# --- vLLM: one engine for every checkpoint ------------------------------------------------------------------

@pytest.mark.slow
def test_vllm_one_engine_one_lora_request_per_checkpoint(runs, tmp_path):
    log = tmp_path / "engine.jsonl"
    env = lm_eval_env(VLLM_STANDIN_LOG=str(log))
    env["PYTHONPATH"] = f"{STANDIN}:{SITE}:{ROOT}"
    proc = _evaluate(runs["lora"], "--model", "vllm", *EVAL, "--output_path", tmp_path / "out", env=env)
    assert proc.returncode == 0, proc.stderr[-3000:]
    events = [json.loads(line) for line in log.read_text().splitlines()]
    [construct] = [e for e in events if e["event"] == "construct"]
    assert construct["enable_lora"] is True and construct["max_lora_rank"] == 16
    served = [e["lora"] for e in events if e["event"] == "generate"]
    adapters = [f"{runs['lora']}/checkpoint-{s}" for s in STEPS] + [str(runs["lora"])]
    assert all(len(x) == 1 for x in served)
    assert list(dict.fromkeys(x[0] for x in served)) == adapters  # each in turn, in step order
    config = _results(tmp_path / "out" / "lora" / "checkpoint-2")["config"]
    assert config["model"] == "vllm"
    assert config["model_args"] == (f"pretrained={runs['model']},enable_lora=True,"
                                    f"lora_local_path={runs['lora']}/checkpoint-2,max_lora_rank=16")


# --- bad input: one line, exit 2, nothing loaded -----------------------------------------------------------

def _fake_adapter(folder: Path, base: str, **config) -> Path:
    folder.mkdir(parents=True)
    (folder / "adapter_config.json").write_text(json.dumps({"base_model_name_or_path": base, "r": 8,
                                                            "peft_type": "LORA", **config}))
    (folder / "adapter_model.safetensors").write_bytes(b"")
    return folder


@pytest.fixture
def no_model_load(monkeypatch):
    import finetune.resident

    def refuse(*a, **k):
        raise AssertionError("a model was loaded")

    monkeypatch.setattr(finetune.resident, "load_base", refuse)
    monkeypatch.setattr(finetune.resident.ResidentVLLM, "__init__", refuse)


def _main_error(capsys, *argv) -> str:
    from finetune.evaluate import main

    assert main([*map(str, argv), "--tasks", "recipe_mpr_fold0", "--output_path", "/nonexistent/out"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: ") and "\n" not in err, err
    return err


@pytest.mark.parametrize("case", ["empty_folder", "not_a_folder", "different_bases", "dora", "modules_to_save",
                                  "rank_too_high", "peft_in_model_args"])
def test_bad_input_is_one_line_exit_2(case, tmp_path, tiny_model, capsys, no_model_load):
    base = str(tiny_model)
    a = _fake_adapter(tmp_path / "a", base)
    argv = {
        "empty_folder": [(tmp_path / "empty").mkdir() or tmp_path / "empty"],
        "not_a_folder": [tmp_path / "missing"],
        "different_bases": [a, _fake_adapter(tmp_path / "b", "/some/other/base")],
        "dora": [_fake_adapter(tmp_path / "d", base, use_dora=True), "--model", "vllm"],
        "modules_to_save": [_fake_adapter(tmp_path / "m", base, modules_to_save=["lm_head"]), "--model", "vllm"],
        "rank_too_high": [_fake_adapter(tmp_path / "r", base, r=1024), "--model", "vllm"],
        "peft_in_model_args": [a, "--model_args", f"pretrained={base},peft={a}"],
    }[case]
    err = _main_error(capsys, *argv)
    expected = {"empty_folder": "holds no adapter", "not_a_folder": "is not a folder",
                "different_bases": "different bases", "dora": "DoRA", "modules_to_save": "modules_to_save",
                "rank_too_high": "rank 1024", "peft_in_model_args": "positional"}[case]
    assert expected in err, err


def test_adapter_tokenizer_with_tokens_the_base_lacks(tmp_path, tiny_model, capsys, no_model_load):
    from transformers import AutoTokenizer

    adapter = _fake_adapter(tmp_path / "a", str(tiny_model))
    tokenizer = AutoTokenizer.from_pretrained(tiny_model)
    tokenizer.add_tokens(["<new_tool_token>"])
    tokenizer.save_pretrained(adapter)
    assert "<new_tool_token>" in _main_error(capsys, adapter)


def test_help_prints_at_once_without_torch():
    code = ("import sys; from finetune.evaluate import main\n"
            "try:\n    main(['--help'])\nexcept SystemExit:\n    pass\n"
            "assert 'torch' not in sys.modules and 'lm_eval' not in sys.modules")
    env = {k: v for k, v in lm_eval_env().items() if k != "PYTHONPATH"}
    env["PYTHONPATH"] = str(ROOT)
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, cwd=ROOT,
                          timeout=60, check=False)
    assert proc.returncode == 0, proc.stderr
    assert "RUN_OR_ADAPTER" in proc.stdout and "--include_base" in proc.stdout


# --- consumers: leaderboards, watch, bench -------------------------------------------------------------------

@pytest.mark.slow
def test_leaderboard_shows_the_progression_unchanged(runs, tmp_path):
    md = tmp_path / "board.md"
    proc = run_command([sys.executable, "-m", "leaderboards", "build", runs["out"]["lora"], "-o", md,
                        "--no-plots"], lm_eval_env(), ROOT, 300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    text = md.read_text()
    progression = text[text.index("Training progression"):]
    for step in STEPS:
        assert f"| {step} |" in progression, progression[:1500]


@pytest.mark.slow
@pytest.mark.parametrize("method", ["lora", "qlora"])
def test_watch_loads_the_base_once(runs, method, tmp_path, monkeypatch):
    import finetune.resident
    from finetune.watch import watch

    run = tmp_path / "run"
    shutil.copytree(runs[method], run)
    loads = []
    original = finetune.resident.load_base
    monkeypatch.setattr(finetune.resident, "load_base", lambda *a, **k: loads.append(a) or original(*a, **k))
    written = watch(run, ["recipe_mpr_fold0"], limit=2, batch_size=2, once=True, log=lambda *_: None)
    assert [p.name for p in written] == [f"step-{s}" for s in STEPS] and len(loads) == 1
    for step in STEPS:  # the same numbers as finetune.evaluate's for that checkpoint
        ours = _results(run / "eval" / f"step-{step}")
        assert ours["config"]["model_args"] == f"pretrained={runs['model']},peft={run}/checkpoint-{step}"
        theirs = _results(runs["out"][method] / method / f"checkpoint-{step}")
        assert ours["results"]["recipe_mpr_fold0"] == theirs["results"]["recipe_mpr_fold0"]


def test_the_bench_command_is_recorded():
    """tests/test_bench_commands.py reruns every recorded command at smoke size, this one included."""
    assert commands("bench.bench_checkpoints"), "bench/RESULTS.md records no python -m bench.bench_checkpoints"

