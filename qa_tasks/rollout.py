"""The rollout layer: executes multi-call conversation plans round by round (see DESIGN.md).

lm-eval runs every ``generate_until`` request once and independently, so a later turn cannot see
an earlier output. Tasks that need dependent calls emit one request per document whose context is a
plan marker (``plan_text``). ``with_rollout(cls)`` (applied by the startup hook to every model the
CLI creates) and ``wrap(lm)`` (for ready instances passed to ``simple_evaluate``) add a
``generate_until`` that:

1. finds the marker in each request's context: a plain string, a string rendered by
   ``--apply_chat_template``, or the chat messages of API models (``JsonChatStr``, message lists);
   whether and how the plan was chat-rendered is read from the request itself (``_chat_system``), so
   requests restored by ``--cache_requests`` behave like fresh ones;
2. starts the plan's program (a generator yielding the calls of its next round, see ``Call``);
3. runs round k as ONE ``generate_until`` batch to the wrapped model holding the k-th calls of every
   plan (round 1 also carries the plain requests, which pass through unchanged), so the backend
   batches them as usual (HF, vLLM); API models run barrier-free instead (``rollout_stream``);
4. renders each call's messages with the model's own ``apply_chat_template`` when the plan was
   chat-rendered, else as plain text; returns per plan a JSON string with the program's output and
   the accounting of every call (prompt/generated tokens, round, amortized wall time, and the prompt
   the model saw, so ``--log_samples`` shows the whole conversation).

Tokens are counted with the wrapped model's local tokenizer (``tok_encode``, else ``tokenizer.encode``)
when it returns token ids; otherwise (no local tokenizer, e.g. an API model without
``tokenizer_backend``) with the fallback ``count_tokens_fallback`` (words and punctuation marks).
"""

from __future__ import annotations

import base64
import copy
import functools
import json
import os
import re
import time
import weakref
import zlib
from collections.abc import Callable, Generator
from dataclasses import dataclass, field

from qa_tasks.errors import QAPackError

__all__ = [
    "RESULT_KEY", "Call", "RolloutMixin", "count_tokens_fallback", "find_plan", "is_active", "plan_text",
    "programs", "render_plain", "require_active", "with_rollout", "wrap",
]

RESULT_KEY = "qa_pack_rollout"
_MARKER = re.compile(r"\[\[qa-pack-rollout:([A-Za-z0-9_\-=]+)\]\]")  # survives JSON escaping
_FALLBACK_TOKEN = re.compile(r"\w+|[^\w\s]")
_LIVE: weakref.WeakSet = weakref.WeakSet()  # wrapped models alive in this process


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


def _chat_messages(context) -> list[dict] | None:
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


def _context_text(context) -> str:
    """The text of a request context: the string itself, or the joined contents of chat messages."""
    if isinstance(context, str):
        return context
    messages = _chat_messages(context)
    return "\n".join(str(m.get("content", "")) for m in messages) if messages is not None else ""


def _loggable(prompt):
    """A prompt as it goes into the sample log: text, or the list of chat messages."""
    messages = _chat_messages(prompt)
    return prompt if messages is None else messages


def find_plan(context) -> tuple[str, dict] | None:
    """(marker payload, decoded plan) of the first plan marker in a request context, else None."""
    match = _MARKER.search(_context_text(context))
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


def _instance(request, prompt, kwargs):
    """A generate_until Instance for one call, carrying the task and document of its request."""
    from lm_eval.api.instance import Instance

    return Instance(request_type="generate_until", doc={}, arguments=(prompt, kwargs), idx=0,
                    metadata=(request.task_name, request.doc_id, 1))


def programs() -> dict[str, str]:
    """Plan program name -> "module:function" (taking (args, gen_kwargs), returning a generator), per family."""
    from qa_tasks.family import families

    return {name: ref for f in families() for name, ref in f.rollout_programs.items()}


def _load_program(name: str) -> Callable[[dict, dict], Generator]:
    from qa_tasks.family import resolve

    if name not in programs():
        raise QAPackError(f"a request names unknown rollout program {name!r}; known: {', '.join(programs())}")
    return resolve(programs()[name])


def is_active() -> bool:
    """True while a model with the rollout layer exists in this process."""
    return len(_LIVE) > 0


def require_active(task: str) -> None:
    """Stop a multi-call task before any generation when no model carries the layer."""
    if not is_active():
        raise QAPackError(
            f"task {task} needs the rollout layer of lm-eval-qa-pack, which is not active: run it with the "
            "lm_eval CLI of an environment where lm-eval-qa-pack is installed (and QA_PACK_DISABLE_HOOK "
            "unset), or pass qa_tasks.rollout.wrap(lm) to simple_evaluate instead of a bare model")


class _Plan:
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


_PROBE_SYSTEM, _PROBE_USER = "qa-pack-probe-system", "qa-pack-probe-user"


class RolloutMixin:
    """The methods ``with_rollout`` copies into a direct subclass of the chosen model class (see the
    module docstring). They call the wrapped class explicitly (``_rollout_base``) instead of
    ``super()``: a single-base subclass keeps the instance layout, so ``wrap`` can swap ``__class__``
    of a ready instance (a mixin base would change the layout)."""

    _rollout_base: type

    def __init__(self, *args, **kwargs) -> None:
        self._rollout_base.__init__(self, *args, **kwargs)
        _LIVE.add(self)

    # --- chat rendering, read from the request itself ---------------------------------------------
    def _chat_system(self, context, marker: re.Match) -> list[dict] | None:
        """The system messages of a chat-rendered plan ([] when none), or None for plain text.

        Chat-API contexts carry their messages. A string is chat-rendered when text follows the
        marker (the template's end of turn and generation prompt; a plain context ends with the
        marker); its system message is recovered by rendering probe messages with the same template
        and matching the context against them."""
        messages = _chat_messages(context)
        if messages is not None:
            return [dict(m) for m in messages if m.get("role") == "system"]
        if not context[marker.end():].strip():
            return None
        for with_system in (False, True):
            probe = [{"role": "system", "content": _PROBE_SYSTEM}] if with_system else []
            try:
                rendered = self._rollout_base.apply_chat_template(
                    self, probe + [{"role": "user", "content": _PROBE_USER}], True)
            except Exception:  # noqa: BLE001, S112 (a template may refuse a system role: try the next probe)
                continue
            if not isinstance(rendered, str):
                continue
            pattern = re.escape(rendered).replace(re.escape(_PROBE_SYSTEM), "(.*)", 1)
            match = re.fullmatch(pattern.replace(re.escape(_PROBE_USER), re.escape(marker.group(0)), 1),
                                 context, re.DOTALL)
            if match:
                return [{"role": "system", "content": match.group(1)}] if with_system else []
        raise QAPackError(
            "a rollout plan was rendered by a chat template the rollout layer cannot take apart (text "
            "around the plan that is neither a system message nor the template's own markup, e.g. "
            "few-shot turns); run the multi-call tasks with num_fewshot 0 or without --apply_chat_template")

    def _rollout_count(self, prompt) -> int:
        text = prompt if isinstance(prompt, str) else _context_text(prompt)  # chat: count the contents
        for encode in (getattr(self, "tok_encode", None), getattr(getattr(self, "tokenizer", None), "encode", None)):
            if encode is None:
                continue
            try:
                ids = encode(text)
            except Exception:  # noqa: BLE001, S112 (on any tokenizer failure try the next, then the fallback)
                continue
            if isinstance(ids, list) and all(isinstance(i, int) for i in ids):
                return len(ids)
        return count_tokens_fallback(text)

    def _rollout_render(self, plan: _Plan, call: Call):
        if plan.system is None:
            return plan.prefix + render_plain(call.messages)
        return self._rollout_base.apply_chat_template(self, plan.system + call.messages, True)

    # --- the rollout: start the plans, then one backend batch per round -------------------------------
    def _rollout_start(self, requests, found) -> tuple[list[_Plan], list[int]]:
        """The plans of the requests that carry one, and the indices of the plain requests."""
        plans: list[_Plan] = []
        plain: list[int] = []
        for i, (req, hit) in enumerate(zip(requests, found)):
            if hit is None:
                plain.append(i)
                continue
            _, plan = hit
            context = req.args[0]
            text = _context_text(context)
            marker = _MARKER.search(text)
            system = self._chat_system(context, marker)
            prefix = text[: marker.start()] if system is None else ""
            gen_kwargs = dict(req.args[1] or {})
            program = _load_program(plan["program"])(plan["args"], gen_kwargs)
            plans.append(_Plan(i, program, gen_kwargs, system, prefix))
        return plans, plain

    def _rollout_round(self, requests, plans: list[_Plan], plain: list[int], results: list,
                       disable_tqdm: bool) -> None:
        """Send every pending call (and the plain requests) as one batch; account and feed replies."""
        batch: list[tuple[_Plan | None, int, Call | None, object, dict]] = []
        for i in plain:
            context, kwargs = requests[i].args
            batch.append((None, i, None, context, kwargs))
        for plan in plans:
            for call in plan.pending:
                batch.append((plan, plan.index, call, self._rollout_render(plan, call), plan.kwargs(call)))
        instances = [_instance(requests[i], prompt, kwargs) for _, i, _, prompt, kwargs in batch]
        start = time.perf_counter()
        outputs = self._rollout_base.generate_until(self, instances, disable_tqdm)
        share = (time.perf_counter() - start) / len(batch)
        replies: dict[int, list[str]] = {}
        for (plan, i, call, prompt, _), out in zip(batch, outputs, strict=True):
            if plan is None:
                results[i] = out
                continue
            replies.setdefault(id(plan), []).append(out)
            plan.record(call, prompt, out, share, self._rollout_count)
        for plan in plans:
            if plan.pending:
                plan.feed(replies[id(plan)])

    def generate_until(self, requests, disable_tqdm: bool = False):
        found = [find_plan(req.args[0]) for req in requests]
        if not any(found):
            return self._rollout_base.generate_until(self, requests, disable_tqdm)
        plans, plain = self._rollout_start(requests, found)
        results: list = [None] * len(requests)
        concurrent = getattr(self, "_concurrent", None)  # lm-eval's API models (TemplateAPI)
        if isinstance(concurrent, int) and os.environ.get("QA_PACK_ROLLOUT", "").lower() != "rounds":
            from qa_tasks.rollout_stream import stream

            stream(self, requests, plans, plain, results, workers=max(1, concurrent))
        else:
            while plain or any(p.pending for p in plans):  # round-batched: one backend batch per round
                self._rollout_round(requests, plans, plain, results, disable_tqdm)
                plain = []
        for plan in plans:
            results[plan.index] = plan.result()
        return results


@functools.cache
def with_rollout(cls: type) -> type:
    """``cls`` with the rollout layer in front (same name); classes that are not lm-eval models,
    or already carry the layer, come back unchanged."""
    from lm_eval.api.model import LM

    if not isinstance(cls, type) or not issubclass(cls, LM) or _is_wrapped(cls):
        return cls
    namespace = {k: v for k, v in vars(RolloutMixin).items() if callable(v)}
    namespace.update(_rollout_base=cls, __module__=cls.__module__, __qualname__=cls.__qualname__,
                     __doc__=cls.__doc__)
    return type(cls.__name__, (cls,), namespace)


def _is_wrapped(cls: type) -> bool:
    return isinstance(getattr(cls, "_rollout_base", None), type)


def wrap(lm):
    """Add the rollout layer to a ready lm-eval model instance (in place) and return it."""
    if not _is_wrapped(type(lm)):
        lm.__class__ = with_rollout(type(lm))
        if not _is_wrapped(type(lm)):
            raise QAPackError(f"{type(lm).__name__} is not an lm-eval model (lm_eval.api.model.LM); "
                              "wrap the HFLM/vLLM/API model object you pass to simple_evaluate")
        _LIVE.add(lm)
    return lm
