"""Read one lm-eval samples log (``samples_<task>_<stamp>.jsonl``): per-document metric values with
their ``doc_hash`` (for paired tests and document-set checks), the passage each document belongs to (for
clustered errors) and the model's replies (for the constant-answer check)."""

from __future__ import annotations

import json
import math
from pathlib import Path

from qa_tasks.rollout import RESULT_KEY

__all__ = ["Clusters", "Replies", "Samples", "cluster_of", "number", "read_samples"]

# doc_id -> (doc_hash or None, {metric: (value, weight)}); weight is 1, or the count of a (sum, count)
# pair that a task micro-averages (SQuAD passages)
Samples = dict[int, tuple[str | None, dict[str, tuple[float, float]]]]
Replies = dict[int, list[str]]  # doc_id -> the model's answer(s)
Clusters = dict[int, str]  # doc_id -> the passage it was asked on


def number(value) -> float | None:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    return None if math.isnan(value) or math.isinf(value) else value


def _sample_value(value) -> tuple[float, float] | None:
    """A per-sample metric as (value, weight): a number, or a (sum, count) pair as (sum/count, count)."""
    if number(value) is not None:
        return float(value), 1.0
    if isinstance(value, (list, tuple)) and len(value) == 2 and all(number(v) is not None for v in value):
        total, count = value
        return (float(total) / count, float(count)) if count > 0 else None
    return None


def cluster_of(doc) -> str | None:
    """The passage a logged document belongs to: the pack's SQuAD documents name it (``pid``: title and
    paragraph, for squad_v1's one-question documents and the strategies' passages alike); other
    passage-based documents (lm-eval's own SQuAD) carry its text as ``context``. None: not passage-based."""
    if not isinstance(doc, dict):
        return None
    for key in ("pid", "context"):
        if isinstance(doc.get(key), str) and doc[key]:
            return doc[key]
    return None


def _replies(filtered) -> list[str] | None:
    """The model's answer(s) in a sample's ``filtered_resps``: the generated text; for a rollout
    strategy, each question's reply; for a multiple-choice loglikelihood task, the option it ranks first."""
    if not isinstance(filtered, list) or not filtered:
        return None
    first = filtered[0]
    if isinstance(first, str):
        if first.startswith("{") and RESULT_KEY in first:
            try:
                output = json.loads(first).get("output", {})
            except (ValueError, AttributeError):
                output = {}
            if isinstance(output, dict) and isinstance(output.get("replies"), dict) and output["replies"]:
                return [str(v) for v in output["replies"].values()]
        return [first]
    try:  # [[loglikelihood, is_greedy], ...] per option; numbers are logged as strings
        scores = [float(pair[0]) for pair in filtered]
    except (TypeError, ValueError, IndexError):
        return None
    if len(scores) < 2:
        return None
    return [f"option {max(range(len(scores)), key=scores.__getitem__) + 1}"]


def read_samples(path: Path) -> tuple[Samples | None, Replies | None, Clusters | None, str | None]:
    """Per-document metric values, replies and passages of one samples log, and a problem to report (or None).

    Truncated or foreign lines are skipped and counted; nothing readable gives (None, None, None, why).
    Passages come back only when every document names one.
    """
    try:
        lines = path.read_text(encoding="utf-8", errors="replace").splitlines()
    except OSError as e:
        return None, None, None, f"cannot be read ({e.strerror or e}); no paired test for this task"
    samples: Samples = {}
    replies: Replies = {}
    clusters: Clusters = {}
    bad = []
    problem = None
    for lineno, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            rec = json.loads(line)
            doc_id = rec["doc_id"]
            names = rec.get("metrics") or [k for k in rec if number(rec[k]) is not None and k != "doc_id"]
        except (ValueError, KeyError, TypeError):
            bad.append(lineno)
            continue
        filt = rec.get("filter", "none")
        values = {}
        for name in names:
            value = _sample_value(rec.get(name))
            if value is not None:
                values[name if filt == "none" else f"{name},{filt}"] = value
        hash_ = rec.get("doc_hash") if isinstance(rec.get("doc_hash"), str) else None
        if isinstance(doc_id, int):
            prev = samples.get(doc_id, (hash_, {}))[1]
            samples[doc_id] = (hash_, {**prev, **values})
            reply = _replies(rec.get("filtered_resps"))
            if reply is not None:
                replies.setdefault(doc_id, reply)
            if (passage := cluster_of(rec.get("doc"))) is not None:
                clusters[doc_id] = passage
    if bad:
        where = f"line {bad[0]}" if len(bad) == 1 else f"{len(bad)} lines (first: {bad[0]})"
        problem = f"{where} not a valid sample record (truncated?); kept the other {len(samples)} samples"
    if not samples:
        return None, None, None, "no readable samples; no paired test for this task"
    return samples, replies or None, clusters if len(clusters) == len(samples) else None, problem
