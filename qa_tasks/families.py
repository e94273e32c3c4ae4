"""The pack's task families, one line each: a module exporting ``FAMILY = Family(...)`` (``qa_tasks.family``).

Adding a family = its module + its ``tasks_yaml/<folder>`` + one line here.
"""

FAMILIES = (
    "qa_tasks.recipe_mpr",
    "qa_tasks.squad",
    "qa_tasks.math",
)
