"""qa_tasks.testing's build cache: one build per parameter set, copied to every caller's folder."""

from __future__ import annotations

import pytest

from qa_tasks import testing


def test_each_variant_is_built_once_and_copied(tmp_path, monkeypatch):
    monkeypatch.setenv(testing.CACHE_VARIABLE, str(tmp_path / "cache"))
    monkeypatch.delenv("QA_PACK_DATA_DIR", raising=False)  # the built-in text: a quick tokenizer
    builds = []
    real = testing._build
    monkeypatch.setattr(testing, "_build", lambda out, *a, **k: builds.append(k["init_std"]) or real(out, *a, **k))

    first = testing.build_tiny_model(tmp_path / "a", vocab_size=300)
    second = testing.build_tiny_model(tmp_path / "b", vocab_size=300)
    other = testing.build_tiny_model(tmp_path / "c", vocab_size=300, init_std=0.1)

    assert builds == [0.02, 0.1]
    assert (first / "model.safetensors").read_bytes() == (second / "model.safetensors").read_bytes()
    assert (first / "model.safetensors").read_bytes() != (other / "model.safetensors").read_bytes()
    assert len([p for p in (tmp_path / "cache").iterdir()]) == 2  # no build folder left behind
    with pytest.raises(testing.QAPackError, match="holds other files"):
        (tmp_path / "d").mkdir()
        (tmp_path / "d" / "notes.txt").write_text("mine")
        testing.build_tiny_model(tmp_path / "d", vocab_size=300)
