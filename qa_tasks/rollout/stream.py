"""Barrier-free rollout for API models: each conversation sends its next calls as soon as the replies
to its previous ones arrive, at most ``workers`` (lm-eval's ``num_concurrent``) requests in flight.

Round-batching waits, each round, for the slowest call of every conversation; here wall time follows
the slowest conversation instead. Replies and accounting are the same as round-batched (a plan's
k-th group of calls is recorded as round k, in call order); ``latency_s`` of a call is its own wall time.
Set ``QA_PACK_ROLLOUT=rounds`` to round-batch API models too.
"""

from __future__ import annotations

from collections.abc import Callable
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait

from qa_tasks.rollout.plan import Plan

__all__ = ["stream"]


def stream(send: Callable, render: Callable, count: Callable, requests, plans: list[Plan], plain: list[int],
           results: list, workers: int) -> None:
    """Run the ``plans`` and the ``plain`` requests one call at a time on ``workers`` threads; plain replies go
    to ``results``. ``send(request, prompt, kwargs)`` returns (reply, seconds) from the wrapped model,
    ``render(plan, call)`` a call's prompt and ``count(prompt)`` its tokens (``RolloutMixin``'s methods)."""

    flying: dict[Future, tuple] = {}
    done_calls: dict[int, list] = {}  # id(plan) -> per pending call: (call, prompt, reply, seconds)

    with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="qa-pack-rollout") as pool:
        def launch(plan) -> None:
            done_calls[id(plan)] = [None] * len(plan.pending)
            for j, call in enumerate(plan.pending):
                prompt = render(plan, call)
                flying[pool.submit(send, requests[plan.index], prompt, plan.kwargs(call))] = (plan, j, call, prompt)

        for i in plain:
            flying[pool.submit(send, requests[i], *requests[i].args)] = (None, i, None, None)
        for plan in plans:
            if plan.pending:
                launch(plan)
        try:
            while flying:
                finished, _ = wait(flying, return_when=FIRST_COMPLETED)
                for future in finished:
                    plan, j, call, prompt = flying.pop(future)
                    out, seconds = future.result()
                    if plan is None:
                        results[j] = out
                        continue
                    slots = done_calls[id(plan)]
                    slots[j] = (call, prompt, out, seconds)
                    if any(slot is None for slot in slots):
                        continue
                    for call_, prompt_, out_, seconds_ in slots:  # in call order, as round-batching does
                        plan.record(call_, prompt_, out_, seconds_, count)
                    plan.feed([slot[2] for slot in slots])
                    if plan.pending:
                        launch(plan)
        except BaseException:
            for future in flying:
                future.cancel()
            raise
