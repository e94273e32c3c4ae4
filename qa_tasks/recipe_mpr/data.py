"""Recipe-MPR data: the 500 records, the 5 folds, and each query's shuffled option order."""

from __future__ import annotations

import functools
import hashlib
import json
import random
from dataclasses import dataclass

from qa_tasks.data import fetch_pinned, int_option, read_json
from qa_tasks.errors import QAPackError

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


def _short(value: object, limit: int = 60) -> str:
    """``repr`` cut to ``limit`` characters: one line, whatever the value holds."""
    text = repr(value)
    return text if len(text) <= limit else text[:limit - 3] + "..."


def _check_record(i: int, rec: object, where: str) -> None:
    """Raise one QAPackError line naming record ``i`` (index and query) when it is not a Recipe-MPR record:
    ``query`` a text, ``options`` 5 ids -> distinct texts, ``answer`` one of those ids (a string, as in the
    released file), ``query_type`` 0/1 flags."""
    def bad(what: str) -> QAPackError:
        query = rec.get("query", "?") if isinstance(rec, dict) else "?"
        return QAPackError(f"{where}: record {i} ({_short(str(query), 50)}) {what}")

    if not isinstance(rec, dict):
        raise bad("is not a JSON object; fix or restore the file")
    for key in ("query", "options", "answer", "query_type"):
        if key not in rec:
            raise bad(f"has no '{key}'; fix or restore the file")
    if not isinstance(rec["query"], str) or not rec["query"].strip():
        raise bad(f"has query {_short(rec['query'])}, expected the query text; fix or restore the file")
    options = rec["options"]
    if not isinstance(options, dict) or len(options) != len(LETTERS):
        raise bad(f"has {len(options) if isinstance(options, dict) else 'no'} options, expected {len(LETTERS)} "
                  "(an object of option id -> recipe text); fix or restore the file")
    if empty := [k for k, text in options.items() if not isinstance(text, str) or not text.strip()]:
        raise bad(f"has option {empty[0]!r} with text {_short(options[empty[0]])}, expected a recipe text; "
                  "fix or restore the file")
    answer, ids = rec["answer"], ", ".join(_short(k, 20) for k in options)
    if not isinstance(answer, str):  # a list or object is unhashable: it must not reach `in options`
        one = answer[0] if isinstance(answer, list) and len(answer) == 1 else None
        hint = f'; write "answer": {json.dumps(one)}' if isinstance(one, str) and one in options else ""
        raise bad(f"has answer {_short(answer)} ({type(answer).__name__}), expected the id of its correct "
                  f"option as a string (one of {ids}){hint}")
    if answer not in options:
        raise bad(f"has answer {_short(answer)}, which is not among its option ids ({ids}); "
                  "fix or restore the file")
    first: dict[str, str] = {}
    for key, text in options.items():  # compared as shown to the model: stripped, spaces collapsed
        shown = " ".join(text.split())
        if shown in first:
            raise bad(f"has options {first[shown]!r} and {key!r} with the same text {_short(shown)}: two letters "
                      "would show one recipe; keep one of them (the released file has no such record)")
        first[shown] = key
    flags = rec["query_type"]
    if (not isinstance(flags, dict) or set(flags) - set(QUERY_TYPES)
            or any(v not in (0, 1) for v in flags.values())):
        raise bad(f"has query_type {_short(flags)}, expected 0/1 flags for {', '.join(QUERY_TYPES)}; "
                  "fix or restore the file")


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


def fold_option(fold: object) -> int | None:
    """The ``fold`` option (task variant or ``--metadata``): None, "" or "all" = every query, else an
    integer 0..4 (``"x"`` or ``1.7`` is an error, never a silent fold 1)."""
    if fold is None or (isinstance(fold, str) and fold.strip() in ("", "all")):
        return None
    return int_option("fold", fold, low=0, high=N_FOLDS - 1)


def build_docs(fold: object = None, part: str = "test") -> list[RecipeDoc]:
    """All 500 docs (``fold=None``), or the ``part`` ('train'/'test') indices of fold 0..4."""
    records = load_records()
    fold = fold_option(fold)
    if fold is None:
        indices: tuple[int, ...] = tuple(range(len(records)))
    else:
        train, test = load_folds()[fold]
        indices = {"train": train, "test": test}[part]
    return [_doc(i, records[i]) for i in indices]


def run_fold(fold: object = None, task_fold: object = None, task: str = "this task") -> int | None:
    """The fold a run evaluates: a fold variant's own (``task_fold``) or ``--metadata`` ``fold`` on the base
    tasks; both, disagreeing, is an error (the results file would record one fold and score another)."""
    own, given = fold_option(task_fold), fold_option(fold)
    if own is not None and given is not None and own != given:
        raise QAPackError(f"{task} is fold {own}, but --metadata sets fold={fold!r}; drop fold from --metadata "
                          f"or run the base task with it")
    return own if own is not None else given

