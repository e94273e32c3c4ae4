"""Recipe-MPR (Zhang et al., 2023): 500 multi-aspect recipe queries, 5 options each.

The gold option is the FIRST option in every record of the released file, so options are shuffled
with a seeded, per-query permutation (``option_order``) before anything is shown to a model.
Query types are multi-label: a query counts toward every type it is flagged with.

Modules: ``data`` (records, folds, option order), ``prompts`` (shared by eval and finetune), ``metrics``
(the letter a reply chooses, per-query metrics). May import: the ground modules of ``qa_tasks`` and
``qa_tasks.harness.task_index``; never another family.
"""

from __future__ import annotations

from qa_tasks.family import Family, TrainingSet
from qa_tasks.recipe_mpr.data import (
    LETTERS,
    N_FOLDS,
    QUERY_TYPES,
    SHUFFLE_SEED,
    RecipeDoc,
    build_docs,
    fold_option,
    load_folds,
    load_records,
    option_order,
    run_fold,
)
from qa_tasks.recipe_mpr.metrics import parse_letter, score_choice, score_generation
from qa_tasks.recipe_mpr.prompts import gen_completion, gen_prompt, mc_prompt

__all__ = ["FAMILY", "LETTERS", "N_FOLDS", "QUERY_TYPES", "SHUFFLE_SEED", "RecipeDoc", "build_docs", "fold_option", "gen_completion", "gen_prompt", "load_folds", "load_records", "mc_prompt", "option_order", "parse_letter", "preflight", "run_fold", "score_choice", "score_generation"]


def preflight(task_name: str, metadata: dict | None = None) -> None:
    """Load and validate the data (and folds) before any model loads; with the run's ``--metadata``
    (None: not known) also its ``fold``."""
    from qa_tasks.harness.task_index import task_options

    load_records()
    fold = run_fold((metadata or {}).get("fold"), task_options(task_name).get("task_fold"), task_name)
    if fold is not None:
        load_folds()


_TABLES = "leaderboards.family_tables"
FAMILY = Family(
    name="recipe_mpr",
    preflight=preflight,
    training_sets={"recipe_mpr": TrainingSet(
        "finetune.data:recipe_mpr_set", "Recipe-MPR train indices of `fold`, recipe_mpr_gen prompt + gold letter",
        eval_task="recipe_mpr_gen_fold{fold}", folds=N_FOLDS)},
    main_metric="acc",
    compared_metrics=("acc", "acc_norm", "invalid_rate"),
    progress_metrics=("acc", "acc_norm", "invalid_rate"),
    chance=1 / len(LETTERS),
    tables=(f"{_TABLES}:recipe_types_table", f"{_TABLES}:position_bias_table"),
    demo_tasks=("recipe_mpr_fold0", "recipe_mpr_gen_fold0"),  # fold 0's test split: the demo trains on fold 0
)
