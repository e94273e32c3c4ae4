"""lm-eval glue for Recipe-MPR; the logic lives in ``qa_tasks.recipe_mpr``."""

import datasets

from qa_tasks import recipe_mpr as r
from qa_tasks.aggregations import count  # noqa: F401 (the YAMLs name it utils.count)


def load(fold=None, task_fold=None, **_ignored):
    """custom_dataset: fold from the task variant (dataset_kwargs ``task_fold``: lm-eval passes
    ``--metadata`` in the same call, so the variant's own key must differ) or ``--metadata '{"fold": K}'``."""
    fold = r.run_fold(fold, task_fold, "this fold variant")
    return {"test": datasets.Dataset.from_list([d.as_dict() for d in r.build_docs(fold)])}


def mc_text(doc):
    return r.mc_prompt(r.RecipeDoc.from_dict(doc))


def gen_text(doc):
    return r.gen_prompt(r.RecipeDoc.from_dict(doc))


def process_mc(doc, results):
    return r.score_choice(r.RecipeDoc.from_dict(doc), [ll for ll, _ in results])


def process_gen(doc, results):
    return r.score_generation(r.RecipeDoc.from_dict(doc), results[0])
