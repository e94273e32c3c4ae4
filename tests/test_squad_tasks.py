"""The five SQuAD tasks end to end through the real ``lm_eval`` CLI.

Scripted runs (gold answers, known scores): one plain run in the right format, one chat-template run
in the wrong format with a failing planner. Tiny-model runs: the hf backend on CPU with and without
``--apply_chat_template``. Plus the single-query latency command.
"""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from qa_tasks import rollout, squad
from qa_tasks.errors import QAPackError
from qa_tasks.squad import metrics as m
from tests.toolkit.env import DATA_DIR, ROOT, lm_eval_env
from tests.toolkit.lm_eval_runs import read_samples, run_command, run_lm_eval
from tests.toolkit.scripted_lm import ScriptedLM, one_line_error

STRATEGY_TASKS = ["squad_all_in_one", "squad_batch", "squad_sequential", "squad_collab"]
ALL_TASKS = STRATEGY_TASKS + ["squad_v1"]
RESPONDER = "responder=tests.toolkit.squad_responders:gold"
META = {"min_questions": 2, "max_questions": 4}  # first passages then hold 3, 4 (sampled from 5) and 4

pytestmark = pytest.mark.slow


def _log(path):
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def _scripted(tmp_path_factory, name, model_args, extra):
    out = tmp_path_factory.mktemp(name)
    log = out / "log.jsonl"
    _, results = run_lm_eval(["run", "--model", "scripted", "--model_args", f"{RESPONDER},log={log},{model_args}",
                              "--tasks", "squad_strategies,squad_v1", "--metadata", json.dumps(META),
                              "--log_samples", *extra], output=out / "results")
    return {"results": results["results"], "out": out / "results", "log": _log(log)}


@pytest.fixture(scope="module")
def gold_run(tmp_path_factory):
    return _scripted(tmp_path_factory, "gold", "style=tagged,planner=reverse", ["--limit", "3"])


@pytest.fixture(scope="module")
def wrong_chat_run(tmp_path_factory):
    return _scripted(tmp_path_factory, "wrong", "style=wrong,planner=bad", ["--limit", "2", "--apply_chat_template"])


def _result(sample):
    return json.loads(sample["resps"][0][0])


def _prompts(run):
    return {e["args"][0]: e["answer"] for e in run["log"]}


def test_gold_answers_score_one_on_all_five_tasks(gold_run):
    for task in ALL_TASKS:
        res = gold_run["results"][task]
        for key in m.QUESTION_METRICS:
            assert res[f"{key},none"] == 1.0, (task, key)
    assert gold_run["results"]["squad_v1"]["n_questions,none"] == 3
    assert gold_run["results"]["squad_batch"]["n_questions,none"] == 11  # 3 + 4 + 4


def test_documents_are_the_seeded_passage_sample(gold_run):
    expected = squad.load_passages("validation", **META)[:3]
    docs = [s["doc"] for s in read_samples(gold_run["out"], "squad_sequential")]
    assert [squad.Passage.from_dict(d) for d in docs] == expected
    assert [len(p.questions) for p in expected] == [3, 4, 4]
    assert [q.qid for q in expected[1].questions] == ["Q1", "Q2", "Q3", "Q4"]


def test_sequential_history_holds_the_models_own_replies(gold_run):
    prompts = _prompts(gold_run)
    for sample in read_samples(gold_run["out"], "squad_sequential"):
        passage = squad.Passage.from_dict(sample["doc"])
        replies = [_result(sample)["output"]["replies"][q.qid] for q in passage.questions]
        for k in range(len(replies)):
            prompt = rollout.render_plain(squad.sequential_messages(passage, replies[:k]))
            assert prompts.get(prompt) == replies[k]  # the model got exactly this history and gave this reply
            assert (passage.context.strip() in prompt) and prompt.count("Passage:") == 1


def test_rounds_and_backend_calls(gold_run):
    res = gold_run["results"]
    assert res["squad_sequential"]["rounds,none"] == 4  # the largest question count
    assert res["squad_collab"]["rounds,none"] == 5  # planner + 4
    assert res["squad_batch"]["rounds,none"] == res["squad_all_in_one"]["rounds,none"] == 1
    for sample in read_samples(gold_run["out"], "squad_sequential"):
        assert _result(sample)["rollout"]["rounds"] == len(sample["doc"]["questions"])
    # every task ran in one lm-eval generate_until: backend calls = the deepest plan's rounds, not Σ questions
    assert max(e["batch"] for e in gold_run["log"]) == 5
    assert len({e["batch"] for e in gold_run["log"]}) == 5
    v1_prompts = {squad.batch_prompt(squad.Passage.from_dict(s["doc"]), 0) for s in read_samples(gold_run["out"], "squad_v1")}
    assert v1_prompts <= {e["args"][0] for e in gold_run["log"] if e["batch"] == 1}  # plain requests ride round 1


def test_collab_follows_the_planner(gold_run):
    prompts = list(_prompts(gold_run))
    for sample in read_samples(gold_run["out"], "squad_collab"):
        out = _result(sample)["output"]
        qids = [q["qid"] for q in sample["doc"]["questions"]]
        assert out["order"] == qids[::-1] and out["planner_failure"] is None
    assert any(p.startswith("Passage:") and "Related Q&A:\nQ: " in p for p in prompts)
    assert gold_run["results"]["squad_collab"]["planner_failures,none"] == 0


def test_cost_columns(gold_run):
    res = gold_run["results"]
    per_q = {t: res[t]["prompt_tokens_api,none"] for t in STRATEGY_TASKS}
    assert per_q["squad_all_in_one"] < per_q["squad_batch"] < per_q["squad_sequential"] < per_q["squad_collab"]
    assert res["squad_batch"]["prompt_tokens,none"] < res["squad_batch"]["prompt_tokens_api,none"]
    assert res["squad_collab"]["dep_tokens,none"] > 0 == res["squad_sequential"]["dep_tokens,none"]
    assert res["squad_collab"]["gen_tokens_api,none"] > res["squad_collab"]["gen_tokens,none"]
    assert res["squad_batch"]["calls,none"] == pytest.approx(11 / 3)
    for task in STRATEGY_TASKS:
        assert res[task]["latency_s,none"] > 0 and res[task]["n_passages,none"] == 3


def test_wrong_format_scores_zero_em_but_overlapping_f1(wrong_chat_run):
    for task in ALL_TASKS:
        res = wrong_chat_run["results"][task]
        assert res["em,none"] == 0.0 and res["em_official,none"] == 0.0, task
        assert 0.0 < res["f1,none"] < 1.0 and res["lenient,none"] == 1.0, task


def test_chat_template_renders_the_multi_turn_history(wrong_chat_run):
    prompts = _prompts(wrong_chat_run)
    assert all(p.startswith("<|im_start|>user\n") for p in prompts)
    for sample in read_samples(wrong_chat_run["out"], "squad_sequential"):
        passage = squad.Passage.from_dict(sample["doc"])
        replies = [_result(sample)["output"]["replies"][q.qid] for q in passage.questions]
        for k in range(len(replies)):
            chat = ScriptedLM.apply_chat_template(None, squad.sequential_messages(passage, replies[:k]))
            assert prompts.get(chat) == replies[k]


def test_bad_planner_falls_back_and_is_counted(wrong_chat_run):
    assert wrong_chat_run["results"]["squad_collab"]["planner_failures,none"] == 2
    for sample in read_samples(wrong_chat_run["out"], "squad_collab"):
        out = _result(sample)["output"]
        assert out["order"] == [q["qid"] for q in sample["doc"]["questions"]] and out["planner_failure"]


@pytest.fixture(scope="module", params=[False, True], ids=["plain", "chat"])
def tiny_run(request, tiny_model, tmp_path_factory):
    out = tmp_path_factory.mktemp("tiny")
    extra = ["--apply_chat_template"] if request.param else []
    # short generations and batching keep the untrained model (it never stops early) cheap on CPU
    _, results = run_lm_eval(["run", "--model", "hf", "--model_args", f"pretrained={tiny_model}", "--device", "cpu",
                              "--tasks", "squad_strategies,squad_v1", "--limit", "3", "--log_samples",
                              "--batch_size", "16", "--gen_kwargs", "max_gen_toks=8", *extra], output=out,
                             env=lm_eval_env(OMP_NUM_THREADS="1"))  # one thread: no oversubscription on shared CPUs
    return request.param, results, out


def test_tiny_hf_model_runs_all_tasks(tiny_run, tiny_model):
    from transformers import AutoTokenizer

    chat, results, out = tiny_run
    res = results["results"]
    for task in ALL_TASKS:
        assert 0.0 <= res[task]["f1,none"] <= 1.0
    assert res["squad_sequential"]["rounds,none"] == 5 and res["squad_sequential"]["n_questions,none"] == 15
    tokenizer = AutoTokenizer.from_pretrained(tiny_model)
    sample = read_samples(out, "squad_all_in_one")[0]
    passage = squad.Passage.from_dict(sample["doc"])
    text = squad.all_in_one_prompt(passage)
    if chat:
        assert sample["arguments"]["gen_args_0"]["arg_0"].startswith("<|im_start|>user\n[[qa-pack-rollout:")
        text = tokenizer.apply_chat_template([{"role": "user", "content": text}], tokenize=False,
                                             add_generation_prompt=True)
    # prompt tokens are counted with the evaluated model's own tokenizer
    assert _result(sample)["rollout"]["calls"][0]["prompt_tokens"] == len(tokenizer(text)["input_ids"])


def test_latency_mode_writes_the_leaderboard_record(tiny_model, tmp_path):
    proc = run_command([sys.executable, "-m", "qa_tasks.squad.latency", "--model", "hf", "--model_args",
                        f"pretrained={tiny_model}", "--limit", "2", "--output_path", str(tmp_path)],
                       lm_eval_env(OMP_NUM_THREADS="1"), ROOT, 600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    [path] = tmp_path.rglob("latency_*.json")
    record = json.loads(path.read_text())
    assert set(record) == {"kind", "task", "model", "n", "p50_s", "p95_s", "mean_s", "peak_mem_bytes",
                           "peak_mem_kind", "device"}
    assert record["kind"] == "latency" and record["task"] == "squad_v1" and record["n"] == 2
    assert 0 < record["p50_s"] <= record["p95_s"] and record["peak_mem_kind"] == "cpu_peak_rss"
    assert record["peak_mem_bytes"] > 10 * 2**20 and record["device"] == "cpu"


def test_latency_mode_bad_limit_is_one_line(tmp_path):
    proc = subprocess.run([sys.executable, "-m", "qa_tasks.squad.latency", "--limit", "0", "--output_path",
                           str(tmp_path)], check=False, capture_output=True, text=True, env=lm_eval_env(),
                          cwd=ROOT)
    assert proc.returncode == 2 and proc.stderr.startswith("error: --limit 0") and "Traceback" not in proc.stderr


# --- adversarial replies: one letter for every question, every all_in_one answer on one line -------

@pytest.fixture(scope="module")
def one_letter_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("one_letter")
    _, results = run_lm_eval(["run", "--model", "scripted", "--model_args", f"{RESPONDER},layout=one_line,constant=D",
                              "--tasks", "squad_v1,squad_all_in_one", "--limit", "60", "--log_samples"], output=out)
    return results["results"], out


def test_one_letter_model_scores_lenient_only_where_the_letter_is_a_word(one_letter_run):
    results, out = one_letter_run
    golds = [s["doc"]["questions"][0]["answers"] for s in read_samples(out, "squad_v1")]
    as_word = sum(any("d" in m.normalize_answer(g).split() for g in gs) for gs in golds) / len(golds)
    as_chars = sum(any("d" in m.normalize_answer(g) for g in gs) for gs in golds) / len(golds)
    res = results["squad_v1"]
    assert res["n_questions,none"] == 60 and res["em,none"] == res["f1,none"] == 0.0
    assert res["lenient,none"] == pytest.approx(as_word) and as_word < 0.05
    # the character rule the study used is what the constant letter games (about 0.3 on the runs)
    assert res["lenient_substring,none"] == pytest.approx(as_chars) and as_chars > 0.2


def test_one_line_all_in_one_reply_scores_em_one(one_letter_run):
    results, out = one_letter_run
    samples = read_samples(out, "squad_all_in_one")
    replies = [json.loads(s["resps"][0][0])["output"]["reply"] for s in samples]
    assert all("\n" not in r and r.count("Q") >= 5 for r in replies)  # every answer on one line
    for key in ("em", "em_official", "f1", "lenient"):
        assert results["squad_all_in_one"][f"{key},none"] == 1.0, key


# --- bad data and options: one line, exit 2, before any model loads ---------------------------------

def _squad_file(tmp_path, counts, null_at=None):
    """A SQuAD v1.1 file of passages with ``counts`` questions each (texts copied from the real data);
    ``null_at=(passage, question)`` makes that question's answer text null."""
    real = squad.load_passages("validation", min_questions=5, max_questions=None)
    paragraphs = []
    for i, n in enumerate(counts):
        qas = [{"id": f"p{i}q{j}", "question": q.question, "answers": [{"text": q.answers[0], "answer_start": 0}]}
               for j, q in enumerate(real[i].questions[:n])]
        if null_at and null_at[0] == i:
            qas[null_at[1]]["answers"][0]["text"] = None
        paragraphs.append({"context": real[i].context, "qas": qas})
    (tmp_path / "squad").mkdir(parents=True, exist_ok=True)
    (tmp_path / "squad" / "dev-v1.1.json").write_text(json.dumps({"data": [{"title": "T", "paragraphs": paragraphs}]}))
    return tmp_path


def _stopped_run(tmp_path, tasks, metadata=None, data_dir=None):
    created = tmp_path / "model_created"
    args = ["run", "--model", "scripted", "--model_args", f"{RESPONDER},created={created}", "--tasks", tasks]
    if metadata is not None:
        args += ["--metadata", json.dumps(metadata)]
    env = lm_eval_env(QA_PACK_DATA_DIR=str(data_dir or DATA_DIR))
    proc, _ = run_lm_eval(args, env=env, check=False)
    return one_line_error(proc), created.exists()


def test_null_answer_text_is_a_data_error_naming_the_record(tmp_path):
    data = _squad_file(tmp_path / "data", [5, 5], null_at=(1, 3))
    error, model_created = _stopped_run(tmp_path, "squad_batch", data_dir=data)
    assert "p1q3" in error and "answer text None" in error and "dev-v1.1.json" in error
    assert not model_created


def test_options_that_leave_no_passage_name_the_option(tmp_path):
    error, model_created = _stopped_run(tmp_path, "squad_all_in_one", {"min_questions": 100, "max_questions": 0})
    assert "min_questions=100" in error and "--metadata" in error
    assert not model_created


@pytest.mark.parametrize("counts,options,message", [
    ([2, 3], {}, "min_questions=5 answerable questions (the most is 3)"),  # a file without eligible passages
    ([5], {"min_questions": "x"}, "min_questions='x' is not valid"),
    ([5], {"min_questions": 1.7}, "min_questions=1.7 is not valid"),
    ([5], {"min_questions": 100}, "max_questions=10 is below min_questions=100"),
    ([5], {"min_questions": 2, "max_questions": -1}, "max_questions=-1 is not valid; use an integer (>= 1)"),
    ([5], {"split": "test"}, "split='test' is not a SQuAD split"),
])
def test_bad_passage_options(tmp_path, monkeypatch, counts, options, message):
    monkeypatch.setenv("QA_PACK_DATA_DIR", str(_squad_file(tmp_path, counts)))
    squad.data.paragraphs.cache_clear()
    try:
        for load in (lambda: squad.load_passages(**options), lambda: squad.preflight("squad_batch", options)):
            with pytest.raises(QAPackError) as err:
                load()
            assert message in str(err.value) and "\n" not in str(err.value)
        squad.preflight("squad_batch", None)  # options unknown: only the data is checked
    finally:
        squad.data.paragraphs.cache_clear()


def test_nested_tags_in_another_case_score_the_inner_answer(tmp_path):
    """A reply that re-opens its answer tag inside an upper-case pair is credited with the inner answer
    (the last opened tag), through the real CLI and the rollout layer."""
    _, results = run_lm_eval(["run", "--model", "scripted", "--model_args", f"{RESPONDER},style=nested",
                              "--tasks", "squad_v1,squad_batch,squad_sequential", "--limit", "3", "--log_samples"],
                             output=tmp_path)
    for task in ("squad_v1", "squad_batch", "squad_sequential"):
        scores = results["results"][task]
        assert scores["em,none"] == scores["f1,none"] == 1.0, task
