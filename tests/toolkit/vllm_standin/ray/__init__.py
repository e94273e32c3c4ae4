"""Test-only stand-in for the ray calls lm-eval 0.4.13's vLLM data-parallel path makes
(``@ray.remote(num_gpus=...)``, ``f.remote(...)``, ``ray.get``, ``ray.shutdown``), run in-process so a
test can count how many engines the workers build."""

from __future__ import annotations

__version__ = "2.50.0"
_state = {"initialized": False}


class ObjectRef:
    def __init__(self, value) -> None:
        self._value = value


class RemoteFunction:
    def __init__(self, function, options: dict) -> None:
        self._function, self._options = function, options

    def options(self, **options) -> RemoteFunction:
        return RemoteFunction(self._function, {**self._options, **options})

    def remote(self, *args, **kwargs) -> ObjectRef:
        _state["initialized"] = True
        return ObjectRef(self._function(*args, **kwargs))


def remote(*args, **options):
    if len(args) == 1 and callable(args[0]) and not options:
        return RemoteFunction(args[0], {})
    return lambda function: RemoteFunction(function, options)


def get(refs, timeout=None):
    return [r._value for r in refs] if isinstance(refs, list) else refs._value


def init(*args, **kwargs) -> None:
    _state["initialized"] = True


def is_initialized() -> bool:
    return _state["initialized"]


def shutdown() -> None:
    _state["initialized"] = False
