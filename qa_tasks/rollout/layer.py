"""The rollout layer: executes multi-call conversation plans round by round .

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
   batches them as usual (HF, vLLM); API models run barrier-free instead (``qa_tasks.rollout.stream``);
4. renders each call's messages with the model's own ``apply_chat_template`` when the plan was
   chat-rendered, else as plain text; returns per plan a JSON string with the program's output and
   the accounting of every call (prompt/generated tokens, round, amortized wall time, and the prompt
   the model saw, so ``--log_samples`` shows the whole conversation).

Tokens are counted with the wrapped model's local tokenizer (``tok_encode``, else ``tokenizer.encode``)
when it returns token ids; otherwise (no local tokenizer, e.g. an API model without
``tokenizer_backend``) with the fallback ``count_tokens_fallback`` (words and punctuation marks).

Every call also records, for each plain request's reply, whether it used its whole token budget
(``qa_tasks.rollout.budget``: re-encoded with the model's own tokenizer; no record from the fallback
count), so a task's ``process_results`` can report the share of replies cut off at ``max_gen_toks``.
"""

from __future__ import annotations

import functools
import os
import re
import time
import weakref

from lm_eval.api.model import LM

from qa_tasks.errors import QAPackError
from qa_tasks.rollout import budget
from qa_tasks.rollout.plan import (
    MARKER,
    Call,
    Plan,
    chat_messages,
    context_text,
    count_tokens_fallback,
    find_plan,
    instance,
    load_program,
    render_plain,
)
from qa_tasks.rollout.stream import stream

__all__ = ["RolloutMixin", "is_active", "require_active", "with_rollout", "wrap"]

_LIVE: weakref.WeakSet = weakref.WeakSet()  # wrapped models alive in this process


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




_PROBE_SYSTEM, _PROBE_USER = "qa-pack-probe-system", "qa-pack-probe-user"


class RolloutMixin(LM):
    """The layer, put in front of a model class by ``with_rollout``: ``class X(RolloutMixin, Model)``.

    It derives from ``LM`` and adds no attributes of its own, so the combined class has the instance layout of
    ``Model`` and ``wrap`` can give a ready instance that class (CPython refuses ``__class__`` assignment across
    layouts, which a mixin deriving from ``object`` alone would change)."""

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        _LIVE.add(self)

    # --- chat rendering, read from the request itself ---------------------------------------------
    def _chat_system(self, context, marker: re.Match) -> list[dict] | None:
        """The system messages of a chat-rendered plan ([] when none), or None for plain text.

        Chat-API contexts carry their messages. A string is chat-rendered when text follows the
        marker (the template's end of turn and generation prompt; a plain context ends with the
        marker); its system message is recovered by rendering probe messages with the same template
        and matching the context against them."""
        messages = chat_messages(context)
        if messages is not None:
            return [dict(m) for m in messages if m.get("role") == "system"]
        if not context[marker.end():].strip():
            return None
        for with_system in (False, True):
            probe = [{"role": "system", "content": _PROBE_SYSTEM}] if with_system else []
            try:
                rendered = super().apply_chat_template(
                    probe + [{"role": "user", "content": _PROBE_USER}], True)
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
        text = prompt if isinstance(prompt, str) else context_text(prompt)  # chat: count the contents
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

    def _rollout_reply_tokens(self, reply: str) -> int | None:
        """Tokens of a generated reply, re-encoded with the model's own tokenizer and no special tokens (no
        BOS); None when there is no local tokenizer that returns ids (the fallback count is only an estimate)."""
        tokenizer = getattr(self, "tokenizer", None)
        encode = getattr(tokenizer, "encode", None)
        attempts = []
        if encode is not None:
            attempts.append(lambda: encode(reply, add_special_tokens=False))  # transformers
            if not hasattr(tokenizer, "add_special_tokens"):  # tiktoken: adds no special tokens of its own
                attempts.append(lambda: encode(reply, disallowed_special=()))
        if getattr(self, "tok_encode", None) is not None:  # a backend's own encoder, last
            attempts.append(lambda: self.tok_encode(reply, add_special_tokens=False))
        for attempt in attempts:
            try:
                ids = attempt()
            except Exception:  # noqa: BLE001, S112 (an encoder without that keyword: try the next)
                continue
            if isinstance(ids, list) and all(isinstance(i, int) for i in ids):
                return len(ids)
        return None

    def _rollout_budget(self, gen_kwargs) -> int | None:
        """The token budget of a request: its ``max_gen_toks`` (or alias), else the model's default; None when
        unknown, or when the backend strips a thinking section from replies (``think_end_token``: the reply
        no longer holds every generated token)."""
        if getattr(self, "think_end_token", None) is not None:
            return None
        try:
            default = getattr(self, "max_gen_toks", None)
        except Exception:  # noqa: BLE001 (a property that needs what this model lacks)
            default = None
        if default is None:
            default = getattr(self, "_max_gen_toks", None)
        return budget.budget_of(gen_kwargs, default)

    def _rollout_record_budgets(self, requests, indices, results) -> None:
        """Record, per plain request, whether its reply used the whole budget (``qa_tasks.rollout.budget``)."""
        for i in indices:
            request, reply = requests[i], results[i]
            args = getattr(request, "args", None)
            if not isinstance(reply, str) or not isinstance(args, tuple) or len(args) < 2:
                continue
            cap = self._rollout_budget(args[1])
            used = self._rollout_reply_tokens(reply) if cap is not None else None
            budget.record(getattr(request, "doc", None), reply, budget.hit_budget(used, cap))

    def _rollout_send(self, request, prompt, kwargs) -> tuple[str, float]:
        """One call through the wrapped model on its own: (reply, wall seconds)."""
        start = time.perf_counter()
        [out] = super().generate_until([instance(request, prompt, kwargs)], True)
        return out, time.perf_counter() - start

    def _rollout_render(self, plan: Plan, call: Call):
        if plan.system is None:
            return plan.prefix + render_plain(call.messages)
        return super().apply_chat_template(plan.system + call.messages, True)

    # --- the rollout: start the plans, then one backend batch per round -------------------------------
    def _rollout_start(self, requests, found) -> tuple[list[Plan], list[int]]:
        """The plans of the requests that carry one, and the indices of the plain requests."""
        plans: list[Plan] = []
        plain: list[int] = []
        for i, (req, hit) in enumerate(zip(requests, found)):
            if hit is None:
                plain.append(i)
                continue
            _, plan = hit
            context = req.args[0]
            text = context_text(context)
            marker = MARKER.search(text)
            system = self._chat_system(context, marker)
            prefix = text[: marker.start()] if system is None else ""
            gen_kwargs = dict(req.args[1] or {})
            program = load_program(plan["program"])(plan["args"], gen_kwargs)
            plans.append(Plan(i, program, gen_kwargs, system, prefix))
        return plans, plain

    def _rollout_round(self, requests, plans: list[Plan], plain: list[int], results: list,
                       disable_tqdm: bool) -> None:
        """Send every pending call (and the plain requests) as one batch; account and feed replies."""
        batch: list[tuple[Plan | None, int, Call | None, object, dict]] = []
        for i in plain:
            context, kwargs = requests[i].args
            batch.append((None, i, None, context, kwargs))
        for plan in plans:
            for call in plan.pending:
                batch.append((plan, plan.index, call, self._rollout_render(plan, call), plan.kwargs(call)))
        instances = [instance(requests[i], prompt, kwargs) for _, i, _, prompt, kwargs in batch]
        start = time.perf_counter()
        outputs = super().generate_until(instances, disable_tqdm)
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
        budget.reset()  # the records describe this call's replies only
        found = [find_plan(req.args[0]) for req in requests]
        if not any(found):
            results = super().generate_until(requests, disable_tqdm)
            self._rollout_record_budgets(requests, range(len(requests)), results)
            return results
        plans, plain = self._rollout_start(requests, found)
        plain_indices = list(plain)
        results: list = [None] * len(requests)
        concurrent = getattr(self, "_concurrent", None)  # lm-eval's API models (TemplateAPI)
        if isinstance(concurrent, int) and os.environ.get("QA_PACK_ROLLOUT", "").lower() != "rounds":
            stream(self._rollout_send, self._rollout_render, self._rollout_count, requests, plans, plain, results,
                   workers=max(1, concurrent))
        else:
            while plain or any(p.pending for p in plans):  # round-batched: one backend batch per round
                self._rollout_round(requests, plans, plain, results, disable_tqdm)
                plain = []
        for plan in plans:
            results[plan.index] = plan.result()
        self._rollout_record_budgets(requests, plain_indices, results)
        return results


@functools.cache
def with_rollout(cls: type) -> type:
    """``cls`` with the rollout layer in front (same name); classes that are not lm-eval models,
    or already carry the layer, come back unchanged."""
    if not isinstance(cls, type) or not issubclass(cls, LM) or _is_wrapped(cls):
        return cls
    namespace = {"__module__": cls.__module__, "__qualname__": cls.__qualname__, "__doc__": cls.__doc__}
    return type(cls.__name__, (RolloutMixin, cls), namespace)


def _is_wrapped(cls: type) -> bool:
    return issubclass(cls, RolloutMixin)


def wrap(lm):
    """Add the rollout layer to a ready lm-eval model instance (in place) and return it."""
    if not _is_wrapped(type(lm)):
        lm.__class__ = with_rollout(type(lm))
        if not _is_wrapped(type(lm)):
            raise QAPackError(f"{type(lm).__name__} is not an lm-eval model (lm_eval.api.model.LM); "
                              "wrap the HFLM/vLLM/API model object you pass to simple_evaluate")
        _LIVE.add(lm)
    return lm
