"""Recipe-MPR (Zhang et al., 2023): 500 multi-aspect recipe queries, 5 options each.

The gold option is the FIRST option in every record of the released file, so options are shuffled
with a seeded, per-query permutation (``option_order``) before anything is shown to a model.
Query types are multi-label: a query counts toward every type it is flagged with.
"""

from __future__ import annotations

import functools
import hashlib
import random
import re
from dataclasses import dataclass

from qa_tasks.data import fetch_pinned, read_json
from qa_tasks.errors import QAPackError

__all__ = [
    "LETTERS",
    "QUERY_TYPES",
    "SHUFFLE_SEED",
    "RecipeDoc",
    "build_docs",
    "gen_completion",
    "gen_prompt",
    "load_folds",
    "load_records",
    "mc_prompt",
    "option_order",
    "parse_letter",
    "preflight",
    "score_choice",
    "score_generation",
]

QUERY_TYPES = ("Specific", "Commonsense", "Negated", "Analogical", "Temporal")
LETTERS = "ABCDE"
SHUFFLE_SEED = 1234
N_FOLDS = 5
_COMMIT = "6db37033ed6f2f6371933354369f6912cf85dbb8"
_RAW = f"https://raw.githubusercontent.com/D3Mlab/Recipe-MPR/{_COMMIT}"
_QA_FILE = ("recipe_mpr/500QA.json", f"{_RAW}/data/500QA.json",
            "ab61f4200e9c43d049b91e3de41878ea7a33e21ad395f0bf78beeb5bdc06e730")
_FOLDS_FILE = ("recipe_mpr/folds/5_fold_inds.json", f"{_RAW}/baselines/folds/5_fold_inds.json",
               "45955fc5181435e62faca415a7a58f43bc6c99891cda8cd6e6ac06e74a7c7f5b")


@dataclass(frozen=True)
class RecipeDoc:
    """One query with its options in the order shown to the model."""

    idx: int  # position in 500QA.json
    query: str
    options: tuple[str, ...]  # option texts, shuffled
    gold: int  # index of the correct option in ``options``
    types: tuple[str, ...]  # query types flagged 1

    @property
    def gold_letter(self) -> str:
        return LETTERS[self.gold]

    def as_dict(self) -> dict:
        return {"idx": self.idx, "query": self.query, "options": list(self.options), "gold": self.gold,
                "gold_letter": self.gold_letter, "types": list(self.types)}

    @classmethod
    def from_dict(cls, d: dict) -> RecipeDoc:
        return cls(d["idx"], d["query"], tuple(d["options"]), d["gold"], tuple(d["types"]))


def _check_record(i: int, rec: object, where: str) -> None:
    def bad(what: str) -> QAPackError:
        query = rec.get("query", "?") if isinstance(rec, dict) else "?"
        return QAPackError(f"{where}: record {i} ({str(query)[:50]!r}) {what}; fix or restore the file")

    if not isinstance(rec, dict):
        raise bad("is not a JSON object")
    for key in ("query", "options", "answer", "query_type"):
        if key not in rec:
            raise bad(f"has no '{key}'")
    options = rec["options"]
    if not isinstance(options, dict) or len(options) != len(LETTERS):
        raise bad(f"has {len(options) if isinstance(options, dict) else 'no'} options, expected {len(LETTERS)}")
    if rec["answer"] not in options:
        raise bad(f"has answer {rec['answer']!r}, which is not among its option ids")
    if not isinstance(rec["query_type"], dict) or set(rec["query_type"]) - set(QUERY_TYPES):
        raise bad(f"has query_type {rec['query_type']!r}, expected flags for {', '.join(QUERY_TYPES)}")


@functools.lru_cache(maxsize=1)
def load_records() -> tuple[dict, ...]:
    """The 500 raw records, validated (QAPackError names the first bad record)."""
    path = fetch_pinned(*_QA_FILE)
    records = read_json(path)
    if not isinstance(records, list) or not records:
        raise QAPackError(f"{path}: expected a JSON list of Recipe-MPR records; fix or restore the file")
    for i, rec in enumerate(records):
        _check_record(i, rec, str(path))
    return tuple(records)


@functools.lru_cache(maxsize=1)
def load_folds() -> tuple[tuple[tuple[int, ...], tuple[int, ...]], ...]:
    """The paper's 5 folds as (train indices, test indices); its validation parts are empty."""
    path = fetch_pinned(*_FOLDS_FILE)
    raw = read_json(path)
    n = len(load_records())
    ok = isinstance(raw, list) and len(raw) == N_FOLDS and all(
        isinstance(f, list) and len(f) == 3 and all(isinstance(i, int) and 0 <= i < n for part in f for i in part)
        for f in raw)
    if not ok:
        raise QAPackError(f"{path}: expected {N_FOLDS} [train, val, test] lists of indices below {n}; "
                          "fix or restore the file")
    return tuple((tuple(train + val), tuple(test)) for train, val, test in raw)


def option_order(idx: int, n: int = len(LETTERS), seed: int = SHUFFLE_SEED) -> list[int]:
    """Seeded permutation of the file's option positions for record ``idx`` (same on every machine)."""
    rng = random.Random(int.from_bytes(hashlib.sha256(f"recipe_mpr:{seed}:{idx}".encode()).digest()[:8], "big"))
    order = list(range(n))
    rng.shuffle(order)
    return order


def _doc(idx: int, rec: dict) -> RecipeDoc:
    ids = list(rec["options"])
    order = option_order(idx, len(ids))
    shuffled = [ids[j] for j in order]
    types = tuple(t for t in QUERY_TYPES if int(rec["query_type"].get(t, 0)) == 1)
    return RecipeDoc(idx, rec["query"].strip(), tuple(rec["options"][k].strip() for k in shuffled),
                     shuffled.index(rec["answer"]), types)


def build_docs(fold: int | None = None, part: str = "test") -> list[RecipeDoc]:
    """All 500 docs (``fold=None``), or the ``part`` ('train'/'test') indices of fold 0..4."""
    records = load_records()
    if fold is None:
        indices: tuple[int, ...] = tuple(range(len(records)))
    else:
        if not (isinstance(fold, int) and 0 <= fold < N_FOLDS):
            raise QAPackError(f"fold={fold!r} is not valid; use an integer 0..{N_FOLDS - 1}")
        train, test = load_folds()[fold]
        indices = {"train": train, "test": test}[part]
    return [_doc(i, records[i]) for i in indices]


# --- prompts: the single builder used by the eval tasks and by finetune ---------------------------

def mc_prompt(doc: RecipeDoc) -> str:
    """Context for the loglikelihood task; each option text is scored as the continuation."""
    return f"Query: {doc.query}\nThe recipe that best satisfies this query is:"


def gen_prompt(doc: RecipeDoc) -> str:
    """Lettered options in the shuffled order, answered with one letter."""
    lines = "\n".join(f"{LETTERS[i]}. {text}" for i, text in enumerate(doc.options))
    return (f"Query: {doc.query}\nOptions:\n{lines}\n"
            f"Which option best satisfies the query? Answer with a single letter (A-E).\nAnswer:")


def gen_completion(doc: RecipeDoc) -> str:
    """The gold completion for fine-tuning on ``gen_prompt``."""
    return f" {doc.gold_letter}"


_LETTER_PATTERNS = [
    re.compile(r"^\W*([A-E])\W*$"),  # "B", "(B)", "B."
    re.compile(r"^\s*[\(\[]?([A-E])(?:[\)\].:,]|\s*-\s|\s*$)"),  # "B) Greek salad", "B. ...", "B: ..."
    re.compile(r"(?i:answer|option|choice)(?:\s+is)?\s*[:=]?\s*[\(\[]?\**([A-E])\b"),  # "Answer: B"
    re.compile(r"^\s*([A-E])\s"),  # "B Greek salad"
]


def parse_letter(text: str) -> str | None:
    """The option letter a reply chooses, or None when no letter can be read with confidence."""
    text = text.strip()
    for pattern in _LETTER_PATTERNS:
        match = pattern.search(text)
        if match:
            return match.group(1)
    return None


# --- scorers: pure functions, results as lm-eval metric dicts ------------------------------------

def _type_metrics(types: tuple[str, ...], correct: float) -> dict[str, float]:
    """acc_<type> only for the types the query has (so each is averaged over its own queries),
    n_<type> for every type (summed into the count behind each rate)."""
    out = {f"acc_{t}": correct for t in types}
    out.update({f"n_{t}": float(t in types) for t in QUERY_TYPES})
    return out


def score_choice(doc: RecipeDoc, loglikelihoods: list[float]) -> dict[str, float]:
    """Metrics of the loglikelihood task: argmax option (acc) and its char-length-normalised form."""
    pred = max(range(len(loglikelihoods)), key=loglikelihoods.__getitem__)
    norm = [ll / max(len(text), 1) for ll, text in zip(loglikelihoods, doc.options)]
    pred_norm = max(range(len(norm)), key=norm.__getitem__)
    correct = float(pred == doc.gold)
    return {"acc": correct, "acc_norm": float(pred_norm == doc.gold), "n": 1.0, **_type_metrics(doc.types, correct)}


def score_generation(doc: RecipeDoc, reply: str) -> dict[str, float]:
    """Metrics of the generative task, with the position-bias diagnostics."""
    letter = parse_letter(reply)
    correct = float(letter == doc.gold_letter)
    out = {"acc": correct, "invalid_rate": float(letter is None), "n": 1.0, **_type_metrics(doc.types, correct)}
    out[f"acc_gold_{doc.gold_letter}"] = correct  # accuracy by position of the gold letter
    out.update({f"n_gold_{x}": float(x == doc.gold_letter) for x in LETTERS})
    out.update({f"pred_{x}": float(letter == x) for x in LETTERS})  # share of each predicted letter
    return out


def preflight(task_name: str) -> None:
    """Load and validate the data (and folds) before any model loads."""
    load_records()
    if "fold" in task_name:
        load_folds()
