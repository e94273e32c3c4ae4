"""pytest-xdist work units the tests declare, for ``pytest -n N --dist loadgroup --no-loadscope-reorder``.

- ``group_of(item)``: a test's group: its ``xdist_group`` mark, else its file, so a file's tests, and so its
  module-scoped fixtures (lm_eval runs, training), stay on one worker;
- ``start_order(item)``: the sort key that puts tests marked ``heavy`` first, lowest ``order`` first;
- ``DeclaredGroupScheduling``: xdist's load-by-scope scheduler with those groups as scopes.

Why not xdist's own ``loadgroup`` scheduler: it learns a test's group from a ``@group`` suffix the worker
appends to the node id, and with pytest 9.2 that suffix no longer takes (the node id is structured now), so
every test would become its own unit, spread over the workers, and a file's module-scoped fixtures would
run once per worker (pytest-dev/pytest-xdist#1386). Here each worker writes ``{node id: group}`` to a
folder the controller names (``workerinput``) before it reports its collection, and the scheduler reads it
before it hands out work. Groups are handed out in the order of their first test (with
``--no-loadscope-reorder``; by default xdist hands out the groups with the most tests first), the order
``start_order`` sorts the tests into.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from pathlib import Path

import pytest
from xdist.scheduler import LoadScopeScheduling

__all__ = ["WORKERINPUT_KEY", "DeclaredGroupScheduling", "group_of", "groups_dir", "remove_groups_dir", "start_order",
           "write_groups"]

WORKERINPUT_KEY = "qa_pack_xdist_groups"
_DIR = pytest.StashKey[Path]()


def group_of(item: pytest.Item) -> str:
    mark = item.get_closest_marker("xdist_group")
    if mark is None:
        return item.nodeid.split("::", 1)[0]
    return str(mark.args[0] if mark.args else mark.kwargs.get("name", "default"))


def start_order(item: pytest.Item) -> tuple[int, float]:
    heavy = item.get_closest_marker("heavy")
    return (0, heavy.kwargs.get("order", 0)) if heavy else (1, 0)


def groups_dir(config: pytest.Config) -> Path:
    """The controller's folder for the workers' group maps (made on first use)."""
    if _DIR not in config.stash:
        config.stash[_DIR] = Path(tempfile.mkdtemp(prefix="qa-xdist-groups-"))
    return config.stash[_DIR]


def remove_groups_dir(config: pytest.Config) -> None:
    if _DIR in config.stash:
        shutil.rmtree(config.stash[_DIR], ignore_errors=True)


def write_groups(session: pytest.Session) -> None:
    """On a worker of a ``--dist loadgroup`` run: ``{node id: group}`` of its collection, for the scheduler."""
    folder = getattr(session.config, "workerinput", {}).get(WORKERINPUT_KEY)
    if folder:
        path = Path(folder) / f"{session.config.workerinput['workerid']}.json"
        path.with_suffix(".tmp").write_text(json.dumps({item.nodeid: group_of(item) for item in session.items}))
        os.replace(path.with_suffix(".tmp"), path)


class DeclaredGroupScheduling(LoadScopeScheduling):
    """Load scheduling by scope, the scope of a test being its declared group (``group_of``)."""

    def __init__(self, config: pytest.Config, log=None) -> None:
        super().__init__(config, log)
        self.groups: dict[str, str] = {}

    def schedule(self) -> None:
        if self.collection is None:  # every worker has collected, so every map is written
            for path in sorted(groups_dir(self.config).glob("*.json")):
                self.groups.update(json.loads(path.read_text()))
        super().schedule()

    def _split_scope(self, nodeid: str) -> str:
        # a test no map names (none should be): its file, as --dist loadfile would
        return self.groups.get(nodeid) or nodeid.split("::", 1)[0]
