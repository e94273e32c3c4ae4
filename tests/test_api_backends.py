"""Every pack task family through lm-eval's OpenAI-compatible API models against a REAL server
(``transformers serve`` with the tiny model, one per module), and what ``--log_samples`` records.

Three lm_eval runs share the server, each running several tasks at --limit 2:
- ``local-completions`` (``tokenized_requests=False``, local tokenizer), plain prompts;
- ``local-chat-completions`` with ``--apply_chat_template``, ``tokenizer_backend=None`` and no ``eos_string``,
  at ``num_concurrent`` 1 and 4: lm-eval then adds no stop string of its own (its concurrent path drops
  ``eos_string`` anyway), so every request carries only the pack's own stop strings, and
  ``transformers serve`` answers an empty stop list with HTTP 400;
- ``local-chat-completions`` with a local tokenizer, ``--apply_chat_template``, a system instruction
  and ``num_concurrent=2``.
API models run the multi-call strategies barrier-free (``qa_tasks.rollout.stream``); that it gives the
replies and accounting of round-batching is tested in tests/test_rollout.py.
"""

from __future__ import annotations

import json

import pytest

from qa_tasks import rollout, squad
from tests.toolkit.lm_eval_runs import read_samples, run_lm_eval
from tests.toolkit.serve import transformers_server  # noqa: F401 (module-scoped fixture)

pytestmark = pytest.mark.slow

STRATEGIES = ["squad_sequential", "squad_batch", "squad_collab", "squad_all_in_one"]
SYSTEM = "Answer briefly."


def _run(tmp_path_factory, name: str, model: str, model_args: str, tasks: list[str], *extra: str):
    out = tmp_path_factory.mktemp(name)
    proc, results = run_lm_eval(["--model", model, "--model_args", model_args, "--tasks", ",".join(tasks),
                                 "--limit", "2", "--log_samples", *extra], output=out)
    return proc, results, out


@pytest.fixture(scope="module")
def completions(transformers_server, tiny_model, tmp_path_factory):  # noqa: F811
    tasks = ["recipe_mpr_gen", "squad_v1", *STRATEGIES, "gsm8k_think"]
    args = (f"model={tiny_model},base_url={transformers_server}/completions,tokenized_requests=False,"
            f"tokenizer_backend=huggingface,tokenizer={tiny_model}")
    return (*_run(tmp_path_factory, "completions", "local-completions", args, tasks), tasks)


def _chat_remote(server: str, model: str, tmp_path_factory, concurrent: int):
    tasks = ["recipe_mpr_gen", "squad_v1", *STRATEGIES, "gsm8k_think_chat"]
    args = (f"model={model},base_url={server}/chat/completions,tokenizer_backend=None,"
            f"num_concurrent={concurrent}")
    return (*_run(tmp_path_factory, f"chat_remote{concurrent}", "local-chat-completions", args, tasks,
                  "--apply_chat_template"), tasks)


@pytest.fixture(scope="module")
def chat_remote(transformers_server, tiny_model, tmp_path_factory):  # noqa: F811
    return _chat_remote(transformers_server, tiny_model, tmp_path_factory, 1)


@pytest.fixture(scope="module")
def chat_remote_concurrent(transformers_server, tiny_model, tmp_path_factory):  # noqa: F811
    return _chat_remote(transformers_server, tiny_model, tmp_path_factory, 4)


@pytest.fixture(scope="module")
def chat_local_tokenizer(transformers_server, tiny_model, tmp_path_factory):  # noqa: F811
    tasks = ["squad_sequential", "squad_batch", "recipe_mpr_gen"]
    args = (f"model={tiny_model},base_url={transformers_server}/chat/completions,"
            f"tokenizer_backend=huggingface,tokenizer={tiny_model},num_concurrent=2")
    return (*_run(tmp_path_factory, "chat_local", "local-chat-completions", args, tasks,
                  "--apply_chat_template", "--system_instruction", SYSTEM), tasks)


def _calls(sample: dict) -> list[dict]:
    """The per-call records the rollout layer returned for one document."""
    result = json.loads(sample["resps"][0][0])
    assert result[rollout.RESULT_KEY] == 1
    return result["rollout"]["calls"]


@pytest.mark.parametrize("run", ["completions", "chat_remote", "chat_remote_concurrent", "chat_local_tokenizer"])
def test_every_task_family_runs(run, request):
    proc, results, _, tasks = request.getfixturevalue(run)
    assert proc.returncode == 0 and set(tasks) <= set(results["results"])
    # lm-eval logs a rejected request, retries it and goes on with an empty reply: the server took every call
    assert "API request failed" not in proc.stderr, proc.stderr[-3000:]
    for task in set(tasks) & {"squad_sequential", "squad_collab"}:
        # multi-call strategies really ran several dependent rounds through the server
        assert results["results"][task]["rounds,none"] > 1, task
        assert results["results"][task]["calls,none"] > 1, task


@pytest.mark.parametrize("run", ["completions", "chat_remote", "chat_remote_concurrent", "chat_local_tokenizer"])
def test_log_samples_hold_every_rendered_call(run, request):
    """Sequential: call k saw the passage conversation holding the model's own k-1 replies."""
    _, _, out, _ = request.getfixturevalue(run)
    for sample in read_samples(out, "squad_sequential"):
        calls = _calls(sample)
        passage = squad.Passage.from_dict(sample["doc"])
        replies = [c["reply"] for c in calls]
        assert len(calls) == len(passage.questions) and [c["round"] for c in calls] == list(range(1, len(calls) + 1))
        system = [{"role": "system", "content": SYSTEM}] if run == "chat_local_tokenizer" else []
        for k, call in enumerate(calls):
            messages = squad.sequential_messages(passage, replies[:k])
            if run == "completions":  # plain text, never the plan marker
                assert call["prompt"] == rollout.render_plain(messages)
            else:  # the chat messages sent to the server, system instruction first
                assert call["prompt"] == system + messages


def test_token_counts_follow_the_tokenizer_the_run_has(chat_remote, chat_local_tokenizer, tiny_model):
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(str(tiny_model))
    for run, local in ((chat_remote, False), (chat_local_tokenizer, True)):
        call = _calls(read_samples(run[2], "squad_sequential")[0])[0]
        text = "\n".join(m["content"] for m in call["prompt"])
        assert call["prompt_tokens"] == (len(tok.encode(text)) if local else rollout.count_tokens_fallback(text))
