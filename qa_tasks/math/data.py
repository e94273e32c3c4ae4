"""Math data: MATH-500, GSM8K (test and train) and the MATH test set, as documents with gold answers."""

from __future__ import annotations

import functools
import os
import re
from pathlib import Path

from qa_tasks.data import DATA_ENV, data_dir, load_hub, local_or_none, read_jsonl
from qa_tasks.errors import QAPackError
from qa_tasks.math.grader import (
    gold_from_gsm8k,
    gold_from_math,
)

HENDRYCKS_HUB = "EleutherAI/hendrycks_math"
HENDRYCKS_SUBJECTS = ("algebra", "counting_and_probability", "geometry", "intermediate_algebra",
                      "number_theory", "prealgebra", "precalculus")
# A folder holding <subject>/test.jsonl for all 7 subjects (rows as on the Hub: problem, level, type,
# solution); checked first, then QA_PACK_DATA_DIR/math/hendrycks_math/, then the Hub.
HENDRYCKS_ENV = "QA_PACK_HENDRYCKS_MATH_DIR"
# --- data -------------------------------------------------------------------------------------

def _bad_row(where: str, lineno: int, what: str) -> QAPackError:
    return QAPackError(f"{where}: row {lineno} {what}; fix or restore the file (check {DATA_ENV})")


def _require(row: dict, keys: tuple[str, ...], where: str, lineno: int) -> None:
    for key in keys:
        if not isinstance(row.get(key), str) or not row[key].strip():
            raise _bad_row(where, lineno, f"has no text field '{key}'")


_CALCULATOR = re.compile(r"<<[^<>]*>>")  # GSM8K calculator annotations, e.g. "16-3-4=<<16-3-4=9>>9"


@functools.lru_cache(maxsize=2)
def load_gsm8k(split: str = "test") -> list[dict]:
    """GSM8K rows as ``{"question", "reasoning", "answer"}``.

    ``reasoning`` is the solution without its ``####`` line and without the calculator annotations
    (``<<48/2=24>>``); ``answer`` is the final number.
    """
    if split not in ("test", "train"):
        raise QAPackError(f"GSM8K split {split!r} does not exist; use 'test' or 'train'")
    rel = f"math/gsm8k_{split}.jsonl"
    local = local_or_none(rel)
    rows = read_jsonl(local) if local else load_hub("openai/gsm8k", split, rel, name="main")
    where = str(local or f"openai/gsm8k:{split}")
    out = []
    for lineno, row in enumerate(rows, 1):
        _require(row, ("question", "answer"), where, lineno)
        try:
            answer = gold_from_gsm8k(row["answer"])
        except ValueError:
            raise _bad_row(where, lineno, "has no '#### <number>' final answer") from None
        reasoning = _CALCULATOR.sub("", row["answer"].rsplit("####", 1)[0]).strip()
        out.append({"question": row["question"].strip(), "reasoning": reasoning, "answer": answer})
    if not out:
        raise QAPackError(f"{where} holds no rows; restore the file (check {DATA_ENV})")
    return out


@functools.lru_cache(maxsize=1)
def load_math500() -> list[dict]:
    """MATH-500 rows as on the Hub (problem, solution, answer, subject, level, unique_id), validated."""
    rel = "math/math500_test.jsonl"
    local = local_or_none(rel)
    rows = read_jsonl(local) if local else load_hub("HuggingFaceH4/MATH-500", "test", rel)
    where = str(local or "HuggingFaceH4/MATH-500:test")
    for lineno, row in enumerate(rows, 1):
        _require(row, ("problem", "answer"), where, lineno)
    if not rows:
        raise QAPackError(f"{where} holds no rows; restore the file (check {DATA_ENV})")
    return rows


def _hendrycks_folder() -> Path | None:
    value = os.environ.get(HENDRYCKS_ENV, "").strip()
    if value:
        folder = Path(value).expanduser()
        if not folder.is_dir():
            raise QAPackError(f"{HENDRYCKS_ENV}={value} is not a folder; point it at a folder holding "
                              f"<subject>/test.jsonl for {', '.join(HENDRYCKS_SUBJECTS)}, or unset it")
        return folder
    root = data_dir()
    if root is not None and (root / "math" / "hendrycks_math").is_dir():
        return root / "math" / "hendrycks_math"
    return None  # the shared data has no copy: the Hub is the source even with QA_PACK_DATA_DIR set


@functools.lru_cache(maxsize=2)
def load_hendrycks_math(split: str = "test") -> list[dict]:
    """The MATH test (5000) or train (7500) set, 7 subjects, Hub rows (problem, level, type, solution) plus
    ``subject``."""
    folder = _hendrycks_folder()
    rows: list[dict] = []
    for subject in HENDRYCKS_SUBJECTS:
        rel = f"math/hendrycks_math/{subject}/{split}.jsonl"
        if folder is not None:
            path = folder / subject / f"{split}.jsonl"
            if not path.is_file():
                raise QAPackError(f"{path} is missing; the local MATH copy in {folder} needs <subject>/{split}.jsonl "
                                  f"for all of {', '.join(HENDRYCKS_SUBJECTS)}")
            part, where = read_jsonl(path), str(path)
        else:
            part, where = load_hub(HENDRYCKS_HUB, split, rel, name=subject), f"{HENDRYCKS_HUB}/{subject}:{split}"
        for lineno, row in enumerate(part, 1):
            _require(row, ("problem", "solution"), where, lineno)
            if gold_from_math(row) is None:
                raise _bad_row(where, lineno, "has no \\boxed{} answer in its solution")
            rows.append({**row, "subject": subject})
    return rows


def build_docs(source: str) -> list[dict]:
    """Eval docs for lm-eval: ``{"id", "question", "gold", "subject", "level"}`` (all strings)."""
    if source == "math500":
        return [{"id": r.get("unique_id") or f"math500/{i}", "question": r["problem"].strip(),
                 "gold": gold_from_math(r), "subject": str(r.get("subject", "")), "level": str(r.get("level", ""))}
                for i, r in enumerate(load_math500())]
    if source in ("gsm8k", "gsm8k_train"):  # gsm8k_train: the validation documents of a sweep (gsm8k_think_train)
        split = "test" if source == "gsm8k" else "train"
        return [{"id": f"gsm8k/{split}/{i}", "question": r["question"], "gold": r["answer"], "subject": "",
                 "level": ""} for i, r in enumerate(load_gsm8k(split))]
    if source == "hendrycks_math":
        counters: dict[str, int] = {}
        docs = []
        for r in load_hendrycks_math():
            k = counters[r["subject"]] = counters.get(r["subject"], -1) + 1
            docs.append({"id": f"hendrycks_math/{r['subject']}/{k}", "question": r["problem"].strip(),
                         "gold": gold_from_math(r), "subject": r["subject"], "level": str(r.get("level", ""))})
        return docs
    raise QAPackError(f"unknown math data set {source!r}; use math500, gsm8k, gsm8k_train or hendrycks_math")


