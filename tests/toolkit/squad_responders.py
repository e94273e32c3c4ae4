"""Scripted SQuAD responders for ``--model scripted``: they read the prompt they are given, find the
passage and question(s) in the shared data and reply with the gold answer (first gold text).

    --model scripted --model_args responder=tests.toolkit.squad_responders:gold,style=tagged,planner=reverse

``style``: ``tagged`` (``<answer>gold</answer>``, scores 1.0), ``wrong`` (``The answer is gold.``:
no tags, so em = 0 while f1 > 0) or ``nested`` (``<ANSWER>I think <answer>gold</answer></ANSWER>``: tags in
another case around a re-opened tag, which starts the answer again, so it scores 1.0). ``planner``: ``reverse`` (ask in reverse order, each question
linked to the one asked before it), ``identity`` or ``bad`` (not JSON, counted as a planner failure).
``layout`` of the all_in_one reply: ``lines`` (one ``Qk: …`` line per question) or ``one_line`` (every
answer on one line). ``constant=TEXT``: every single-question prompt gets TEXT instead of its gold
(a model that games containment by answering one letter).
"""

from __future__ import annotations

import json
import re

from qa_tasks import squad

__all__ = ["GoldResponder", "gold"]

_QUESTION = re.compile(r"Question: (.+?)\nAnswer:")
_LISTED = re.compile(r"^(Q\d+): (.+)$", re.MULTILINE)


class GoldResponder:
    def __init__(self, style: str = "tagged", planner: str = "reverse", layout: str = "lines",
                 constant: str | None = None) -> None:
        self.style, self.planner, self.layout, self.constant = style, planner, layout, constant
        self.by_question: dict[str, list[tuple[str, str]]] = {}
        for p in squad.load_passages("validation", min_questions=1, max_questions=None):
            for q in p.questions:
                self.by_question.setdefault(q.question, []).append((p.context.strip(), q.answers[0]))

    def _gold(self, question: str, prompt: str) -> str:
        for context, answer in self.by_question.get(question.strip(), []):
            if context in prompt:
                return answer
        raise AssertionError(f"scripted responder: unknown question {question!r}")

    def _format(self, answer: str) -> str:
        if self.style == "nested":
            return f"<ANSWER>I think {squad.format_answer(answer)}</ANSWER>"
        return squad.format_answer(answer) if self.style == "tagged" else f"The answer is {answer}."

    def generate(self, context: str, gen_kwargs: dict) -> str:
        if squad.PLANNER_INSTRUCTION in context:
            qids = [qid for qid, _ in _LISTED.findall(context.split(squad.PLANNER_INSTRUCTION)[-1])]
            if self.planner == "bad":
                return "I would start with the first question."
            order = list(reversed(qids)) if self.planner == "reverse" else qids
            links = {order[k]: [order[k - 1]] for k in range(1, len(order))}
            return json.dumps({"order": order, "links": links})
        if squad.ALL_IN_ONE_INSTRUCTION in context:
            listed = _LISTED.findall(context.split(squad.ALL_IN_ONE_INSTRUCTION)[-1])
            sep = " " if self.layout == "one_line" else "\n"
            return sep.join(f"{qid}: {self._format(self._gold(q, context))}" for qid, q in listed)
        if self.constant is not None:
            return self.constant
        questions = _QUESTION.findall(context)
        assert questions, f"scripted responder: no question in prompt {context[-300:]!r}"
        return self._format(self._gold(questions[-1], context))


def gold(style: str = "tagged", planner: str = "reverse", layout: str = "lines", constant: str | None = None,
         **_ignored) -> GoldResponder:
    return GoldResponder(style=style, planner=planner, layout=layout,
                         constant=None if constant is None else str(constant))
