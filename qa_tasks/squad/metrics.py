"""Pure SQuAD scorers: official v1.1 EM/F1, ``<answer>`` tag extraction, lenient match, planner orders.

``normalize_answer``, ``exact_match`` and ``f1`` follow the official ``evaluate-v1.1.py`` exactly
(lower-case, drop ``string.punctuation``, drop the articles a/an/the, collapse whitespace; F1 is the
token-bag overlap; both take the max over the gold answers). Values are fractions (0..1), not ×100.

``lenient`` compares whole words (a reply of one letter is not "inside" every answer holding that
letter); ``lenient_substring`` is the character containment of the parallel-agent strategy study,
kept for comparison with its numbers and easy to game.
"""

from __future__ import annotations

import bisect
import json
import re
import string
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass

from qa_tasks.squad.data import Passage

__all__ = [
    "QUESTION_METRICS",
    "PlannerOrder",
    "exact_match",
    "extract_answer",
    "extract_tagged",
    "f1",
    "lenient",
    "lenient_substring",
    "normalize_answer",
    "parse_all_in_one",
    "parse_planner",
    "score_answer",
]

_PUNCT = set(string.punctuation)
_ARTICLES = re.compile(r"\b(a|an|the)\b")
# tags in any case and with stray spaces (``<ANSWER>``, ``< /answer >``) are still tags
_OPEN = r"<\s*answer\s*>"
_CLOSE = r"<\s*/\s*answer\s*>"
# a complete pair holds no other opening tag: ``<answer>`` opened again before ``</answer>`` starts the
# answer again (and no match can scan past the next opening tag, so a reply of many tags stays linear)
_TAGGED = re.compile(f"{_OPEN}((?:(?!{_OPEN}).)*?){_CLOSE}", re.DOTALL | re.IGNORECASE)
_OPEN_TAG = re.compile(_OPEN, re.IGNORECASE)
_CLOSE_TAG = re.compile(_CLOSE, re.IGNORECASE)
# a reply cut off inside its closing tag ("Paris</ans"): the tag's start is not part of the answer
_CUT_CLOSE = re.compile(r"<\s*/\s*(?:a(?:n(?:s(?:w(?:e(?:r\s*)?)?)?)?)?)?$", re.IGNORECASE)


def normalize_answer(s: str) -> str:
    """Official SQuAD v1.1 normalisation (same order of steps as evaluate-v1.1.py)."""
    s = s.lower()
    s = "".join(ch for ch in s if ch not in _PUNCT)
    s = _ARTICLES.sub(" ", s)
    return " ".join(s.split())


def _f1_single(prediction: str, gold: str) -> float:
    pred_tokens = normalize_answer(prediction).split()
    gold_tokens = normalize_answer(gold).split()
    common = Counter(pred_tokens) & Counter(gold_tokens)
    num_same = sum(common.values())
    if num_same == 0:
        return 0.0
    precision = num_same / len(pred_tokens)
    recall = num_same / len(gold_tokens)
    return 2 * precision * recall / (precision + recall)


def exact_match(prediction: str, golds: Sequence[str]) -> float:
    """Official EM: 1.0 when the normalized prediction equals any normalized gold answer."""
    pred = normalize_answer(prediction)
    return float(any(pred == normalize_answer(g) for g in golds))


def f1(prediction: str, golds: Sequence[str]) -> float:
    """Official F1: the best token-bag overlap with any gold answer (0 when no token is shared)."""
    return max((_f1_single(prediction, g) for g in golds), default=0.0)


def extract_tagged(reply: str) -> str | None:
    """Content of the last complete ``<answer>…</answer>`` pair with some text in it, stripped ("" when
    every pair is empty); None when there is no complete pair. An ``<answer>`` opened again before the
    ``</answer>`` starts the answer again, so nested tags ``<answer>a <answer>b</answer></answer>`` read
    "b" (never "a <answer>b") and a ``</answer>`` with no opening tag before it is ignored."""
    found = [m.group(1).strip() for m in _TAGGED.finditer(reply)]
    if not found:
        return None
    return next((text for text in reversed(found) if text), "")


def extract_answer(reply: str) -> tuple[str, bool]:
    """(answer text, tags complete): ``extract_tagged``'s answer; else the text after the last opening tag
    (a reply cut off before ``</answer>``, or inside it: ``<answer>Paris</ans``); else the text before the
    first closing tag (``Paris</answer>``); else the whole reply. Tags are never part of the answer."""
    tagged = extract_tagged(reply)
    if tagged is not None:
        return tagged, True
    opened = list(_OPEN_TAG.finditer(reply))
    if opened:
        return _CUT_CLOSE.sub("", reply[opened[-1].end():]).strip(), False
    closed = _CLOSE_TAG.search(reply)
    if closed:
        return reply[:closed.start()].strip(), False
    return reply.strip(), False


def _contains_run(outer: list[str], inner: list[str]) -> bool:
    """``inner`` occurs in ``outer`` as a contiguous run of whole tokens."""
    k = len(inner)
    return any(outer[i:i + k] == inner for i in range(len(outer) - k + 1))


def lenient(prediction: str, golds: Sequence[str]) -> float:
    """After official normalisation, the prediction's words form a contiguous run inside a gold's words
    or the gold's inside the prediction's; an empty prediction (or gold) never counts."""
    pred = normalize_answer(prediction).split()
    if not pred:
        return 0.0
    for gold in golds:
        g = normalize_answer(gold).split()
        if g and (_contains_run(g, pred) or _contains_run(pred, g)):
            return 1.0
    return 0.0


def lenient_substring(prediction: str, golds: Sequence[str]) -> float:
    """Character containment of the normalized strings, as in the parallel-agent strategy study
    (their empty prediction counts; here it never does). Gameable: "d" is inside "inherent difficulty"."""
    pred = normalize_answer(prediction)
    if not pred:
        return 0.0
    for gold in golds:
        g = normalize_answer(gold)
        if g and (g in pred or pred in g):
            return 1.0
    return 0.0


QUESTION_METRICS = ("em", "em_official", "f1", "lenient", "lenient_substring")


def score_answer(reply: str | None, golds: Sequence[str]) -> dict[str, float]:
    """Per-question metrics of one reply (None = the model gave no answer for this question)."""
    if reply is None:
        return dict.fromkeys(QUESTION_METRICS, 0.0)
    answer, tagged = extract_answer(reply)
    em_official = exact_match(answer, golds)
    return {"em": em_official if tagged else 0.0, "em_official": em_official, "f1": f1(answer, golds),
            "lenient": lenient(answer, golds), "lenient_substring": lenient_substring(answer, golds)}


# A "Qk" label anywhere (not inside a word), with optional markdown around it, then ":", ".", ")" or "-".
# The markdown run is only taken from its start (no match begins inside a run of "*": linear time), and
# at most 6 digits (a 5000-digit "Q999…:" is no label, and no int() of it can fail).
_LABEL = re.compile(r"(?:(?<![A-Za-z0-9*_#])[*_#]+|(?<![A-Za-z0-9]))Q(\d{1,6})[*_]*\s*[:.)\-][*_]*",
                    re.IGNORECASE)


def parse_all_in_one(reply: str, qids: Sequence[str]) -> dict[str, str | None]:
    """Per question id the text between its ``Qk:`` label and the next label (first label wins), so
    several labels on one line, an answer on the line after its label and multi-line answers all
    read; None when the id is missing.

    A label inside a complete ``<answer>…</answer>`` pair (as ``extract_tagged`` pairs tags) that opens
    after the reply's first label is part of that answer, not a label: in
    ``Q1: <answer>x Q2: y</answer> Q2: <answer>z</answer>`` Q1 answered "x Q2: y" and Q2 answered "z" (the
    model gave "y" inside Q1's tags, never for Q2). In a reply wrapped whole in one pair
    (``<answer>Q1: a Q2: b</answer>``) no label precedes the pair, so its labels still count.
    """
    out: dict[str, str | None] = dict.fromkeys(qids)
    labels = _labels_outside_answers(reply)
    for label, following in zip(labels, labels[1:] + [None]):
        qid = f"Q{int(label.group(1))}"
        if qid in out and out[qid] is None:
            out[qid] = reply[label.end():following.start() if following else len(reply)].strip()
    return out


def _labels_outside_answers(reply: str) -> list[re.Match]:
    """The ``Qk:`` labels of a reply, without those inside a tag pair that opens after the first label."""
    labels = list(_LABEL.finditer(reply))
    if not labels:
        return labels
    pairs = [(m.start(), m.end()) for m in _TAGGED.finditer(reply, labels[0].end())]
    opens = [start for start, _ in pairs]
    kept = []
    for label in labels:
        k = bisect.bisect_right(opens, label.start()) - 1  # the last pair opening before this label
        if k < 0 or label.start() >= pairs[k][1]:
            kept.append(label)
    return kept


@dataclass(frozen=True)
class PlannerOrder:
    """The order to ask questions in, which earlier questions each one links to, and why it failed."""

    order: tuple[str, ...]
    links: dict[str, tuple[str, ...]]
    failure: str | None = None  # None when the planner's reply was used as is

    @property
    def failed(self) -> bool:
        return self.failure is not None


def _json_object(reply: str) -> object:
    """The first JSON object in the reply (models often wrap it in prose or ``` fences)."""
    start = reply.find("{")
    if start < 0:
        raise ValueError("no JSON object")
    obj, _ = json.JSONDecoder().raw_decode(reply[start:])
    return obj


def parse_planner(reply: str, qids: Sequence[str]) -> PlannerOrder:
    """Validate a planner reply ``{"order": [...], "links": {"Qk": ["Qj", ...]}}`` (links optional).

    Invalid JSON, unknown, duplicate or missing ids, self-links, cycles and links to a question
    asked later than the one that uses it all fall back to the original order without links.
    """
    qids = tuple(qids)

    def fallback(why: str) -> PlannerOrder:
        return PlannerOrder(qids, {}, why)

    try:
        obj = _json_object(reply)
    except ValueError:
        return fallback("invalid JSON")
    if not isinstance(obj, dict) or not isinstance(obj.get("order"), list):
        return fallback("no 'order' list")
    order = obj["order"]
    if not all(isinstance(q, str) for q in order):
        return fallback("order holds non-string ids")
    order = [q.strip() for q in order]
    if unknown := [q for q in order if q not in qids]:
        return fallback(f"unknown ids {unknown}")
    if len(set(order)) != len(order):
        return fallback("duplicate ids")
    if len(order) != len(qids):
        return fallback(f"missing ids {[q for q in qids if q not in order]}")
    raw_links = obj.get("links", {}) or {}
    if not isinstance(raw_links, dict):
        return fallback("'links' is not an object")
    links: dict[str, tuple[str, ...]] = {}
    for qid, deps in raw_links.items():
        if isinstance(deps, str):
            deps = [deps]
        if qid not in qids or not isinstance(deps, list) or any(d not in qids for d in deps):
            return fallback(f"links of {qid!r} name unknown ids")
        if qid in deps:
            return fallback(f"{qid} links to itself")
        links[qid] = tuple(dict.fromkeys(deps))
    if _has_cycle(links):
        return fallback("links form a cycle")
    position = {q: i for i, q in enumerate(order)}
    for qid, deps in links.items():
        if any(position[d] > position[qid] for d in deps):
            return fallback(f"{qid} links to a question asked after it")
    return PlannerOrder(tuple(order), {q: d for q, d in links.items() if d})


def _has_cycle(links: dict[str, tuple[str, ...]]) -> bool:
    state: dict[str, int] = {}  # 1 = on the current path, 2 = done

    def visit(node: str) -> bool:
        if state.get(node) == 1:
            return True
        if state.get(node) == 2:
            return False
        state[node] = 1
        if any(visit(d) for d in links.get(node, ())):
            return True
        state[node] = 2
        return False

    return any(visit(n) for n in list(links))


def question_metrics(passage: Passage, replies: dict[str, str | None]) -> list[dict[str, float]]:
    """Per-question scores, in question order (a missing reply scores 0 everywhere)."""
    return [score_answer(replies.get(q.qid), q.answers) for q in passage.questions]


def passage_metrics(passage: Passage, result: dict) -> dict:
    """lm-eval metrics of one passage from a rollout result (``{"output", "rollout"}``).

    Per-question metrics are (sum, count) pairs so the task can micro-average them over questions;
    cost metrics are per passage.
    """
    output, rollout = result["output"], result["rollout"]
    scores = question_metrics(passage, output["replies"])
    n = len(scores)
    metrics: dict = {k: (sum(s[k] for s in scores), n) for k in QUESTION_METRICS}
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
