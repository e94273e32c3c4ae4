"""Fixtures and hooks only: the offline environment, the tiny model (built once per run), the order and
grouping of the test files over pytest-xdist workers. Helpers tests import live in ``tests/toolkit``."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

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


def _start_order(item: pytest.Item) -> tuple[int, float]:
    heavy = item.get_closest_marker("heavy")
    return (0, heavy.kwargs.get("order", 0)) if heavy else (1, 0)


# tryfirst: pytest-xdist's own hook (--dist loadgroup) reads the xdist_group marks this one adds
@pytest.hookimpl(tryfirst=True)
def pytest_collection_modifyitems(config, items):
    """Every test gets a pytest-xdist group, its file unless it declares one (``xdist_group``), so that under
    ``--dist loadgroup`` a file's tests, and so its module-scoped fixtures (lm_eval runs, training), stay on
    one worker; a test without a group would be sent to any worker, alone. Tests marked ``heavy`` go first,
    lowest ``order`` first (a stable sort: otherwise in collection order): pytest-xdist hands out groups in
    the order their first test comes (with ``--no-loadscope-reorder``; by default it hands out the groups
    with the most tests first), so the two workers finish together rather than one waiting on the last long
    group."""
    for item in items:
        if item.get_closest_marker("xdist_group") is None:
            item.add_marker(pytest.mark.xdist_group(item.nodeid.split("::", 1)[0]))
    items.sort(key=_start_order)
