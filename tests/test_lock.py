"""The environment the tests run in is exactly requirements/lock.txt: every package locked, at its version.

A package missing from the lock would install at whatever version was released that morning, and a
fresh machine would no longer test what the lock says. Under ``tox -e latest`` (no lock) it is skipped.
"""

from __future__ import annotations

import importlib.metadata
import os
from pathlib import Path

import pytest
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

LOCK = Path(__file__).resolve().parents[1] / "requirements" / "lock.txt"
SEEDED = {"pip", "setuptools", "wheel", "lm-eval-qa-pack"}  # the venv's installer and the package itself


def _locked() -> dict[str, str]:
    pins = {}
    for line in LOCK.read_text().splitlines():
        line = line.split("#", 1)[0].strip()
        if line:
            req = Requirement(line)
            (spec,) = req.specifier
            assert spec.operator == "==", line
            pins[canonicalize_name(req.name)] = spec.version
    return pins


@pytest.mark.skipif(Path(os.environ.get("PIP_CONSTRAINT", "")).resolve() != LOCK,
                    reason="this environment was not installed from requirements/lock.txt")
def test_installed_set_is_the_lock():
    locked = _locked()
    installed = {canonicalize_name(d.metadata["Name"]): d.version for d in importlib.metadata.distributions()}
    assert {n: v for n, v in installed.items() if n not in SEEDED and locked.get(n) != v} == {}
    assert sorted(set(locked) - set(installed)) == []


def test_lock_holds_the_cpu_torch():
    assert _locked()["torch"].endswith("+cpu") and not any(n.startswith("nvidia-") for n in _locked())
