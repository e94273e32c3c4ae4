"""The guard: training never sees an evaluation document.

For every evaluation task of the run (``eval_tasks``, plus the eval split of the training family itself)
the task's documents are read the way lm-eval reads them (``qa_tasks.harness.task_index.task_documents``), so a
task family added to the pack later is covered with nothing to edit here. Each document is identified by
its longest text field (the question, query, problem or passage); a training row whose normalised text
(lower case, punctuation dropped, whitespace collapsed) contains it is refused.
"""

from __future__ import annotations

import re
from collections import defaultdict

from finetune.data import TrainingData, example_text
from qa_tasks.errors import QAPackError

__all__ = ["MIN_WORDS", "check_no_overlap", "document_text", "eval_tasks_of", "matching_documents", "normalise"]

MIN_WORDS = 4  # shorter fields (answers, ids, letters) say too little to call a match a leak
_NOT_WORD = re.compile(r"[^\w\s]")


def normalise(text: str) -> str:
    return " ".join(_NOT_WORD.sub("", text.lower()).split())


def document_text(doc: dict) -> str:
    """The text that identifies an evaluation document: its longest top-level string field, normalised."""
    fields = [normalise(v) for v in doc.values() if isinstance(v, str)]
    return max(fields, key=len, default="")


def eval_tasks_of(task: str, fold: int, eval_tasks: list[str]) -> list[str]:
    """The pack tasks whose documents the training data must not contain (groups expanded)."""
    from qa_tasks.family import training_sets
    from qa_tasks.harness.task_index import leaf_tasks, pack_tasks

    # the training set's own evaluation split, as its family declares it
    own = training_sets()[task][1].eval_task.format(fold=fold) if task in training_sets() else ""
    names = ([own] if own else []) + [n for n in eval_tasks if n in pack_tasks()]
    out: list[str] = []
    for name in names:
        out += [t for t in leaf_tasks(name) if t not in out]
    return out


def _index(task: str) -> dict[tuple[str, ...], list[list[str]]]:
    """First MIN_WORDS words of each document text -> the documents' word lists."""
    from qa_tasks.harness.task_index import task_documents

    index: dict[tuple[str, ...], list[list[str]]] = defaultdict(list)
    for doc in task_documents(task):
        words = document_text(doc).split()
        if len(words) >= MIN_WORDS and words not in index[tuple(words[:MIN_WORDS])]:
            index[tuple(words[:MIN_WORDS])].append(words)
    return index


def _first_match(words: list[str], index) -> str | None:
    grams = zip(*(words[k:] for k in range(MIN_WORDS)))
    for i, gram in enumerate(grams):
        for needle in index.get(gram, ()):
            if words[i:i + len(needle)] == needle:
                return " ".join(needle)
    return None


def matching_documents(rows: list[dict], task: str) -> list[int]:
    """Indices (in lm-eval's document order) of the documents of ``task`` that some row contains, by the
    same text rule as the guard."""
    from qa_tasks.harness.task_index import task_documents

    index: dict[tuple[str, ...], list[tuple[int, list[str]]]] = defaultdict(list)
    for i, doc in enumerate(task_documents(task)):
        words = document_text(doc).split()
        if len(words) >= MIN_WORDS:
            index[tuple(words[:MIN_WORDS])].append((i, words))
    found: set[int] = set()
    for row in rows:
        words = normalise(example_text(row)).split()
        for k, gram in enumerate(zip(*(words[j:] for j in range(MIN_WORDS)))):
            found.update(i for i, needle in index.get(gram, ()) if words[k:k + len(needle)] == needle)
    return sorted(found)


def check_no_overlap(data: TrainingData, task: str, eval_tasks: list[str] | None = None, fold: int = 0) -> None:
    """Refuse ``data`` when any row contains a document of the evaluation tasks (one line: task, count,
    example)."""
    tasks = eval_tasks_of(task, fold, list(eval_tasks or []))
    if not tasks:
        return
    rows = [normalise(example_text(row)).split() for row in data.rows]
    for name in tasks:
        index = _index(name)
        hits = [(i, m) for i, words in enumerate(rows) if (m := _first_match(words, index)) is not None]
        if hits:
            i, text = hits[0]
            where = f"{data.path} row {i + 1}" if data.path else f"training example {i + 1}"
            raise QAPackError(f"{len(hits)} training row(s) contain evaluation documents of {name} (e.g. {where}: "
                              f"{text[:60]!r}); training must not see evaluation data: remove them, or change "
                              "the fold/split or the eval tasks")
