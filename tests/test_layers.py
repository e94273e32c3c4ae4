"""The layout's import rules hold: no cycles, no upward imports (``python -m tests.toolkit.layers``)."""

import subprocess
import sys

from tests.toolkit import layers

ROOT = layers.ROOT


def test_the_shipped_modules_have_no_cycles_and_no_upward_imports():
    proc = subprocess.run([sys.executable, "-m", "tests.toolkit.layers"], cwd=ROOT, capture_output=True, text=True,
                          check=False)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "cycles: 0" in proc.stdout and "upward imports: 0" in proc.stdout


def test_the_graph_counts_imports_inside_functions_and_from_packages():
    edges = layers.graph()
    assert "qa_tasks.families" in edges["qa_tasks.family"]  # imported inside families()
    assert "qa_tasks.rollout" in edges["qa_tasks.harness.hook"]  # `from qa_tasks.rollout import with_rollout`
    assert "qa_tasks.rollout.layer" in edges["qa_tasks.rollout"]  # the lazy attribute import
    assert "qa_tasks.harness.task_index" in edges["leaderboards.tables"]


def test_the_checks_find_what_they_look_for():
    [cycle] = layers.cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}})
    assert set(cycle) == {"a", "b", "c"} and cycle[0] == cycle[-1]
    assert layers.cycles({"a": {"b"}, "b": {"c"}, "d": {"a"}}) == []
    assert len(layers.cycles({"a": {"b"}, "b": {"a"}, "c": {"d"}, "d": {"c"}})) == 2
    assert layers.upward({"qa_tasks.family": {"qa_tasks.harness.hook", "qa_tasks.errors"},
                          "qa_tasks.squad.data": {"qa_tasks.math.grader"},
                          "finetune.sft": {"leaderboards.build", "qa_tasks.squad"},
                          "qa_tasks.testing": {"tests"},
                          "qa_pack_demo": {"finetune.sft", "leaderboards.build"}}) == [
        ("finetune.sft", "leaderboards.build"), ("qa_tasks.family", "qa_tasks.harness.hook"),
        ("qa_tasks.squad.data", "qa_tasks.math.grader"), ("qa_tasks.testing", "tests")]
