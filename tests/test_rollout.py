"""The rollout layer in process: rounds across plans, pass-through, chat/plain rendering, accounting,
and the guard that stops multi-call tasks when no model carries the layer."""

from __future__ import annotations

import gc
import json
import threading
import time
import zlib
from pathlib import Path

import pytest
from lm_eval.api.instance import Instance
from lm_eval.api.model import LM

from qa_tasks import rollout, squad
from qa_tasks.errors import QAPackError


class EchoLM(LM):
    """Replies ``r<batch>.<position>`` and records every generate_until batch it receives."""

    def __init__(self) -> None:
        super().__init__()
        self.batches: list[list[tuple]] = []

    def generate_until(self, requests, disable_tqdm: bool = False):
        self.batches.append([r.args for r in requests])
        return [f"r{len(self.batches)}.{i}" for i in range(len(requests))]

    def apply_chat_template(self, chat_history, add_generation_prompt: bool = True):
        text = "".join(f"<{m['role']}>{m['content']}</{m['role']}>" for m in chat_history)
        return text + ("<assistant>" if add_generation_prompt else "")

    def loglikelihood(self, requests, disable_tqdm: bool = False):
        raise NotImplementedError

    def loglikelihood_rolling(self, requests, disable_tqdm: bool = False):
        raise NotImplementedError


class TokLM(EchoLM):
    def tok_encode(self, text, **_):
        return list(range(len(text.split())))  # one id per whitespace word


def _passage(n: int, pid: str = "P/0") -> squad.Passage:
    qs = tuple(squad.Question(f"Q{i + 1}", f"What is item {i + 1}?", (f"item{i + 1}",)) for i in range(n))
    return squad.Passage(pid, "A passage about items.\nIt has two lines.", qs)


def _req(context, kwargs=None, doc=None) -> Instance:
    doc = doc or {}
    return Instance("generate_until", doc, (context, kwargs or {"until": ["\n\n"], "max_gen_toks": 8}), 0,
                    ("t", doc.get("id", 0), 1))


def _plan(strategy: str, passage: squad.Passage) -> str:
    return rollout.plan_text("squad", squad.plan_args(strategy, passage))


@pytest.fixture
def lm():
    model = rollout.wrap(EchoLM())
    yield model
    del model
    gc.collect()


def test_with_rollout_is_cached_named_and_idempotent():
    cls = rollout.with_rollout(EchoLM)
    assert cls is rollout.with_rollout(EchoLM) and cls.__name__ == "EchoLM" and issubclass(cls, EchoLM)
    assert rollout.with_rollout(cls) is cls
    assert rollout.with_rollout(dict) is dict  # not an lm-eval model: unchanged


def test_plain_requests_pass_through_unchanged(lm):
    out = lm.generate_until([_req("hello"), _req("world")])
    assert out == ["r1.0", "r1.1"] and lm.batches == [[("hello", {"until": ["\n\n"], "max_gen_toks": 8}),
                                                       ("world", {"until": ["\n\n"], "max_gen_toks": 8})]]


def test_sequential_rounds_across_plans_and_history(lm):
    short, long = _passage(3, "P/0"), _passage(5, "P/1")
    out = lm.generate_until([_req(_plan("sequential", short)), _req("plain"), _req(_plan("sequential", long))])
    # one backend call per round, not per question; the plain request rides with round 1
    assert [len(b) for b in lm.batches] == [3, 2, 2, 1, 1]
    assert out[1] == "r1.0" and lm.batches[0][0][0] == "plain"
    res = json.loads(out[2])
    assert res["rollout"]["rounds"] == 5 and len(res["rollout"]["calls"]) == 5
    replies = [res["output"]["replies"][f"Q{i}"] for i in range(1, 6)]
    # round k's prompt is the plain rendering of the conversation holding the model's own k-1 replies
    for k in range(5):
        expected = rollout.render_plain(squad.sequential_messages(long, replies[:k]))
        assert expected in [args[0] for args in lm.batches[k]]
        for earlier in replies[:k]:
            assert f" {earlier}\n\n" in expected
    assert json.loads(out[0])["rollout"]["rounds"] == 3


def test_batch_and_all_in_one_are_one_round(lm):
    p = _passage(4)
    out = lm.generate_until([_req(_plan("batch", p)), _req(_plan("all_in_one", p))])
    assert len(lm.batches) == 1 and len(lm.batches[0]) == 5
    batch, aio = json.loads(out[0]), json.loads(out[1])
    assert batch["rollout"]["rounds"] == 1 and len(batch["rollout"]["calls"]) == 4
    assert aio["rollout"]["calls"][0]["kind"] == "answer"
    assert lm.batches[0][4][1]["max_gen_toks"] == 4 * 8  # all_in_one: the per-answer budget x questions
    # shared text counted once: the passage is new only in the first batch prompt
    metrics = squad.passage_metrics(p, batch)
    assert metrics["prompt_tokens"] < metrics["prompt_tokens_api"] / 2
    assert metrics["calls"] == 4 and metrics["rounds"] == 1


@pytest.mark.parametrize("system", [[], [{"role": "system", "content": "SYS\nline two"}]])
def test_chat_rendering_is_read_from_the_request(system):
    """A fresh model that never rendered the context itself (as with --cache_requests) still finds
    the chat rendering and the system message in it."""
    p = _passage(2)
    context = EchoLM().apply_chat_template(system + [{"role": "user", "content": _plan("sequential", p)}])
    lm = rollout.wrap(EchoLM())
    lm.generate_until([_req(context)])
    sys_text = "".join(f"<system>{m['content']}</system>" for m in system)
    assert lm.batches[1][0][0] == (sys_text + "<user>" + squad.batch_prompt(p, 0) + "</user><assistant>r1.0</assistant>"
                                   "<user>" + squad.followup_turn(p.questions[1]) + "</user><assistant>")


def test_chat_api_messages_carry_the_plan():
    """Chat API models hand lm-eval's JsonChatStr (JSON of the messages) instead of a string."""
    from lm_eval.models.api_models import JsonChatStr

    class ChatLM(EchoLM):
        def apply_chat_template(self, chat_history, add_generation_prompt=True):
            return JsonChatStr(json.dumps(chat_history))

    p = _passage(2)
    lm = rollout.wrap(ChatLM())
    messages = [{"role": "system", "content": "SYS"}, {"role": "user", "content": _plan("sequential", p)}]
    res = json.loads(lm.generate_until([_req(JsonChatStr(json.dumps(messages)))])[0])
    second = json.loads(lm.batches[1][0][0].prompt)
    assert second == [messages[0], *squad.sequential_messages(p, ["r1.0"])]
    assert res["rollout"]["calls"][1]["prompt"] == second  # what the model saw, for --log_samples


def test_unparseable_chat_rendering_is_a_clear_error(lm):
    p = _passage(1)
    with pytest.raises(QAPackError, match="cannot take apart"):
        lm.generate_until([_req("<user>few-shot</user><user>" + _plan("batch", p) + "</user><assistant>")])


def test_plain_prefix_is_kept(lm):
    p = _passage(1)
    lm.generate_until([_req("Be brief.\n\n" + _plan("batch", p))])
    assert lm.batches[0][0][0] == "Be brief.\n\n" + squad.batch_prompt(p, 0)


def test_collab_planner_order_links_and_accounting():
    class Planner(EchoLM):
        def generate_until(self, requests, disable_tqdm=False):
            out = super().generate_until(requests)
            return ['{"order": ["Q2", "Q1"], "links": {"Q1": ["Q2"]}}' if squad.PLANNER_INSTRUCTION in r.args[0]
                    else f"<answer>a{i}</answer>" for i, r in enumerate(requests)] if out else out

    lm = rollout.wrap(Planner())
    p = _passage(2)
    res = json.loads(lm.generate_until([_req(_plan("collab", p))])[0])
    assert res["output"]["order"] == ["Q2", "Q1"] and res["output"]["planner_failure"] is None
    assert [len(b) for b in lm.batches] == [1, 1, 1]
    assert lm.batches[1][0][0] == squad.batch_prompt(p, 1)  # first asked: Q2, with the passage
    assert "Related Q&A:\nQ: What is item 2?\nA: a0\n\nQuestion: What is item 1?" in lm.batches[2][0][0]
    metrics = squad.passage_metrics(p, res)
    calls = res["rollout"]["calls"]
    assert metrics["dep_tokens"] == calls[0]["prompt_tokens"] + calls[0]["gen_tokens"] > 0
    assert metrics["prompt_tokens_api"] == sum(c["prompt_tokens"] for c in calls)
    assert metrics["gen_tokens_api"] - metrics["gen_tokens"] == calls[0]["gen_tokens"]
    assert metrics["planner_failures"] == 0.0 and metrics["rounds"] == 3 and metrics["calls"] == 3


def test_collab_bad_planner_falls_back_and_counts(lm):
    p = _passage(3)
    res = json.loads(lm.generate_until([_req(_plan("collab", p))])[0])
    assert res["output"]["order"] == ["Q1", "Q2", "Q3"] and res["output"]["planner_failure"] == "invalid JSON"
    assert squad.passage_metrics(p, res)["planner_failures"] == 1.0


def test_token_counts_use_model_tokenizer_or_fallback(lm):
    p = _passage(1)
    prompt = squad.batch_prompt(p, 0)
    res = json.loads(lm.generate_until([_req(_plan("batch", p))])[0])
    assert res["rollout"]["calls"][0]["prompt_tokens"] == rollout.count_tokens_fallback(prompt)
    tok = rollout.wrap(TokLM())
    res = json.loads(tok.generate_until([_req(_plan("batch", p))])[0])
    assert res["rollout"]["calls"][0]["prompt_tokens"] == len(prompt.split())


def test_corrupt_plan_is_a_clear_error(lm):
    with pytest.raises(QAPackError, match="corrupt rollout plan"):
        lm.generate_until([_req("[[qa-pack-rollout:AAAA]]")])


def test_require_active_follows_live_wrapped_models():
    gc.collect()
    assert not rollout.is_active()
    with pytest.raises(QAPackError, match=r"rollout\.wrap"):
        rollout.require_active("squad_sequential")
    model = rollout.wrap(EchoLM())
    rollout.require_active("squad_sequential")
    del model
    gc.collect()
    assert not rollout.is_active()


@pytest.mark.slow
def test_tasks_stop_before_generating_without_the_layer(data_dir):
    import lm_eval

    from tests.toolkit.scripted_lm import ScriptedLM

    gc.collect()
    assert not rollout.is_active()
    bare = ScriptedLM(responder="tests.toolkit.squad_responders:gold")
    with pytest.raises(QAPackError, match="needs the rollout layer"):
        lm_eval.simple_evaluate(model=bare, tasks=["squad_sequential"], limit=1)
    assert bare.generate_calls == 0


@pytest.mark.slow
def test_cached_requests_rerun_gives_identical_prompts_and_scores(tiny_model, tmp_path):
    """--cache_requests: the second run restores the chat-rendered requests without calling
    apply_chat_template, and must still send the same prompts and score the same."""
    from tests.toolkit.env import lm_eval_env
    from tests.toolkit.lm_eval_runs import read_samples, run_lm_eval

    env = lm_eval_env(LM_HARNESS_CACHE_PATH=str(tmp_path / "cache"))
    args = ["--model", "hf", "--model_args", f"pretrained={tiny_model}", "--tasks", "squad_sequential,squad_collab",
            "--limit", "2", "--apply_chat_template", "--system_instruction", "Answer briefly.",
            "--cache_requests", "true", "--log_samples"]
    runs = []
    for name in ("first", "cached"):
        proc, results = run_lm_eval(args, output=tmp_path / name, env=env)
        runs.append((proc, results, tmp_path / name))
    assert "Building contexts for squad_sequential" in runs[0][0].stderr
    assert "Building contexts for squad_sequential" not in runs[1][0].stderr  # restored from the cache
    for task in ("squad_sequential", "squad_collab"):
        first, cached = ([[(c["prompt"], c["reply"]) for c in json.loads(s["resps"][0][0])["rollout"]["calls"]]
                          for s in read_samples(out, task)] for _, _, out in runs)
        assert first == cached
        assert all(p.startswith("<|im_start|>system\nAnswer briefly.<|im_end|>") for doc in first for p, _ in doc)
        scores = [{k: v for k, v in r["results"][task].items() if not k.startswith("latency_s")} for _, r, _ in runs]
        assert scores[0] == scores[1]


class ApiLikeLM(EchoLM):
    """Like lm-eval's API models (a ``_concurrent`` attribute): replies depend on the prompt only, after
    a prompt-dependent delay, so barrier-free calls finish out of order; counts requests in flight."""

    _concurrent = 3

    def __init__(self) -> None:
        super().__init__()
        self.lock, self.flying, self.most = threading.Lock(), 0, 0

    def generate_until(self, requests, disable_tqdm: bool = False):
        with self.lock:
            self.batches.append([r.args for r in requests])
            self.flying += 1
            self.most = max(self.most, self.flying)
        out = []
        for r in requests:
            h = zlib.crc32(str(r.args[0]).encode())
            time.sleep((h % 7) / 500)
            out.append(f"<answer>a{h % 97}</answer>" + " more" * (h % 4))
        with self.lock:
            self.flying -= 1
        return out


def test_barrier_free_api_rollout_matches_round_batching(monkeypatch):
    reqs = [_req(_plan("sequential", _passage(5, "P/0"))), _req("plain"), _req(_plan("batch", _passage(4, "P/1"))),
            _req(_plan("collab", _passage(3, "P/2"))), _req(_plan("sequential", _passage(2, "P/3")))]

    def run(mode):
        monkeypatch.setenv("QA_PACK_ROLLOUT", mode)
        lm = rollout.wrap(ApiLikeLM())
        out = lm.generate_until(reqs)
        return lm, [o if o.startswith("<answer>") else json.loads(o) for o in out]

    streamed, out_stream = run("")
    batched, out_rounds = run("rounds")
    for result in out_stream + out_rounds:
        if isinstance(result, dict):
            for call in result["rollout"]["calls"]:
                assert call.pop("latency_s") >= 0
            result["rollout"].pop("latency_s")
    assert out_stream == out_rounds  # same replies, prompts, rounds and token accounting
    assert out_stream[0]["rollout"]["rounds"] == 5 and len(out_stream[2]["rollout"]["calls"]) == 4
    assert [len(b) for b in batched.batches] == [1 + 1 + 4 + 1 + 1, 3, 2, 2, 1]  # one batch per round
    assert all(len(b) == 1 for b in streamed.batches) and len(streamed.batches) == 5 + 1 + 4 + 4 + 2
    assert 1 < streamed.most <= ApiLikeLM._concurrent


@pytest.mark.parametrize("strategy", squad.STRATEGIES)
def test_every_call_carries_stop_strings(strategy, lm):
    """A call with no stop string reaches an API server as "stop": [] when lm-eval knows no end-of-turn
    string (tokenizer_backend=None, no eos_string); transformers serve rejects that with HTTP 400."""
    lm.generate_until([_req(_plan(strategy, _passage(3)))])
    assert lm.batches and all(kwargs["until"] for batch in lm.batches for _, kwargs in batch)


def test_every_generating_task_has_stop_strings():
    from lm_eval.tasks._yaml_loader import load_yaml

    from qa_tasks.harness.task_index import tasks_dir

    configs = [load_yaml(p, resolve_func=False) for p in sorted(Path(tasks_dir()).rglob("*.yaml"))]
    generating = {c["task"]: c for c in configs if c.get("output_type") == "generate_until"}
    assert {"squad_collab", "gsm8k_think_chat", "math500_think_chat", "recipe_mpr_gen"} <= set(generating)
    assert {t for t, c in generating.items() if not c["generation_kwargs"]["until"]} == set()


# --- replies that used their whole token budget (qa_tasks.rollout.budget) --------------------------------

class WordTokenizer:
    """A transformers-like tokenizer: one id per whitespace word, a BOS id unless add_special_tokens=False."""

    def __init__(self) -> None:
        self.calls: list[dict] = []

    def encode(self, text, add_special_tokens=True):
        self.calls.append({"add_special_tokens": add_special_tokens})
        return ([0] if add_special_tokens else []) + [1] * len(text.split())

    def add_special_tokens(self, *_):  # transformers tokenizers have it; tiktoken's Encoding does not
        return 0


class TiktokenLike:
    """tiktoken's Encoding: no add_special_tokens keyword, never adds special tokens."""

    def encode(self, text, *, allowed_special=frozenset(), disallowed_special="all"):
        return [1] * len(text.split())


class ScriptLM(EchoLM):
    """Replies with the text given per request context; ``tokenizer`` and ``max_gen_toks`` as attributes."""

    def __init__(self, replies: dict[str, str], tokenizer=None, max_gen_toks=None) -> None:
        super().__init__()
        self.replies, self.tokenizer = replies, tokenizer
        if max_gen_toks is not None:
            self.max_gen_toks = max_gen_toks

    def generate_until(self, requests, disable_tqdm: bool = False):
        self.batches.append([r.args for r in requests])
        return [self.replies.get(r.args[0], "x") for r in requests]


@pytest.mark.parametrize(("kwargs", "default", "budget"), [
    ({"max_gen_toks": 8}, None, 8),
    ({"max_gen_toks": "8"}, None, 8),  # --gen_kwargs values may arrive as text
    ({"max_new_tokens": 5, "max_tokens": 6}, None, 5),  # lm-eval's alias priority
    ({"max_tokens": 6, "max_completion_tokens": 7}, None, 6),
    ({"max_completion_tokens": 7}, None, 7),
    ({"until": ["\n"]}, 256, 256),  # the model's default
    ({"until": ["\n"]}, None, None),  # not known: no verdict
    ({"max_gen_toks": 8, "max_length": 100}, None, None),  # prompt + reply together: not the reply's budget
    ({"max_gen_toks": 0}, None, None), ({"max_gen_toks": 2.5}, None, None), ({"max_gen_toks": True}, None, None),
    (None, 16, 16),
])
def test_budget_of_a_request(kwargs, default, budget):
    from qa_tasks.rollout.budget import budget_of

    assert budget_of(kwargs, default) == budget


def test_a_reply_is_truncated_when_its_tokens_reach_the_budget():
    from qa_tasks.rollout.budget import hit_budget

    assert hit_budget(8, 8) is True and hit_budget(9, 8) is True  # re-tokenisation may come out one over
    assert hit_budget(7, 8) is False  # a stop string or EOS ended it: its tokens are not in the reply
    assert hit_budget(None, 8) is None and hit_budget(8, None) is None


def test_the_layer_records_each_plain_reply_against_its_budget():
    from qa_tasks.rollout.budget import truncated

    tok = WordTokenizer()
    replies = {"a": "w " * 8, "b": "w " * 7, "c": "w " * 3}
    lm = rollout.wrap(ScriptLM(replies, tokenizer=tok, max_gen_toks=3))
    docs = [{"id": i, "q": q} for i, q in enumerate("abc")]
    reqs = [_req("a", {"max_gen_toks": 8}, docs[0]), _req("b", {"max_gen_toks": 8}, docs[1]),
            _req("c", {"until": ["\n"]}, docs[2])]  # c: the model's default budget, 3
    out = lm.generate_until(reqs)
    assert [truncated(d, r) for d, r in zip(docs, out)] == [True, False, True]
    assert all(c == {"add_special_tokens": False} for c in tok.calls)  # no BOS counted: 7 words stay 7
    assert truncated({"id": 0, "q": "a"}, out[0]) is True  # found by the document's content, as lm-eval re-reads it
    assert truncated(docs[0], out[1]) is None and truncated({"id": 9}, out[0]) is None  # never recorded
    lm.generate_until([_req("c", {"max_gen_toks": 8}, docs[2])])  # each call starts afresh
    assert truncated(docs[0], out[0]) is None and truncated(docs[2], out[2]) is False


def test_no_verdict_without_a_local_tokenizer_or_a_known_budget():
    from qa_tasks.rollout.budget import truncated

    doc, reply = {"q": "a"}, "w " * 8
    for lm, kwargs in ((rollout.wrap(ScriptLM({"a": reply})), {"max_gen_toks": 8}),  # word-count fallback: a guess
                       (rollout.wrap(ScriptLM({"a": reply}, tokenizer=WordTokenizer())), {"until": ["\n"]}),
                       (rollout.wrap(ScriptLM({"a": reply}, tokenizer=WordTokenizer())), {"max_gen_toks": 8,
                                                                                          "max_length": 64})):
        lm.generate_until([_req("a", kwargs, doc)])
        assert truncated(doc, reply) is None
    stripped = ScriptLM({"a": reply}, tokenizer=WordTokenizer())
    stripped.think_end_token = "</think>"  # the backend cut the thinking out of the reply: tokens unknown
    rollout.wrap(stripped).generate_until([_req("a", {"max_gen_toks": 8}, doc)])
    assert truncated(doc, reply) is None
    tiktoken = rollout.wrap(ScriptLM({"a": reply}, tokenizer=TiktokenLike()))
    tiktoken.generate_until([_req("a", {"max_gen_toks": 8}, doc)])
    assert truncated(doc, reply) is True


@pytest.fixture
def budget():
    from qa_tasks.rollout import budget

    budget.reset()
    yield budget
    budget.reset()


def test_one_reply_recorded_with_two_verdicts_has_none(budget):
    budget.record({"q": 1}, "same", True)
    budget.record({"q": 1}, "same", True)
    assert budget.truncated({"q": 1}, "same") is True
    budget.record({"q": 1}, "same", False)  # e.g. two tasks over the same document with different budgets
    assert budget.truncated({"q": 1}, "same") is None


def test_replies_of_a_run_with_plans_are_recorded_for_plain_requests_only():
    from qa_tasks.rollout.budget import truncated

    p = _passage(2)
    lm = rollout.wrap(ScriptLM({"plain": "w " * 8}, tokenizer=WordTokenizer()))
    doc = {"q": "plain"}
    out = lm.generate_until([_req(_plan("batch", p)), _req("plain", {"max_gen_toks": 8}, doc)])
    assert truncated(doc, out[1]) is True and truncated({}, out[0]) is None
