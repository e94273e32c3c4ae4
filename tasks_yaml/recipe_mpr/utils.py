"""lm-eval glue for Recipe-MPR; the logic lives in ``qa_tasks.recipe_mpr``."""

import datasets

from qa_tasks import recipe_mpr
from qa_tasks.aggregations import count  # noqa: F401 (the YAMLs name it utils.count)


def load(fold=None, task_fold=None, **_ignored):
    """custom_dataset: fold from the task variant (dataset_kwargs ``task_fold``: lm-eval passes
    ``--metadata`` in the same call, so the variant's own key must differ) or ``--metadata '{"fold": K}'``."""
    fold = recipe_mpr.run_fold(fold, task_fold, "this fold variant")
    return {"test": datasets.Dataset.from_list([d.as_dict() for d in recipe_mpr.build_docs(fold)])}


def mc_text(doc):
    return recipe_mpr.mc_prompt(recipe_mpr.RecipeDoc.from_dict(doc))


def gen_text(doc):
    return recipe_mpr.gen_prompt(recipe_mpr.RecipeDoc.from_dict(doc))


def process_mc(doc, results):
    return recipe_mpr.score_choice(recipe_mpr.RecipeDoc.from_dict(doc), [ll for ll, _ in results])


def process_gen(doc, results):
    return recipe_mpr.score_generation(recipe_mpr.RecipeDoc.from_dict(doc), results[0])
