"""lm-eval glue for the SQuAD tasks; the logic lives in ``qa_tasks.squad`` and ``qa_tasks.rollout``."""

import json

import datasets

from qa_tasks import rollout, squad
from qa_tasks.aggregations import count  # noqa: F401 (the YAMLs name it utils.count)
from qa_tasks.errors import QAPackError


def load(split="validation", min_questions=5, max_questions=10, seed=1234, **_ignored):
    """custom_dataset of the strategies: one document per passage (``--metadata`` may set the args)."""
    passages = squad.load_passages(split, min_questions, max_questions, seed)
    return {"test": datasets.Dataset.from_list([p.as_dict() for p in passages])}


def load_questions(split="validation", **_ignored):
    """custom_dataset of squad_v1: one document per question."""
    return {"test": datasets.Dataset.from_list([p.as_dict() for p in squad.load_questions(split)])}


def _plan(doc, strategy):
    rollout.require_active(f"squad_{strategy}")
    return rollout.plan_text("squad", squad.plan_args(strategy, squad.Passage.from_dict(doc)))


def all_in_one_text(doc):
    return _plan(doc, "all_in_one")


def batch_text(doc):
    return _plan(doc, "batch")


def sequential_text(doc):
    return _plan(doc, "sequential")


def collab_text(doc):
    return _plan(doc, "collab")


def targets(doc):
    return " | ".join(f"{q['qid']}: {q['answers'][0]}" for q in doc["questions"])


def process_rollout(doc, results):
    try:
        result = json.loads(results[0])
    except ValueError:
        result = None
    if not (isinstance(result, dict) and result.get(rollout.RESULT_KEY)):
        raise QAPackError("a SQuAD strategy request came back without the rollout layer's result; "
                          "run it through the lm_eval CLI with lm-eval-qa-pack installed") from None
    return squad.passage_metrics(squad.Passage.from_dict(doc), result)


def v1_text(doc):
    return squad.batch_prompt(squad.Passage.from_dict(doc), 0)


def v1_target(doc):
    return doc["questions"][0]["answers"][0]


def process_v1(doc, results):
    [scores] = squad.question_metrics(squad.Passage.from_dict(doc), {"Q1": results[0]})
    return {**scores, "n_questions": 1.0}


def micro(items):
    """Per-question average from per-passage (sum, count) pairs."""
    total = sum(float(a) for a, _ in items)
    n = sum(float(b) for _, b in items)
    return total / n if n else 0.0


def maximum(items):
    return max(items) if items else 0
