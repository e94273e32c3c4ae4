"""Fixtures and hooks only: the offline environment, the tiny model (built once per run), the order of the
tests and their pytest-xdist groups (``--dist loadgroup``). Helpers tests import live in ``tests/toolkit``."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from tests.toolkit import xdist_groups
from tests.toolkit.env import DATA_DIR, use_offline_environment


@pytest.hookimpl(tryfirst=True)
def pytest_configure(config):
    use_offline_environment()
    config.addinivalue_line(
        "markers", "heavy(order): a group whose tests take minutes (module-scoped lm_eval runs, training, "
        "real benches): starts before every group not so marked, lower order first")


@pytest.fixture(scope="session")
def data_dir() -> Path:
    return DATA_DIR


@pytest.fixture(scope="session", autouse=True)
def shared_tiny_models(tmp_path_factory):
    """Each tiny model variant is built once per test run, in a folder every xdist worker and every
    subprocess (benches, the demo, lm_eval) copies from."""
    from qa_tasks.testing import CACHE_VARIABLE

    base = tmp_path_factory.getbasetemp()
    root = base.parent if os.environ.get("PYTEST_XDIST_WORKER") else base
    os.environ.setdefault(CACHE_VARIABLE, str(root / "tiny-models"))


@pytest.fixture(scope="session")
def tiny_model(tmp_path_factory) -> Path:
    """A 2-layer Qwen2 model with a freshly trained BPE tokenizer, built once per test run."""
    from qa_tasks.testing import build_tiny_model

    return build_tiny_model(tmp_path_factory.mktemp("tiny") / "model", data_dir=DATA_DIR)


# ---- pytest-xdist: declared groups, heavy ones first (tests/toolkit/xdist_groups.py) ----------------------

@pytest.hookimpl(tryfirst=True)
def pytest_collection_modifyitems(config, items):
    """Tests marked ``heavy`` first, lowest ``order`` first, the others in collection order (a stable sort):
    xdist hands out the groups in the order of their first test (with ``--no-loadscope-reorder``), so the long
    ones start first and the workers finish together rather than one waiting on the last long group."""
    items.sort(key=xdist_groups.start_order)


@pytest.hookimpl(tryfirst=True)  # before xdist's worker reports its collection to the controller
def pytest_collection_finish(session):
    xdist_groups.write_groups(session)


@pytest.hookimpl(optionalhook=True)
def pytest_configure_node(node):
    if node.config.getvalue("dist") == "loadgroup":
        node.workerinput[xdist_groups.WORKERINPUT_KEY] = str(xdist_groups.groups_dir(node.config))


@pytest.hookimpl(optionalhook=True)
def pytest_xdist_make_scheduler(config, log):
    """``--dist loadgroup``: every test in its declared group (its file unless it has an ``xdist_group``)."""
    if config.getvalue("dist") == "loadgroup":
        return xdist_groups.DeclaredGroupScheduling(config, log)
    return None


def pytest_unconfigure(config):
    xdist_groups.remove_groups_dir(config)
