"""lm-eval glue for the math think/answer tasks; the logic lives in ``qa_tasks.math``."""

import datasets

from qa_tasks import math as m
from qa_tasks.aggregations import count  # noqa: F401 (the YAMLs name it utils.count)


def load(source=None, **_ignored):
    """custom_dataset: the data set named by the task variant (dataset_kwargs ``source``)."""
    return {"test": datasets.Dataset.from_list(m.build_docs(source))}


def base_text(doc):
    return m.r1_zero_prompt(doc["question"])


def chat_text(doc):
    return m.chat_messages(doc["question"])[-1]["content"]


def process_results(doc, results):
    return m.score_response(results[0], doc["gold"])
