"""Test-only: registers ``--model scripted`` in lm_eval processes started with this folder on PYTHONPATH."""

import lm_eval.models  # noqa: F401  (fills the registry first; it is only filled lazily while empty)
from lm_eval.api.registry import model_registry

model_registry.register("scripted", target="tests.toolkit.scripted_lm:ScriptedLM")
