"""Recipe-MPR (Zhang et al., 2023): 500 multi-aspect recipe queries, 5 options each.

The gold option is the FIRST option in every record of the released file, so options are shuffled
with a seeded, per-query permutation (``option_order``) before anything is shown to a model.
Query types are multi-label: a query counts toward every type it is flagged with.
"""

from __future__ import annotations

import functools
import hashlib
import json
import random
import re
import unicodedata
from dataclasses import dataclass

from qa_tasks.data import fetch_pinned, int_option, read_json
from qa_tasks.errors import QAPackError
from qa_tasks.family import Family, TrainingSet

__all__ = [
    "FAMILY",
    "LETTERS",
    "QUERY_TYPES",
    "SHUFFLE_SEED",
    "RecipeDoc",
    "build_docs",
    "fold_option",
    "gen_completion",
    "gen_prompt",
    "load_folds",
    "load_records",
    "mc_prompt",
    "option_order",
    "parse_letter",
    "preflight",
    "run_fold",
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


# A letter as an answer: a capital A-E standing alone (markdown, brackets and quotes around it are fine),
# not the start of a word or of an abbreviation ("E.g.", "A's").
_L = r"[(\[*\"']*(?<![A-Za-z0-9])([A-E])(?![A-Za-z0-9]|\.[A-Za-z]|'[a-z])[)\]*\"'.:]*"
# More letters offered next to one: "A or B", "A, B", "(B) and (C)", "A/B"
_MORE = re.compile(rf"\s*(?:,|/|&|\bor\b|\band\b)\s*(?i:(?:option|choice)\s+)?{_L}")
# Explicit statements of the answer, strongest first; the first kind present decides.
_STATEMENTS = [
    re.compile(rf"(?i:\b(?:answer|choice|option|pick|selection)(?:\s+(?:here|would|will|should|must))?"
               rf"\s*(?:\bis\b|\bbe\b|:|=|-)\s*(?:(?:option|choice)\s+)?){_L}"),  # "The answer is C"
    re.compile(rf"(?i:\b(?:i\s+(?:would\s+|will\s+|'d\s+|'ll\s+)?)?(?:choose|chose|pick|select|go\s+with)"
               rf"\s+(?:(?:option|choice)\s+)?){_L}"),  # "I'd go with B"
    re.compile(rf"(?i:\b(?:it['’]s|it\s+is|that['’]s|that\s+is)\s+(?:(?:option|choice)\s+)?){_L}"),  # "it's C"
    re.compile(rf"(?i:\b(?:option|choice)\s+){_L}"),  # "Option C"
]
_LEADING = re.compile(rf"^\s*{_L}")
_ANY = re.compile(_L)
# "A" that opens a sentence and is followed by a lower-case word is the article ("A vegetarian lasagna"),
# unless that word is one a letter answer is followed by ("A is the one", "A because ...").
_ARTICLE = re.compile(r"(?:^|(?<=[.!?\n])\s*)\s*(A) (?!(?:is|was|fits|matches|satisfies|seems|because|since|as|"
                      r"or|and)\b)[a-z]")


def _offered(pattern: re.Pattern, text: str, skip: set[int]) -> set[str]:
    """Letters of every match of ``pattern`` (with the alternatives listed after each), except matches
    whose letter sits at a position in ``skip``."""
    letters: set[str] = set()
    for match in pattern.finditer(text):
        if match.start(1) in skip:
            continue
        letters.add(match.group(1))
        end = match.end()
        while more := _MORE.match(text, end):
            letters.add(more.group(1))
            end = more.end()
    return letters


def parse_letter(text: str) -> str | None:
    """The option letter a reply chooses, or None when it names none or offers several (rules and examples
    in tasks_yaml/recipe_mpr/README.md): an explicit statement ("The answer is C", "Option C") wins, then a
    leading letter ("B) Greek salad"), then the only letter standing alone anywhere ("Definitely B")."""
    text = unicodedata.normalize("NFKC", text).strip()  # full-width "Ｂ" -> "B"
    articles = {m.start(1) for m in _ARTICLE.finditer(text)}
    for pattern in (*_STATEMENTS, _LEADING):
        letters = _offered(pattern, text, articles)
        if letters:
            return letters.pop() if len(letters) == 1 else None
    letters = {m.group(1) for m in _ANY.finditer(text) if m.start(1) not in articles}
    return letters.pop() if len(letters) == 1 else None


# --- scorers: pure functions, results as lm-eval metric dicts ------------------------------------

def _type_metrics(types: tuple[str, ...], correct: float) -> dict[str, float]:
    """acc_<type> only for the types the query has, so each is averaged over its own queries (and the
    samples log says which queries stand behind it: the leaderboard counts them there)."""
    return {f"acc_{t}": correct for t in types}


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
    out.update({f"pred_{x}": float(letter == x) for x in LETTERS})  # share of each predicted letter
    return out


def run_fold(fold: object = None, task_fold: object = None, task: str = "this task") -> int | None:
    """The fold a run evaluates: a fold variant's own (``task_fold``) or ``--metadata`` ``fold`` on the base
    tasks; both, disagreeing, is an error (the results file would record one fold and score another)."""
    own, given = fold_option(task_fold), fold_option(fold)
    if own is not None and given is not None and own != given:
        raise QAPackError(f"{task} is fold {own}, but --metadata sets fold={fold!r}; drop fold from --metadata "
                          f"or run the base task with it")
    return own if own is not None else given


def preflight(task_name: str, metadata: dict | None = None) -> None:
    """Load and validate the data (and folds) before any model loads; with the run's ``--metadata``
    (None: not known) also its ``fold``."""
    from qa_tasks.task_index import task_options

    load_records()
    fold = run_fold((metadata or {}).get("fold"), task_options(task_name).get("task_fold"), task_name)
    if fold is not None:
        load_folds()


_TABLES = "leaderboards.family_tables"
FAMILY = Family(
    name="recipe_mpr",
    preflight=preflight,
    training_sets={"recipe_mpr": TrainingSet(
        "finetune.data:recipe_mpr_set", "Recipe-MPR train indices of `fold`, recipe_mpr_gen prompt + gold letter",
        eval_task="recipe_mpr_gen_fold{fold}", folds=N_FOLDS)},
    main_metric="acc",
    compared_metrics=("acc", "acc_norm", "invalid_rate"),
    progress_metrics=("acc", "acc_norm", "invalid_rate"),
    chance=1 / len(LETTERS),
    tables=(f"{_TABLES}:recipe_types_table", f"{_TABLES}:position_bias_table"),
    demo_tasks=("recipe_mpr_fold0", "recipe_mpr_gen_fold0"),  # fold 0's test split: the demo trains on fold 0
)
