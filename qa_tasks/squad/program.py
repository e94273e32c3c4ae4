"""The multi-call strategies as rollout programs (generators yielding the calls of the next round)."""

from __future__ import annotations

from collections.abc import Generator

from qa_tasks.errors import QAPackError
from qa_tasks.squad.data import STRATEGIES, Passage
from qa_tasks.squad.metrics import extract_answer, parse_all_in_one, parse_planner
from qa_tasks.squad.prompts import (
    PLANNER_STOP,
    all_in_one_prompt,
    batch_prompt,
    collab_turn,
    planner_prompt,
    sequential_messages,
)

# --- rollout programs ----------------------------------------------------------------------------

def _call(messages: list[dict], kind: str = "answer", **gen_kwargs):
    from qa_tasks.rollout import Call

    return Call(messages=[dict(x) for x in messages], kind=kind, gen_kwargs=gen_kwargs)


def _user(text: str) -> list[dict]:
    return [{"role": "user", "content": text}]


def rollout_program(args: dict, gen_kwargs: dict) -> Generator:
    """The calls of one passage under one strategy; returns the replies per question id.

    ``gen_kwargs`` are the task's generation kwargs: ``max_gen_toks`` is the budget per answer
    (all_in_one gets n times it, the planner 16 + 16 per question).
    """
    strategy = args["strategy"]
    passage = Passage.from_dict(args["passage"])
    qids = [q.qid for q in passage.questions]
    n = len(qids)
    per_answer = int(gen_kwargs.get("max_gen_toks", 48))
    out: dict = {"strategy": strategy, "replies": dict.fromkeys(qids)}
    if strategy == "all_in_one":
        [reply] = yield [_call(_user(all_in_one_prompt(passage)), max_gen_toks=per_answer * n)]
        out["reply"] = reply
        out["replies"] = parse_all_in_one(reply, qids)
    elif strategy == "batch":
        replies = yield [_call(_user(batch_prompt(passage, i))) for i in range(n)]
        out["replies"] = dict(zip(qids, replies))
    elif strategy == "sequential":
        replies: list[str] = []
        for _ in range(n):
            [reply] = yield [_call(sequential_messages(passage, replies))]
            replies.append(reply)
        out["replies"] = dict(zip(qids, replies))
    elif strategy == "collab":
        [plan_reply] = yield [_call(_user(planner_prompt(passage)), kind="planner",
                                    max_gen_toks=16 + 16 * n, until=list(PLANNER_STOP))]
        plan = parse_planner(plan_reply, qids)
        out.update(planner_reply=plan_reply, order=list(plan.order), links={k: list(v) for k, v in plan.links.items()},
                   planner_failure=plan.failure)
        text = {q.qid: q.question for q in passage.questions}
        messages: list[dict] = []
        for k, qid in enumerate(plan.order):
            related = [(text[d], extract_answer(out["replies"][d] or "")[0]) for d in plan.links.get(qid, ())]
            turn = {"role": "user", "content": collab_turn(passage, qid, k == 0, related)}
            [reply] = yield [_call(messages + [turn])]
            messages += [turn, {"role": "assistant", "content": reply}]
            out["replies"][qid] = reply
    else:
        raise QAPackError(f"unknown SQuAD strategy {strategy!r}; use one of {', '.join(STRATEGIES)}")
    return out



def plan_args(strategy: str, passage: Passage) -> dict:
    """The rollout plan arguments of one document (see ``rollout_program``)."""
    return {"strategy": strategy, "passage": passage.as_dict()}

