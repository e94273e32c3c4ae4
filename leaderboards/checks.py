"""Checks that keep a leaderboard from being mis-read (pure functions over read results).

- ``doc_set_warning``: numbers set side by side must come from the same documents; a different n
  (``--limit``) or different ``doc_hash`` sets (``--samples``, another data file) make them
  incomparable, and the table says so.
- ``constant_answer``: a model that gives one answer to (nearly) every document scores whatever share
  of the golds that answer happens to match; its delta is a property of the data, not of the model.
- ``chance_level``: the score of guessing, drawn as a line on the plots (the family's ``chance``; Recipe-MPR: 1 in 5).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass

from leaderboards.reader import TaskResult
from qa_tasks.family import family_named
from qa_tasks.recipe_mpr import LETTERS  # Recipe-MPR's option letters

__all__ = ["CONSTANT_MIN_DOCS", "CONSTANT_SHARE", "LETTERS", "Caution", "chance_level", "constant_answer", "doc_set_cautions",
           "doc_set_warning"]

CONSTANT_SHARE = 0.95  # "≈ 1.0": this share of all predictions is one answer
CONSTANT_MIN_DOCS = 3  # fewer documents agree by chance too easily to call a model constant
_CHANCE_METRICS = ("acc", "acc_norm")


@dataclass(frozen=True)
class Caution:
    """A warning attached to a table; ``scope`` names the rows it concerns (e.g. (task,) or (model, task))."""

    scope: tuple[str, ...]
    text: str


def _doc_hashes(result: TaskResult) -> frozenset[str] | None:
    """The documents behind ``result``, where its samples log names every one of them."""
    if not result.samples or len(result.samples) != result.n:  # a truncated log proves nothing
        return None
    hashes = [h for h, _ in result.samples.values()]
    return frozenset(hashes) if all(hashes) else None


def _names(labels: list[str]) -> str:
    return ", ".join(labels)


def doc_set_warning(what: str, entries: list[tuple[str, TaskResult]]) -> str | None:
    """One line when the ``entries`` ((label, result) shown side by side for ``what``) were not all
    evaluated on the same documents, else None.

    Different n is always reported; equal n with different ``doc_hash`` sets (from the samples logs)
    too. Results without a samples log can only be compared by n.
    """
    if len(entries) < 2:
        return None
    by_n: dict[int | None, list[str]] = {}
    for label, result in entries:
        by_n.setdefault(result.n, []).append(label)
    if len(by_n) > 1:
        parts = "; ".join(f"n={n if n is not None else '?'} for {_names(labels)}"
                          for n, labels in sorted(by_n.items(), key=lambda kv: (kv[0] is None, kv[0] or 0)))
        return (f"{what}: evaluated on different numbers of documents ({parts}); these numbers are not "
                f"comparable: rerun with the same --limit")
    by_docs: dict[frozenset[str], list[str]] = {}
    for label, result in entries:
        hashes = _doc_hashes(result)
        if hashes is not None:
            by_docs.setdefault(hashes, []).append(label)
    if len(by_docs) > 1:
        sets = list(by_docs)
        shared = frozenset.intersection(*sets)
        groups = " vs ".join(f"({_names(labels)})" for labels in by_docs.values())
        return (f"{what}: same n={entries[0][1].n} but different documents (doc_hash in the samples logs: "
                f"{len(shared)} of {len(sets[0])} shared between {groups}); these numbers are not comparable: "
                f"rerun on the same documents (same --limit/--samples and data files)")
    return None


def doc_set_cautions(entries: Iterable[tuple[str, str, TaskResult]]) -> list[Caution]:
    """One caution per task whose rows ((model label, task, result) side by side) differ in documents."""
    by_task: dict[str, list[tuple[str, TaskResult]]] = {}
    for label, task, result in entries:
        by_task.setdefault(task, []).append((label, result))
    return [Caution((task,), warning) for task, rows in sorted(by_task.items())
            if (warning := doc_set_warning(task, rows))]


def _normal(reply: str) -> str:
    return " ".join(reply.split()).casefold()


def _shown(reply: str, width: int = 40) -> str:
    text = " ".join(reply.split())
    return repr(text if len(text) <= width else text[: width - 1] + "…")


def constant_answer(result: TaskResult) -> str | None:
    """What the model repeats when it gives one answer to (nearly) every document, else None.

    Read from the position-bias shares ``pred_A`` … ``pred_E`` where the task reports them (the parsed
    letter, so "A", "A." and "Answer: A" agree), else from the replies in the samples log (for a
    multi-question SQuAD strategy, every question's reply).
    """
    preds = {x: result.metrics[f"pred_{x}"] for x in LETTERS if f"pred_{x}" in result.metrics}
    if preds and (result.n or 0) >= CONSTANT_MIN_DOCS:
        letter, share = max(preds.items(), key=lambda kv: (kv[1], kv[0]))
        if share >= CONSTANT_SHARE:
            return f"answers {letter} to {share:.0%} of {result.n} documents (pred_{letter} = {share:.3f})"
    if not result.replies or len(result.replies) < CONSTANT_MIN_DOCS:
        return None
    replies = [r for doc in result.replies.values() for r in doc]
    counts = Counter(_normal(r) for r in replies)
    top, count = counts.most_common(1)[0]
    if count / len(replies) < CONSTANT_SHARE:
        return None
    original = next(r for r in replies if _normal(r) == top)
    unit = "questions" if len(replies) > len(result.replies) else "documents"
    return f"replies {_shown(original)} to {count} of {len(replies)} {unit}"


def chance_level(task_family: str, metric: str) -> float | None:
    """The expected score of a uniform guess, where the metric has one (accuracy over fixed options)."""
    family = family_named(task_family)
    if family is not None and (metric.split(",")[0] in _CHANCE_METRICS or metric.startswith("acc_")):
        return family.chance
    return None
