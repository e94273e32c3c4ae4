"""A validation split carved from the training data, for selecting hyper-parameters honestly.

``validation_size`` training items (a count, or a fraction of them) are drawn with ``validation_seed``
and held out of training; rows that come from one source item (a SQuAD passage's questions) stay
together. ``eval_tasks`` are then scored, through lm-eval's ``samples`` option, only on their documents
that a held-out row contains (the guard's text rule) and no training row does: never on an evaluation
split. A task whose documents do not cover the training data (e.g. ``recipe_mpr_gen_fold0``, the fold's
test split) scores nothing and is refused before any model loads. SQuAD and GSM8K evaluate their dev/test
files, so their validation tasks read the train files instead (``squad_batch_train``, ``squad_sequential_train``,
``squad_v1_train``, ``gsm8k_think_train``: YAMLs with ``metadata: {validation_of: <task>}``, which
``finetune.sweep_space.validation_task`` finds for an objective ``squad_batch/f1`` or ``gsm8k_think/accuracy``).
"""

from __future__ import annotations

import hashlib
import random
from dataclasses import replace

from finetune.data import TrainingData
from qa_tasks.errors import QAPackError

__all__ = ["carve", "validation_samples"]


def _count(size: float, n: int) -> int:
    return max(1, round(size * n)) if size < 1 else int(size)


def carve(data: TrainingData, size: float, seed: int) -> tuple[TrainingData, TrainingData]:
    """(training rows, held-out validation rows), split by source item with a seeded draw."""
    items = list(dict.fromkeys(data.keys))
    k = _count(size, len(items))
    if k >= len(items):
        raise QAPackError(f"validation_size={size} holds out {k} of the {len(items)} training items, leaving "
                          "nothing to train on; choose a smaller validation_size")
    held = set(random.Random(seed).sample(items, k))
    pick = [i for i, key in enumerate(data.keys) if key in held]
    keep = [i for i, key in enumerate(data.keys) if key not in held]
    digest = hashlib.sha256("\n".join(sorted(held)).encode()).hexdigest()
    info = {"size": size, "seed": seed, "n_items": k, "n_examples": len(pick), "items_sha256": digest}
    train = replace(data, rows=[data.rows[i] for i in keep], keys=[data.keys[i] for i in keep],
                    extra={**data.extra, "validation": info})
    held_out = replace(data, rows=[data.rows[i] for i in pick], keys=[data.keys[i] for i in pick],
                       split="validation", extra={"validation": info})
    return train, held_out


def validation_samples(held_out: TrainingData, train: TrainingData, tasks: list[str],
                       limit: float | None = None) -> dict[str, list[int]]:
    """lm-eval ``samples``: per leaf task, the documents a held-out row contains and no training row does
    (``limit``: the first N, or a fraction, of them)."""
    from finetune.guard import matching_documents
    from qa_tasks.harness.task_index import leaf_tasks, pack_tasks

    out: dict[str, list[int]] = {}
    for name in tasks:
        if name not in pack_tasks():
            raise QAPackError(f"eval task {name} is not a task of lm-eval-qa-pack, so the held-out validation "
                              "documents cannot be found in it; name a pack task (e.g. recipe_mpr_gen)")
        for leaf in leaf_tasks(name):
            seen = set(matching_documents(train.rows, leaf))
            docs = [i for i in matching_documents(held_out.rows, leaf) if i not in seen]
            if not docs:
                raise QAPackError(f"eval task {leaf} has no document among the {len(held_out.rows)} held-out "
                                  f"validation examples of task={train.source}; name the task whose documents "
                                  "cover the training data (e.g. recipe_mpr_gen, not its _fold<k> test split; "
                                  "squad_batch_train or gsm8k_think_train, the train files of SQuAD and GSM8K)")
            if limit is not None:
                docs = docs[:max(1, round(limit * len(docs))) if limit < 1 else int(limit)]
            out[leaf] = docs
    info = train.extra.get("validation")
    if info is not None:
        info["scored_documents"] = {t: len(d) for t, d in out.items()}
    return out
