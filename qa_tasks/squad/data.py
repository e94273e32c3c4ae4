"""SQuAD v1.1 data: passages with their questions (local file or the Hub), sampled per passage."""

from __future__ import annotations

import functools
import hashlib
import random
from dataclasses import dataclass

from qa_tasks.data import int_option, load_hub, local_or_none, read_json
from qa_tasks.errors import QAPackError

STRATEGIES = ("all_in_one", "batch", "sequential", "collab")
HUB_ID = "rajpurkar/squad"
_SPLITS = {"validation": "squad/dev-v1.1.json", "train": "squad/train-v1.1.json"}


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
def paragraphs(split: str) -> tuple:
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
    for pid, context, qas in paragraphs(split):
        if len(qas) < min_questions:
            continue
        keep = range(len(qas)) if max_questions is None or len(qas) <= max_questions else _sample(
            pid, len(qas), max_questions, seed)
        questions = tuple(Question(f"Q{i + 1}", qas[j][1], qas[j][2], qas[j][0]) for i, j in enumerate(keep))
        passages.append(Passage(pid, context, questions))
    if not passages:
        most = max(len(qas) for _, _, qas in paragraphs(split))
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


