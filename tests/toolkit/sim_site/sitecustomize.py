"""Test-only: simulates environments the pack must survive, in lm_eval processes started with this
folder on PYTHONPATH (it replaces tests/toolkit/site, so ``--model scripted`` is not registered here).

- ``QA_SIM_HIDE=a,b``: those top-level packages look uninstalled (``find_spec`` answers None);
- ``QA_SIM_MOVE_TARGETS=1``: every lm-eval target of the pack's startup hook has a different
  signature, as if a later lm-eval had renamed its parameters. lm-eval's own callers use keywords the
  wrappers pass through, so lm-eval itself keeps working; only the pack's checks see the change.
"""

import functools
import os
import sys
from importlib.machinery import SourceFileLoader

for _name in filter(None, os.environ.get("QA_SIM_HIDE", "").split(",")):
    sys.modules[_name] = None  # importlib.util.find_spec returns None; import raises ModuleNotFoundError


def _moved(function):
    @functools.wraps(function)
    def moved(*args, **kwargs):
        return function(*args, **kwargs)

    del moved.__wrapped__  # inspect.signature must see (*args, **kwargs), the "new" signature
    return moved


def _move(module) -> None:
    if module.__name__ == "lm_eval.tasks.manager":
        module.TaskManager.__init__ = _moved(module.TaskManager.__init__)
    elif module.__name__ == "lm_eval.api.registry":
        module.get_model = _moved(module.get_model)
    elif module.__name__ == "lm_eval.evaluator":
        module.simple_evaluate = _moved(module.simple_evaluate)
    elif module.__name__ == "lm_eval.config.evaluate_config":
        module.EvaluatorConfig.process_tasks = _moved(module.EvaluatorConfig.process_tasks)
    elif module.__name__ == "lm_eval._cli.harness":
        module.HarnessCLI.execute = _moved(module.HarnessCLI.execute)


if os.environ.get("QA_SIM_MOVE_TARGETS") == "1":
    _exec_module = SourceFileLoader.exec_module

    def exec_module(self, module):
        _exec_module(self, module)
        _move(module)  # runs before the pack's hook sees the module

    SourceFileLoader.exec_module = exec_module
