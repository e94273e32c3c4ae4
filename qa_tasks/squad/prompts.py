"""SQuAD prompt builders, one per strategy, shared by the eval tasks and finetune."""

from __future__ import annotations

from collections.abc import Sequence

from qa_tasks.squad.data import Passage, Question

INSTRUCTION = ("Answer the question with a short span copied from the passage. "
               "Put the answer inside <answer></answer> tags, for example <answer>Paris</answer>.")
ALL_IN_ONE_INSTRUCTION = (
    "Answer every question below with a short span copied from the passage. Reply with one line per "
    "question in the form Qk: <answer>text</answer>, for example Q1: <answer>Paris</answer>.")
PLANNER_INSTRUCTION = (
    "You will answer the questions below one at a time in a single conversation. Plan it: list every "
    "question id exactly once in \"order\" (the order to ask them in), and in \"links\" name for a "
    "question the earlier questions whose answers help with it. Reply with JSON only, for example "
    "{\"order\": [\"Q2\", \"Q1\", \"Q3\"], \"links\": {\"Q3\": [\"Q2\"]}}.")

# The planner replies with JSON, which may span lines but holds no blank line, so its task's "\n\n"
# would cut a reply that opens with a sentence; three newlines end a runaway reply instead. Never an
# empty list: with no stop string of lm-eval's own (API models without eos_string), a server receives
# "stop": [] and some reject it (transformers serve: HTTP 400).
PLANNER_STOP = ("\n\n\n",)
# --- prompts: one builder per strategy, shared by eval and finetune ------------------------------

def format_answer(text: str) -> str:
    return f"<answer>{text}</answer>"


def _passage_block(passage: Passage) -> str:
    return f"Passage:\n{passage.context.strip()}\n\n"


def batch_prompt(passage: Passage, i: int) -> str:
    """The single-question prompt for question ``i`` (0-based); squad_v1 and squad_batch use it."""
    return f"{_passage_block(passage)}{INSTRUCTION}\n\nQuestion: {passage.questions[i].question}\nAnswer:"


def all_in_one_prompt(passage: Passage) -> str:
    lines = "\n".join(f"{q.qid}: {q.question}" for q in passage.questions)
    return f"{_passage_block(passage)}{ALL_IN_ONE_INSTRUCTION}\n\n{lines}\nAnswers:"


def followup_turn(question: Question) -> str:
    """A later user turn of a conversation: the passage and instruction are already in the history."""
    return f"Question: {question.question}\nAnswer:"


def sequential_messages(passage: Passage, replies: Sequence[str]) -> list[dict]:
    """The sequential conversation after ``len(replies)`` answered questions: ends with the user turn
    asking the next question, or with the last reply once every question is answered."""
    messages: list[dict] = []
    for i, question in enumerate(passage.questions[: len(replies) + 1]):
        messages.append({"role": "user", "content": batch_prompt(passage, 0) if i == 0 else followup_turn(question)})
        if i < len(replies):
            messages.append({"role": "assistant", "content": replies[i]})
    return messages


def planner_prompt(passage: Passage) -> str:
    lines = "\n".join(f"{q.qid}: {q.question}" for q in passage.questions)
    return f"{_passage_block(passage)}{PLANNER_INSTRUCTION}\n\n{lines}\nJSON:"


def collab_turn(passage: Passage, qid: str, first: bool, related: Sequence[tuple[str, str]]) -> str:
    """A collab user turn: the first holds the passage; later ones start with the linked earlier Q&A
    (question text, the model's own answer)."""
    index = [q.qid for q in passage.questions].index(qid)
    if first:
        return batch_prompt(passage, index)
    turn = followup_turn(passage.questions[index])
    if related:
        block = "\n".join(f"Q: {q}\nA: {a}" for q, a in related)
        turn = f"Related Q&A:\n{block}\n\n{turn}"
    return turn


