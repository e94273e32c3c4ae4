"""lm-eval glue for the math think/answer tasks; the logic lives in ``qa_tasks.math``."""

import datasets

from qa_tasks import math as math_family
from qa_tasks.aggregations import count  # noqa: F401 (the YAMLs name it utils.count)
from qa_tasks.rollout.budget import truncated


def load(source=None, **_ignored):
    """custom_dataset: the data set named by the task variant (dataset_kwargs ``source``)."""
    return {"test": datasets.Dataset.from_list(math_family.build_docs(source))}


def base_text(doc):
    return math_family.r1_zero_prompt(doc["question"])


def chat_text(doc):
    return math_family.chat_messages(doc["question"])[-1]["content"]


def process_results(doc, results):
    # truncated_rate: whether the reply hit max_gen_toks, as the rollout layer counted it (absent when unknown)
    return math_family.score_response(results[0], doc["gold"], truncated=truncated(doc, results[0]))
