"""Recipe-MPR prompt builders, shared by the eval tasks and finetune."""

from __future__ import annotations

from qa_tasks.recipe_mpr.data import LETTERS, RecipeDoc

# --- prompts: the single builder used by the eval tasks and by finetune ---------------------------

def mc_prompt(doc: RecipeDoc) -> str:
    """Context for the loglikelihood task; each option text is scored as the continuation."""
    return f"Query: {doc.query}\nThe recipe that best satisfies this query is:"


def gen_prompt(doc: RecipeDoc) -> str:
    """Lettered options in the shuffled order, answered with one letter."""
    lines = "\n".join(f"{LETTERS[i]}. {text}" for i, text in enumerate(doc.options))
    return (f"Query: {doc.query}\nOptions:\n{lines}\n"
            f"Which option best satisfies the query? Answer with a single letter (A-E).\nAnswer:")


def gen_completion(doc: RecipeDoc) -> str:
    """The gold completion for fine-tuning on ``gen_prompt``."""
    return f" {doc.gold_letter}"


