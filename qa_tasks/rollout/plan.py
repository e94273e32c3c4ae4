"""Rollout plans: the marker a request carries, the calls a plan's program yields, and a plan's live state.

A multi-call task's request context is a plan marker (``plan_text``): the name of a family's rollout
program and its arguments, compressed into ASCII that survives JSON escaping and chat templates. The layer
(``qa_tasks.rollout.layer``) finds it (``find_plan``), starts the program and feeds it the replies of each
round (``Plan``); the program's output and every call's accounting become the request's result.
"""

from __future__ import annotations

import base64
import copy
import json
import re
import zlib
from collections.abc import Callable, Generator
from dataclasses import dataclass, field

from qa_tasks.errors import QAPackError

RESULT_KEY = "qa_pack_rollout"
MARKER = re.compile(r"\[\[qa-pack-rollout:([A-Za-z0-9_\-=]+)\]\]")  # survives JSON escaping
_FALLBACK_TOKEN = re.compile(r"\w+|[^\w\s]")


@dataclass
class Call:
    """One model call of a plan: the conversation so far (ending with a user turn), generation
    kwargs overriding the request's, and a kind (``planner`` calls are accounted apart)."""

    messages: list[dict]
    kind: str = "answer"
    gen_kwargs: dict = field(default_factory=dict)


def plan_text(program: str, args: dict) -> str:
    """The request context that carries a plan (compact, ASCII-only, JSON-safe)."""
    if program not in programs():
        raise QAPackError(f"unknown rollout program {program!r}; known: {', '.join(programs())}")
    raw = json.dumps({"program": program, "args": args}, ensure_ascii=False, separators=(",", ":"))
    return f"[[qa-pack-rollout:{base64.urlsafe_b64encode(zlib.compress(raw.encode())).decode()}]]"


def chat_messages(context) -> list[dict] | None:
    """The messages of a chat-API context: lm-eval's ``JsonChatStr`` (a NamedTuple whose ``.prompt``
    is the JSON of the messages) or a message list ('remote'-tokenizer API models); else None."""
    if isinstance(context, str):
        return None
    if isinstance(getattr(context, "prompt", None), str):
        try:
            context = json.loads(context.prompt)
        except ValueError:
            return None
    if isinstance(context, list) and all(isinstance(m, dict) for m in context):
        return context
    return None


def context_text(context) -> str:
    """The text of a request context: the string itself, or the joined contents of chat messages."""
    if isinstance(context, str):
        return context
    messages = chat_messages(context)
    return "\n".join(str(m.get("content", "")) for m in messages) if messages is not None else ""


def _loggable(prompt):
    """A prompt as it goes into the sample log: text, or the list of chat messages."""
    messages = chat_messages(prompt)
    return prompt if messages is None else messages


def find_plan(context) -> tuple[str, dict] | None:
    """(marker payload, decoded plan) of the first plan marker in a request context, else None."""
    match = MARKER.search(context_text(context))
    if match is None:
        return None
    try:
        plan = json.loads(zlib.decompress(base64.urlsafe_b64decode(match.group(1))))
    except (ValueError, zlib.error) as e:
        raise QAPackError(f"a request carries a corrupt rollout plan ({e}); rebuild the requests "
                          "(drop --cache_requests caches made by another version)") from None
    return match.group(1), plan


def render_plain(messages: list[dict]) -> str:
    """Messages as plain text (no chat template): system and user text as is, each reply after a
    space and followed by a blank line, like lm-eval renders few-shot turns."""
    out = []
    for msg in messages:
        if msg["role"] == "system":
            out.append(msg["content"] + "\n\n")
        elif msg["role"] == "assistant":
            out.append(" " + msg["content"] + "\n\n")
        else:
            out.append(msg["content"])
    return "".join(out)


def count_tokens_fallback(text: str) -> int:
    """Token count when the model has no local tokenizer: words and punctuation marks."""
    return len(_FALLBACK_TOKEN.findall(text))


def _new_text(text: str, earlier: list[str]) -> str:
    """The part of ``text`` not shared with an earlier prompt: after the longest common prefix,
    cut back to a line start so a shared prefix never splits a word."""
    best = 0
    for prev in earlier:
        n = 0
        limit = min(len(prev), len(text))
        while n < limit and prev[n] == text[n]:
            n += 1
        best = max(best, n)
    if best == len(text):
        return ""
    cut = text.rfind("\n", 0, best) + 1 if best else 0
    return text[cut:]


def instance(request, prompt, kwargs):
    """A generate_until Instance for one call, carrying the task and document of its request."""
    from lm_eval.api.instance import Instance

    return Instance(request_type="generate_until", doc={}, arguments=(prompt, kwargs), idx=0,
                    metadata=(request.task_name, request.doc_id, 1))


def programs() -> dict[str, str]:
    """Plan program name -> "module:function" (taking (args, gen_kwargs), returning a generator), per family."""
    from qa_tasks.family import families

    return {name: ref for f in families() for name, ref in f.rollout_programs.items()}


def load_program(name: str) -> Callable[[dict, dict], Generator]:
    from qa_tasks.family import resolve

    if name not in programs():
        raise QAPackError(f"a request names unknown rollout program {name!r}; known: {', '.join(programs())}")
    return resolve(programs()[name])



class Plan:
    """The live state of one plan during a rollout."""

    def __init__(self, index: int, program: Generator, gen_kwargs: dict, system: list[dict] | None,
                 prefix: str) -> None:
        self.index, self.program, self.gen_kwargs = index, program, gen_kwargs
        self.system, self.prefix = system, prefix  # system is None when rendered as plain text
        self.records: list[dict] = []
        self.user_texts: dict[str, list[str]] = {}  # per call kind, for shared-text accounting
        self.output: object = None
        self.step = 1  # the plan's own round: its k-th group of calls is round k of a round-batched rollout
        self.pending = self._advance(None)

    def _advance(self, replies) -> list[Call]:
        try:
            calls = self.program.send(replies)
        except StopIteration as stop:
            self.output = stop.value
            return []
        if not calls:
            raise RuntimeError("a rollout program yielded no calls")  # program bug, not a user error
        return list(calls)

    def feed(self, replies: list[str]) -> None:
        self.step += 1
        self.pending = self._advance(replies)

    def kwargs(self, call: Call) -> dict:
        """The generation kwargs of one call: the request's, overridden by the call's own."""
        kwargs = copy.deepcopy(self.gen_kwargs)
        kwargs.update(copy.deepcopy(call.gen_kwargs))
        return kwargs

    def record(self, call: Call, prompt, reply: str, latency_s: float, count: Callable[[object], int]) -> None:
        """Account one finished call of the current step (its round); text shared with an earlier call
        of its kind is counted once."""
        user = "\n\n".join(m["content"] for m in call.messages if m["role"] != "assistant")
        earlier = self.user_texts.setdefault(call.kind, [])
        new = _new_text(user, earlier).strip()
        self.records.append({
            "kind": call.kind, "round": self.step, "prompt_tokens": count(prompt),
            "new_prompt_tokens": count(new) if new else 0, "gen_tokens": count(reply) if reply else 0,
            "latency_s": latency_s, "prompt": _loggable(prompt), "reply": reply})
        earlier.append(user)

    def result(self) -> str:
        rounds = len({r["round"] for r in self.records})
        latency = sum(r["latency_s"] for r in self.records)
        return json.dumps({RESULT_KEY: 1, "output": self.output,
                           "rollout": {"rounds": rounds, "latency_s": latency, "calls": self.records}},
                          ensure_ascii=False)
