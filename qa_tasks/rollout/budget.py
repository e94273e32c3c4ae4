"""Which replies used their whole token budget (``max_gen_toks``): measured by the rollout layer, read by tasks.

lm-eval's ``generate_until`` returns text only, and a task's ``process_results(doc, results)`` sees only
that text. The rollout layer (``RolloutMixin.generate_until``) sees every plain request of a run it wraps,
with its generation kwargs, and the model's own tokenizer: for each reply it records here whether the
reply's token count reached the request's budget, keyed by (document, reply text), so that
``truncated(doc, reply)`` answers it inside ``process_results``.

The rule (``hit_budget``): a reply is truncated when its text, re-encoded with the model's tokenizer
without special tokens, has at least as many tokens as the budget. A reply that ended at a stop string or
the end-of-sequence token lost those tokens from its text, so it counts at most budget - 1 of them.
Caveat: re-encoding the decoded text can differ from the tokens the model generated (a non-canonical
tokenization, or spaces the decoder cleans up), usually by one token; a cut-off reply whose re-encoding
comes out one short is then counted as not truncated (and, more rarely, the other way round).

Nothing is guessed: the verdict is None (the task reports no value for that document) when the model
has no local tokenizer (the layer's word-count fallback is only an estimate), when the budget is not known
(no ``max_gen_toks`` or alias in the request and none on the model, or ``max_length``, which also counts
the prompt), when the backend strips a thinking section from the reply (``think_end_token``), when the
reply came from lm-eval's response cache (``--use_cache``: the wrapped model never saw the request), or
when the model carries no rollout layer at all.

The records hold the verdicts of the latest ``generate_until`` call of a wrapped model in this process
(lm-eval's evaluator makes one such call per run, then scores); each call starts afresh.
"""

from __future__ import annotations

import hashlib
import json
import threading

__all__ = ["TRUNCATED_METRIC", "budget_of", "hit_budget", "record", "reset", "truncated"]

TRUNCATED_METRIC = "truncated_rate"  # tasks reporting it need the layer (qa_tasks.harness.checks.needs_rollout)
# lm-eval's aliases of the generation budget, highest priority first (lm_eval.models.utils.normalize_gen_kwargs)
BUDGET_KEYS = ("max_gen_toks", "max_new_tokens", "max_tokens", "max_completion_tokens")

_LOCK = threading.Lock()  # API models' barrier-free runner replies from worker threads
_RECORDS: dict[bytes, bool | None] = {}


def budget_of(gen_kwargs, default=None) -> int | None:
    """The token budget of one request: its ``max_gen_toks`` (or an alias, lm-eval's priority), else the
    model's ``default``; None when neither is a positive whole number, or when ``max_length`` (prompt and
    reply together, HF's meaning) is set."""
    kwargs = gen_kwargs if isinstance(gen_kwargs, dict) else {}
    if kwargs.get("max_length") is not None:
        return None
    value = next((kwargs[k] for k in BUDGET_KEYS if kwargs.get(k) is not None), default)
    if isinstance(value, bool):
        return None
    try:
        budget, exact = int(value), float(value)
    except (TypeError, ValueError, OverflowError):
        return None
    return budget if budget > 0 and budget == exact else None


def hit_budget(reply_tokens: int | None, budget: int | None) -> bool | None:
    """Whether a reply of ``reply_tokens`` tokens (re-encoded, no special tokens) used its whole budget;
    None when either is unknown."""
    if reply_tokens is None or budget is None:
        return None
    return reply_tokens >= budget


def _key(doc, reply: str) -> bytes | None:
    try:
        text = json.dumps(doc, sort_keys=True, ensure_ascii=False, default=str)
    except (TypeError, ValueError):  # keys that do not sort: no record rather than a failed run
        return None
    digest = hashlib.blake2b(digest_size=16)
    digest.update(text.encode("utf-8", "surrogatepass"))
    digest.update(b"\0")
    digest.update(reply.encode("utf-8", "surrogatepass"))
    return digest.digest()


def reset() -> None:
    """Forget every record (the layer calls it when a ``generate_until`` call starts)."""
    with _LOCK:
        _RECORDS.clear()


def record(doc, reply: str, verdict: bool | None) -> None:
    """Record one reply's verdict; the same (document, reply) recorded with another verdict becomes None."""
    key = _key(doc, reply)
    if key is None:
        return
    with _LOCK:
        if key in _RECORDS and _RECORDS[key] != verdict:
            verdict = None
        _RECORDS[key] = verdict


def truncated(doc, reply) -> bool | None:
    """Whether ``reply`` to ``doc`` stopped because it hit its token budget; None when not measured."""
    if not isinstance(reply, str):
        return None
    key = _key(doc, reply)
    if key is None:
        return None
    with _LOCK:
        return _RECORDS.get(key)
