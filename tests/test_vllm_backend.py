"""``lm_eval --model vllm`` through lm-eval's real ``VLLM`` class, on the test-only vLLM stand-in.

The stand-in (tests/toolkit/vllm_standin) implements the part of vLLM's API that lm-eval 0.4.13's
``vllm_causallms.py`` calls, backed by transformers: this is a contract test of lm-eval's vLLM
wrapper and of the pack, not of vLLM. It records every engine construction and generate call
($VLLM_STANDIN_LOG), so the tests can see rounds, adapters and chat rendering from the engine's side.
"""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from tests.toolkit.env import BIN, ROOT, SITE, lm_eval_env
from tests.toolkit.lm_eval_runs import read_samples, run_lm_eval

STANDIN = ROOT / "tests" / "toolkit" / "vllm_standin"
TASKS = "recipe_mpr,squad_batch,squad_sequential"
LIMIT = "2"


def standin_env(log) -> dict[str, str]:
    env = lm_eval_env(VLLM_STANDIN_LOG=str(log))
    env["PYTHONPATH"] = f"{STANDIN}:{SITE}:{ROOT}"
    return env


def events(log) -> list[dict]:
    return [json.loads(line) for line in log.read_text().splitlines()] if log.exists() else []


def make_adapter(base, out, **lora):
    """A LoRA adapter on the tiny model, with random (not zero) B so it changes the outputs."""
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    config = LoraConfig(task_type="CAUSAL_LM", target_modules=["q_proj", "v_proj"], init_lora_weights=False,
                        **{"r": 8, "lora_alpha": 16, **lora})
    get_peft_model(AutoModelForCausalLM.from_pretrained(base), config).save_pretrained(out)
    return out


@pytest.fixture(scope="module")
def adapter(tiny_model, tmp_path_factory):
    return make_adapter(tiny_model, tmp_path_factory.mktemp("adapter") / "r8")


def _run(tmp, model_args: str, *extra: str):
    log, out = tmp / "engine.jsonl", tmp / "out"
    _, results = run_lm_eval(["run", "--model", "vllm", "--model_args", model_args, "--tasks", TASKS,
                              "--limit", LIMIT, "--batch_size", "auto", "--log_samples", *extra],
                             output=out, env=standin_env(log))
    return results, events(log), out


@pytest.fixture(scope="module")
def plain(tiny_model, tmp_path_factory):
    return _run(tmp_path_factory.mktemp("vllm_plain"), f"pretrained={tiny_model}")


@pytest.fixture(scope="module")
def chat_lora(tiny_model, adapter, tmp_path_factory):
    return _run(tmp_path_factory.mktemp("vllm_chat_lora"),
                f"pretrained={tiny_model},enable_lora=True,lora_local_path={adapter}", "--apply_chat_template")


def _generations(log: list[dict]) -> list[dict]:
    return [e for e in log if e["event"] == "generate" and not e["prompt_logprobs"]]


@pytest.mark.slow
@pytest.mark.parametrize("run", ["plain", "chat_lora"])
def test_all_tasks_run_through_lm_evals_vllm_class(run, request):
    results, log, _ = request.getfixturevalue(run)
    res = results["results"]
    assert set(TASKS.split(",")) <= set(res)
    assert 0 <= res["recipe_mpr"]["acc,none"] <= 1
    assert res["squad_batch"]["rounds,none"] == 1
    seq = res["squad_sequential"]
    assert seq["rounds,none"] > 1 and seq["calls,none"] == seq["rounds,none"]  # one call per question
    assert results["config"]["model"] == "vllm"
    # one engine for the whole run; every rollout round is one LLM.generate batch holding every
    # passage's next call (round 1 also carries all of squad_batch's calls)
    assert [e["event"] for e in log].count("construct") == 1
    gens = _generations(log)
    assert len(gens) == seq["rounds,none"]
    assert gens[0]["n"] == round(res["squad_batch"]["calls,none"] * int(LIMIT)) + int(LIMIT)
    assert all(g["n"] <= int(LIMIT) for g in gens[1:])
    assert any(e.get("prompt_logprobs") for e in log)  # recipe_mpr's loglikelihoods


@pytest.mark.slow
def test_plain_run_sends_plain_text(plain):
    _, log, _ = plain
    assert all("<|im_start|>" not in p for e in log if e["event"] == "generate" for p in e["prompts"])
    assert all(e["lora"] == [None] for e in log if e["event"] == "generate")


@pytest.mark.slow
def test_chat_run_renders_every_call_and_serves_the_adapter(chat_lora, adapter, plain):
    _, log, out = chat_lora
    [construct] = [e for e in log if e["event"] == "construct"]
    assert construct["enable_lora"] is True and construct["max_lora_rank"] == 16
    gens = [e for e in log if e["event"] == "generate"]
    assert gens and all(e["lora"] == [str(adapter)] for e in gens)
    for gen in _generations(log):  # every round's prompts went through the tiny model's chat template
        assert all(p.startswith("<|im_start|>user\n") and p.endswith("<|im_start|>assistant\n")
                   for p in gen["prompts"])
    # later sequential turns carry the model's own earlier replies as assistant turns
    assert any(p.count("<|im_start|>assistant\n") >= 2 for p in _generations(log)[-1]["prompts"])
    # the adapter changes the scores: recipe_mpr loglikelihoods differ from the plain base run
    ours = [s["resps"] for s in read_samples(out, "recipe_mpr")]
    base = [s["resps"] for s in read_samples(plain[2], "recipe_mpr")]
    assert ours != base


AGREEMENT_CHECK = """
import json, sys, torch
from transformers import AutoModelForCausalLM
from vllm import LLM, SamplingParams, TokensPrompt
llm = LLM(sys.argv[1])
tok = llm.get_tokenizer()
ids = tok("Question: What is 2 + 3? Answer with the letter of the best option.").input_ids
[gen, lp] = llm.generate([TokensPrompt(prompt_token_ids=ids)] * 2,
                         [SamplingParams(temperature=0, max_tokens=12, stop=[]),
                          SamplingParams(temperature=0, prompt_logprobs=1, max_tokens=1, detokenize=False)])
hf = AutoModelForCausalLM.from_pretrained(sys.argv[1])
greedy = hf.generate(torch.tensor([ids]), max_new_tokens=12, do_sample=False, eos_token_id=tok.eos_token_id,
                     pad_token_id=tok.pad_token_id)[0, len(ids):].tolist()
logp = torch.log_softmax(hf(torch.tensor([ids])).logits[0].float(), -1)
expected = [float(logp[i - 1, ids[i]]) for i in range(1, len(ids))]
got = [lp.prompt_logprobs[i][ids[i]].logprob for i in range(1, len(ids))]
print(json.dumps({"greedy": greedy == gen.outputs[0].token_ids, "first_none": lp.prompt_logprobs[0] is None,
                  "max_diff": max(abs(a - b) for a, b in zip(expected, got))}))
"""


@pytest.mark.slow
def test_standin_greedy_tokens_and_prompt_logprobs_match_transformers(tiny_model, tmp_path):
    """The numbers lm-eval reads from the stand-in are the tiny model's own (greedy continuation,
    per-token prompt logprobs with vLLM's leading None)."""
    proc = subprocess.run([sys.executable, "-c", AGREEMENT_CHECK, str(tiny_model)], capture_output=True, text=True,
                          env=standin_env(tmp_path / "log.jsonl"), timeout=300, check=False)
    assert proc.returncode == 0, proc.stderr[-3000:]
    check = json.loads(proc.stdout.splitlines()[-1])
    assert check["greedy"] and check["first_none"] and check["max_diff"] < 1e-5


ADAPTER_CHECK = """
import json, sys
from vllm import LLM, SamplingParams, TokensPrompt
from vllm.lora.request import LoRARequest
model, cases = sys.argv[1], json.loads(sys.argv[2])
engines, out = {}, {}
for name, (path, max_rank) in cases.items():
    try:
        llm = engines.get(max_rank) or engines.setdefault(max_rank, LLM(model, enable_lora=True, max_lora_rank=max_rank))
        [res] = llm.generate([TokensPrompt(prompt_token_ids=[5, 6, 7, 8])],
                             SamplingParams(temperature=0, prompt_logprobs=1, max_tokens=1),
                             lora_request=LoRARequest(name, len(out) + 1, path))
        out[name] = None
    except ValueError as e:
        out[name] = str(e)
print(json.dumps(out))
"""


@pytest.mark.slow
def test_finetune_warns_exactly_for_adapters_vllm_refuses(tiny_model, tmp_path):
    """finetune.vllm_compat predicts the stand-in's (vLLM's) refusals, case by case."""
    from finetune.vllm_compat import serving_problems

    specs = {"r8": {}, "r32": {"r": 32}, "dora": {"use_dora": True}, "saved_head": {"modules_to_save": ["lm_head"]}}
    paths = {name: make_adapter(tiny_model, tmp_path / name, **spec) for name, spec in specs.items()}
    cases = {"r8@16": ("r8", 16), "r32@16": ("r32", 16), "r32@32": ("r32", 32), "dora@16": ("dora", 16),
             "saved_head@16": ("saved_head", 16), "r8@12": ("r8", 12)}
    arg = json.dumps({case: (str(paths[name]), rank) for case, (name, rank) in cases.items()})
    proc = subprocess.run([sys.executable, "-c", ADAPTER_CHECK, str(tiny_model), arg], capture_output=True,
                          text=True, env=standin_env(tmp_path / "log.jsonl"), timeout=300, check=False)
    assert proc.returncode == 0, proc.stderr[-3000:]
    refused = json.loads(proc.stdout.splitlines()[-1])
    assert refused.pop("r8@12").startswith("1 validation error for LoRAConfig\nmax_lora_rank")
    del cases["r8@12"]  # an engine setting, not the adapter: the pack refuses it in lm_eval's model_args
    assert refused == {"r8@16": None, "r32@16": "LoRA rank 32 is greater than max_lora_rank 16.", "r32@32": None,
                       "dora@16": "vLLM does not yet support DoRA.",
                       "saved_head@16": "vLLM only supports modules_to_save being None."}
    for case, (name, rank) in cases.items():
        problems = serving_problems(paths[name], max_lora_rank=rank)
        assert bool(problems) == (refused[case] is not None), (case, problems)
    assert "max_lora_rank=32" in serving_problems(paths["r32"])[0]


# lm_eval's CLI with the pack's data-parallel refusal switched off, to count what it prevents
UNGUARDED_LM_EVAL = """
import sys
import qa_tasks.harness.checks
qa_tasks.harness.checks.multi_round = lambda tasks: []
from lm_eval.__main__ import cli_evaluate
sys.argv = ["lm_eval", *sys.argv[1:]]
cli_evaluate()
"""


def _dp_run(tmp, tiny_model, tasks: str, guarded: bool = True):
    tmp.mkdir()
    log = tmp / "engine.jsonl"
    args = ["run", "--model", "vllm", "--model_args", f"pretrained={tiny_model},data_parallel_size=2",
            "--tasks", tasks, "--limit", "2", "--output_path", str(tmp / "out")]
    cmd = [str(BIN / "lm_eval"), *args] if guarded else [sys.executable, "-c", UNGUARDED_LM_EVAL, *args]
    proc = subprocess.run(cmd, capture_output=True, text=True, env=standin_env(log), timeout=600, check=False)
    files = sorted((tmp / "out").rglob("results_*.json"))
    return proc, json.loads(files[-1].read_text()) if files else None, events(log)


@pytest.mark.slow
def test_data_parallel_multi_call_runs_are_refused_before_reloading_per_round(tiny_model, tmp_path):
    """lm-eval 0.4.13 builds a fresh LLM in each Ray worker on every generate call, and a rollout makes
    one generate call per round: unguarded, 2 workers x 5 rounds = 10 model loads (1 without data
    parallelism). The pack refuses such runs before any model loads."""
    proc, results, log = _dp_run(tmp_path / "unguarded", tiny_model, "squad_batch,squad_sequential", guarded=False)
    assert proc.returncode == 0, proc.stderr[-3000:]
    rounds = results["results"]["squad_sequential"]["rounds,none"]
    assert rounds > 1 and results["results"]["squad_batch"]["rounds,none"] == 1
    assert [e["event"] for e in log].count("construct") == 2 * rounds

    proc, _, log = _dp_run(tmp_path / "guarded", tiny_model, "squad_batch,squad_sequential")
    assert proc.returncode == 2
    assert proc.stderr.strip().splitlines()[-1].startswith("error: data_parallel_size=2 with squad_sequential")
    assert "tensor_parallel_size" in proc.stderr and "Traceback" not in proc.stderr
    assert log == []  # refused before any engine was built


@pytest.mark.parametrize(("config", "max_lora_rank", "expected"), [
    ({"r": 16}, 16, []),
    ({"r": 4}, 16, []),
    ({"r": 32}, 16, [("rank 32 is above max_lora_rank 16 (lm-eval's default for --model vllm); "
                     "add max_lora_rank=32 to --model_args (vllm serve: --max-lora-rank 32)")]),
    ({"r": 33}, 16, [("rank 33 is above max_lora_rank 16 (lm-eval's default for --model vllm); "
                     "add max_lora_rank=64 to --model_args (vllm serve: --max-lora-rank 64)")]),
    ({"r": 32}, 32, []),
    ({"r": 1024}, 512, [("rank 1024 is above vLLM's largest max_lora_rank (512); train with lora_r <= 512 or "
                        "serve the merged model instead (python -m finetune.merge)")]),
    ({"r": 8, "modules_to_save": ["lm_head"]}, 16,
     [("modules_to_save (lm_head): vLLM refuses adapters that carry fully trained modules; "
      "serve the merged model instead (python -m finetune.merge)")]),
    ({"r": 8, "use_dora": True}, 16,
     ["DoRA: vLLM does not load DoRA adapters; serve the merged model instead (python -m finetune.merge)"]),
])
def test_vllm_serving_problems(config, max_lora_rank, expected):
    from finetune.vllm_compat import serving_problems

    assert serving_problems(config, max_lora_rank) == expected


def test_finetune_warning_lines_from_a_peft_config(capsys):
    from peft import LoraConfig

    from finetune.vllm_compat import warn_unservable

    problems = warn_unservable(LoraConfig(r=64, modules_to_save=["lm_head"]))
    lines = capsys.readouterr().err.splitlines()
    assert len(problems) == 2 and len(lines) == 2
    assert all(line.startswith("[finetune] warning: vLLM cannot serve this adapter as trained: ") for line in lines)
    assert warn_unservable(LoraConfig(r=8)) == [] and capsys.readouterr().err == ""
