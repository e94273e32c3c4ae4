"""The one atomic writer, atomic folder and checkpoint-step parser every layer uses."""

from __future__ import annotations

import pytest

from qa_tasks.files import atomic_dir, atomic_write, checkpoint_step, write_json


@pytest.mark.parametrize(("name", "step"), [
    ("checkpoint-40", 40),  # transformers Trainer's checkpoint folders
    ("step-0", 0),  # finetune's OUT/eval/step-<N> evaluation folders
    ("checkpoint-", None),
    ("checkpoint-4a", None),
    ("my-checkpoint-4", None),
    ("checkpoint-40.tmp", None),
    ("adapter", None),
])
def test_checkpoint_step(name, step, tmp_path):
    assert checkpoint_step(name) == step
    assert checkpoint_step(tmp_path / name) == step


def test_atomic_write_replaces_and_leaves_no_temporary(tmp_path):
    path = tmp_path / "sub" / "LEADERBOARD.md"
    atomic_write(path, "old")
    atomic_write(path, b"new")
    write_json(tmp_path / "m.json", {"path": tmp_path})
    assert path.read_text() == "new" and (tmp_path / "m.json").read_text() == f'{{\n  "path": "{tmp_path}"\n}}\n'
    assert sorted(p.name for p in tmp_path.rglob("*")) == ["LEADERBOARD.md", "m.json", "sub"]


def test_atomic_dir_replaces_on_success_and_keeps_the_old_folder_on_failure(tmp_path):
    out = tmp_path / "eval"
    with atomic_dir(out) as tmp:
        (tmp / "results.json").write_text("1")
    with pytest.raises(KeyboardInterrupt), atomic_dir(out) as tmp:
        (tmp / "results.json").write_text("half")
        raise KeyboardInterrupt
    assert (out / "results.json").read_text() == "1"
    with atomic_dir(out) as tmp:
        (tmp / "other.json").write_text("2")
    assert [p.name for p in out.iterdir()] == ["other.json"]  # replaced whole, nothing merged
    with atomic_dir(out) as tmp:
        tmp.rmdir()  # the block decided to write nothing
    assert [p.name for p in tmp_path.iterdir()] == ["eval"]
