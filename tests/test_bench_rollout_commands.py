"""The recorded commands of the rollout benchmark (`bench/bench_rollout.py`) still run at smoke size
(see ``tests/test_bench_commands.py``)."""

from __future__ import annotations

import pytest

from tests.test_bench_commands import commands, run_recorded


@pytest.mark.parametrize(("module", "args"), commands("bench.bench_rollout"))
@pytest.mark.slow
def test_recorded_command_runs_at_smoke_size(module, args, tmp_path):
    run_recorded(module, args, tmp_path)
