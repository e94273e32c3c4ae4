"""Startup hook armed by ``lm_eval_qa_pack_hook.pth`` (the way virtualenv's ``_virtualenv.pth`` works).

lm-eval 0.4.13 has no plugin mechanism, so this installs a ``sys.meta_path`` finder that waits until
lm-eval's own modules are imported and then patches them (``qa_tasks.harness.hook``). Until then it
costs one list lookup per import. Set ``QA_PACK_DISABLE_HOOK=1`` to switch it off.

The hook must never break lm_eval: a patch that fails for any reason warns and leaves lm-eval as it is.
"""

import sys

# the modules of qa_tasks.harness.hook.PATCHES, named here so that start-up imports nothing else
TARGETS = frozenset({
    "lm_eval.tasks.manager", "lm_eval.api.registry", "lm_eval.evaluator", "lm_eval.config.evaluate_config",
    "lm_eval._cli.harness",
})


class _LmEvalFinder:
    """Finds nothing itself; wraps the real loader of the target modules to patch them after exec."""

    @classmethod
    def find_spec(cls, name, path=None, target=None):
        if name not in TARGETS:
            return None
        from importlib.machinery import PathFinder

        spec = PathFinder.find_spec(name, path)
        if spec is None or spec.loader is None:
            return None
        loader = spec.loader
        original_exec = loader.exec_module

        def exec_module(module):
            original_exec(module)
            _patch(name, module)

        loader.exec_module = exec_module
        return spec


def _patch(name: str, module) -> None:
    try:
        from qa_tasks.harness import hook

        hook.apply(name, module)
    except Exception as e:  # noqa: BLE001 (whatever went wrong, lm_eval itself must keep working)
        import warnings

        warnings.warn(f"lm-eval-qa-pack: could not hook {name} ({type(e).__name__}: {e}); lm-eval runs "
                      "without that part of the pack", stacklevel=2)


def install() -> None:
    if not any(f is _LmEvalFinder for f in sys.meta_path):
        sys.meta_path.insert(0, _LmEvalFinder)
        # lm_eval may already be imported (hook installed late, e.g. in tests): patch what is there
        for name in TARGETS:
            module = sys.modules.get(name)
            if module is not None:
                _patch(name, module)


install()
