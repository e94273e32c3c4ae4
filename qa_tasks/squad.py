"""SQuAD v1.1 multi-question strategies: passages, prompt builders, rollout programs, per-passage metrics.

A document is one passage with its questions (ids Q1..Qn). The strategies differ in how the
questions reach the model (see tasks_yaml/squad/README.md):

- ``all_in_one``: one call answering every question as ``Qk: <answer>…</answer>`` lines;
- ``batch``: one independent call per question (``batch_prompt``), all in one round;
- ``sequential``: one conversation, the passage only in the first user turn, the model's own
  replies kept in the history (``sequential_messages``), one round per question;
- ``collab``: a planner call returns ``{"order": [...], "links": {...}}``, then a conversation in
  that order where each later turn is prefixed with the planner-linked earlier Q&A.

The multi-call strategies run as rollout programs (generators yielding the calls of the next round,
receiving their replies) executed by ``qa_tasks.rollout`` across all passages at once.
"""

from __future__ import annotations

import functools
import hashlib
import random
from collections.abc import Generator, Sequence
from dataclasses import dataclass

from qa_tasks import squad_metrics as m
from qa_tasks.data import int_option, load_hub, local_or_none, read_json
from qa_tasks.errors import QAPackError
from qa_tasks.family import Family, TrainingSet

__all__ = [
    "FAMILY", "STRATEGIES", "Passage", "Question", "all_in_one_prompt", "batch_prompt", "collab_turn",
    "followup_turn", "format_answer", "load_passages", "load_questions", "passage_metrics", "passage_options",
    "plan_args", "planner_prompt", "preflight", "question_metrics", "rollout_program", "sequential_messages",
]

STRATEGIES = ("all_in_one", "batch", "sequential", "collab")
HUB_ID = "rajpurkar/squad"
_SPLITS = {"validation": "squad/dev-v1.1.json", "train": "squad/train-v1.1.json"}
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


@dataclass(frozen=True)
class Question:
    qid: str  # "Q1".."Qn", position within the passage's (sampled) questions
    question: str
    answers: tuple[str, ...]  # every gold answer text (official scoring takes the max over them)
    squad_id: str = ""


@dataclass(frozen=True)
class Passage:
    pid: str  # "<article title>/<paragraph index>"
    context: str
    questions: tuple[Question, ...]

    def as_dict(self) -> dict:
        return {"pid": self.pid, "context": self.context,
                "questions": [{"qid": q.qid, "question": q.question, "answers": list(q.answers),
                               "squad_id": q.squad_id} for q in self.questions]}

    @classmethod
    def from_dict(cls, d: dict) -> Passage:
        return cls(d["pid"], d["context"], tuple(
            Question(q["qid"], q["question"], tuple(q["answers"]), q.get("squad_id", "")) for q in d["questions"]))


# --- data ---------------------------------------------------------------------------------------

def _bad(where: str, what: str) -> QAPackError:
    return QAPackError(f"{where}: {what}; expected SQuAD v1.1 JSON ({{\"data\": [{{\"title\", \"paragraphs\": "
                       f"[{{\"context\", \"qas\": [{{\"id\", \"question\", \"answers\": [{{\"text\"}}]}}]}}]}}]}}), "
                       "restore the original file")


def _answer_texts(qa: dict, where: str) -> tuple[str, ...]:
    """The gold texts of one question; a null, non-string or blank text is a data error, not the gold
    "None" (an empty gold would let an empty reply count as correct)."""
    texts = []
    for x in qa["answers"]:
        text = x.get("text") if isinstance(x, dict) else None
        if not isinstance(text, str) or not text.strip():
            raise QAPackError(f"{where} has answer text {text!r}; every answer needs a non-empty string "
                              "'text': restore the original SQuAD v1.1 file or fix that record")
        texts.append(text)
    return tuple(texts)


def _paragraphs_from_file(path) -> list[tuple[str, str, list[tuple[str, str, tuple[str, ...]]]]]:
    raw = read_json(path)
    if not isinstance(raw, dict) or not isinstance(raw.get("data"), list):
        raise _bad(str(path), "no top-level 'data' list")
    out = []
    for a, article in enumerate(raw["data"]):
        if not isinstance(article, dict) or not isinstance(article.get("paragraphs"), list):
            raise _bad(str(path), f"article {a} has no 'paragraphs' list")
        title = str(article.get("title", f"article{a}"))
        for p, para in enumerate(article["paragraphs"]):
            if not isinstance(para, dict) or not isinstance(para.get("context"), str) or not isinstance(
                    para.get("qas"), list):
                raise _bad(str(path), f"{title} paragraph {p} lacks 'context' or 'qas'")
            qas = []
            for qa in para["qas"]:
                if not isinstance(qa, dict) or not isinstance(qa.get("question"), str) or not isinstance(
                        qa.get("answers"), list):
                    raise _bad(str(path), f"{title} paragraph {p} has a question without 'question'/'answers'")
                answers = _answer_texts(qa, f"{path}: {title} paragraph {p} question {qa.get('id', '?')!r}")
                if answers:  # SQuAD 2.0-style unanswerable questions are not part of v1.1
                    qas.append((str(qa.get("id", "")), qa["question"].strip(), answers))
            out.append((f"{title}/{p}", para["context"], qas))
    return out


def _paragraphs_from_hub(split: str, rel: str) -> list[tuple[str, str, list[tuple[str, str, tuple[str, ...]]]]]:
    out: list = []
    index: dict[tuple[str, str], int] = {}
    per_title: dict[str, int] = {}
    for row in load_hub(HUB_ID, split, rel):
        key = (row["title"], row["context"])
        if key not in index:
            index[key] = len(out)
            k = per_title.get(row["title"], 0)
            per_title[row["title"]] = k + 1
            out.append((f"{row['title']}/{k}", row["context"], []))
        answers = _answer_texts({"answers": [{"text": t} for t in row["answers"]["text"]]},
                                f"{HUB_ID} {split} row {row['id']!r}")
        if answers:
            out[index[key]][2].append((row["id"], row["question"].strip(), answers))
    return out


@functools.lru_cache(maxsize=4)
def _paragraphs(split: str) -> tuple:
    if split not in _SPLITS:
        raise QAPackError(f"split={split!r} is not a SQuAD split; use 'validation' or 'train'")
    rel = _SPLITS[split]
    local = local_or_none(rel)
    paragraphs = _paragraphs_from_file(local) if local is not None else _paragraphs_from_hub(split, rel)
    if not paragraphs:
        raise QAPackError(f"{local or HUB_ID}: no paragraphs found; restore the original SQuAD v1.1 data")
    return tuple(paragraphs)


def _sample(pid: str, n: int, k: int, seed: int) -> list[int]:
    """Seeded, machine-independent choice of k of n question positions, kept in file order."""
    rng = random.Random(int.from_bytes(hashlib.sha256(f"squad:{seed}:{pid}".encode()).digest()[:8], "big"))
    return sorted(rng.sample(range(n), k))


def passage_options(split: object = "validation", min_questions: object = 5, max_questions: object = 10,
                    seed: object = 1234) -> dict:
    """The strategies' document options (from ``--metadata``) checked and typed; QAPackError otherwise."""
    if split not in _SPLITS:
        raise QAPackError(f"split={split!r} is not a SQuAD split; use 'validation' or 'train'")
    minimum = int_option("min_questions", min_questions, low=1)
    maximum = None if max_questions in (None, "", 0, "0") else int_option("max_questions", max_questions, low=1)
    if maximum is not None and maximum < minimum:
        raise QAPackError(f"max_questions={maximum} is below min_questions={minimum}; set max_questions to at "
                          f"least {minimum} (or 0 to keep every question), e.g. --metadata "
                          f"'{{\"min_questions\": {minimum}, \"max_questions\": 0}}'")
    return {"split": split, "min_questions": minimum, "max_questions": maximum, "seed": int_option("seed", seed)}


def load_passages(split: str = "validation", min_questions: int = 5, max_questions: int | None = 10,
                  seed: int = 1234) -> list[Passage]:
    """Passages with at least ``min_questions`` questions, each with up to ``max_questions`` of them
    (sampled with ``seed`` when there are more; None or 0 keeps all), in file order. No passage left
    is an error naming the options."""
    options = passage_options(split, min_questions, max_questions, seed)
    min_questions, max_questions, seed = options["min_questions"], options["max_questions"], options["seed"]
    passages = []
    for pid, context, qas in _paragraphs(split):
        if len(qas) < min_questions:
            continue
        keep = range(len(qas)) if max_questions is None or len(qas) <= max_questions else _sample(
            pid, len(qas), max_questions, seed)
        questions = tuple(Question(f"Q{i + 1}", qas[j][1], qas[j][2], qas[j][0]) for i, j in enumerate(keep))
        passages.append(Passage(pid, context, questions))
    if not passages:
        most = max(len(qas) for _, _, qas in _paragraphs(split))
        source = local_or_none(_SPLITS[split]) or f"{HUB_ID} {split}"
        if most == 0:
            raise QAPackError(f"{source}: no passage has an answerable question; restore the original SQuAD "
                              "v1.1 data")
        raise QAPackError(f"{source}: no passage has min_questions={min_questions} answerable questions "
                          f"(the most is {most}), so there is nothing to evaluate; lower it, e.g. "
                          f"--metadata '{{\"min_questions\": {most}}}'")
    return passages


def load_questions(split: str = "validation") -> list[Passage]:
    """Every answerable question of the split as a one-question passage (the squad_v1 documents)."""
    out = []
    for p in load_passages(split, min_questions=1, max_questions=None):
        out.extend(Passage(p.pid, p.context, (Question("Q1", q.question, q.answers, q.squad_id),))
                   for q in p.questions)
    return out


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
        out["replies"] = m.parse_all_in_one(reply, qids)
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
        plan = m.parse_planner(plan_reply, qids)
        out.update(planner_reply=plan_reply, order=list(plan.order), links={k: list(v) for k, v in plan.links.items()},
                   planner_failure=plan.failure)
        text = {q.qid: q.question for q in passage.questions}
        messages: list[dict] = []
        for k, qid in enumerate(plan.order):
            related = [(text[d], m.extract_answer(out["replies"][d] or "")[0]) for d in plan.links.get(qid, ())]
            turn = {"role": "user", "content": collab_turn(passage, qid, k == 0, related)}
            [reply] = yield [_call(messages + [turn])]
            messages += [turn, {"role": "assistant", "content": reply}]
            out["replies"][qid] = reply
    else:
        raise QAPackError(f"unknown SQuAD strategy {strategy!r}; use one of {', '.join(STRATEGIES)}")
    return out


# --- metrics -------------------------------------------------------------------------------------



def question_metrics(passage: Passage, replies: dict[str, str | None]) -> list[dict[str, float]]:
    """Per-question scores, in question order (a missing reply scores 0 everywhere)."""
    return [m.score_answer(replies.get(q.qid), q.answers) for q in passage.questions]


def passage_metrics(passage: Passage, result: dict) -> dict:
    """lm-eval metrics of one passage from a rollout result (``{"output", "rollout"}``).

    Per-question metrics are (sum, count) pairs so the task can micro-average them over questions;
    cost metrics are per passage.
    """
    output, rollout = result["output"], result["rollout"]
    scores = question_metrics(passage, output["replies"])
    n = len(scores)
    metrics: dict = {k: (sum(s[k] for s in scores), n) for k in m.QUESTION_METRICS}
    calls = rollout["calls"]
    answer_calls = [c for c in calls if c["kind"] != "planner"]
    planner_calls = [c for c in calls if c["kind"] == "planner"]
    metrics.update(
        prompt_tokens=float(sum(c["new_prompt_tokens"] for c in answer_calls)),
        prompt_tokens_api=float(sum(c["prompt_tokens"] for c in calls)),
        gen_tokens=float(sum(c["gen_tokens"] for c in answer_calls)),
        gen_tokens_api=float(sum(c["gen_tokens"] for c in calls)),
        dep_tokens=float(sum(c["prompt_tokens"] + c["gen_tokens"] for c in planner_calls)),
        calls=float(len(calls)),
        rounds=float(rollout["rounds"]),
        latency_s=float(rollout["latency_s"]),
        n_questions=float(n),
        n_passages=1.0,
    )
    if output.get("strategy") == "collab":
        metrics["planner_failures"] = float(output.get("planner_failure") is not None)
    return metrics


def preflight(task_name: str, metadata: dict | None = None) -> None:
    """Load and validate the data a task reads before any model loads. With the run's ``--metadata``
    (None: not known), also its options and that they leave at least one document."""
    if metadata is None:
        _paragraphs("validation")
        return
    options = {k: metadata[k] for k in ("split", "min_questions", "max_questions", "seed") if k in metadata}
    if task_name == "squad_v1":
        load_questions(options.get("split", "validation"))
    else:
        load_passages(**options)


def plan_args(strategy: str, passage: Passage) -> dict:
    """The rollout plan arguments of one document (see ``rollout_program``)."""
    return {"strategy": strategy, "passage": passage.as_dict()}


_TABLES, _SETS = "leaderboards.family_tables", "finetune.data"
FAMILY = Family(
    name="squad",
    preflight=preflight,
    training_sets={
        "squad_batch": TrainingSet(f"{_SETS}:squad_batch_set", "SQuAD train split, one example per question "
                                   "(squad_batch prompt + <answer>)", eval_task="squad_v1"),
        "squad_sequential": TrainingSet(f"{_SETS}:squad_sequential_set", "SQuAD train split, one multi-turn "
                                        "conversation per passage (squad_sequential)", eval_task="squad_v1")},
    main_metric="em", compared_metrics=("em", "f1", "lenient"), progress_metrics=("em", "f1", "lenient"),
    tables=(f"{_TABLES}:squad_table", f"{_TABLES}:latency_table"),
    rollout_programs={"squad": "qa_tasks.squad:rollout_program"},
    multi_round_tasks=("squad_sequential", "squad_collab"),
    demo_tasks=("squad_v1", "squad_all_in_one", "squad_batch", "squad_sequential", "squad_collab"),
)
