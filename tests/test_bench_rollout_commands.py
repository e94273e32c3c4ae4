"""The recorded commands of the rollout benchmark (`bench/bench_rollout.py`) still run at smoke size
(see ``tests/test_bench_commands.py``); ``--eos`` makes the served model end replies at the tokens holding
its text, and refuses text no token holds."""

from __future__ import annotations

import json

import pytest

from bench.bench_rollout import _ending_at
from tests.test_bench_commands import commands, run_recorded


@pytest.mark.parametrize(("module", "args"), commands("bench.bench_rollout"))
@pytest.mark.slow
def test_recorded_command_runs_at_smoke_size(module, args, tmp_path):
    run_recorded(module, args, tmp_path)


def test_eos_ends_replies_at_every_token_holding_the_text(tiny_model, tmp_path):
    from transformers import AutoTokenizer

    vocab = AutoTokenizer.from_pretrained(tiny_model).get_vocab()
    base = json.loads((tiny_model / "generation_config.json").read_text())["eos_token_id"]
    out = _ending_at(tiny_model, ["7"], tmp_path / "eos")
    eos = json.loads((out / "generation_config.json").read_text())["eos_token_id"]
    holding = sorted(i for t, i in vocab.items() if "7" in t)
    assert holding and eos == [base, *holding]
    assert json.loads((tiny_model / "generation_config.json").read_text())["eos_token_id"] == base  # a copy


def test_eos_text_no_token_holds_is_one_line_exit_2(tiny_model, tmp_path, capsys):
    with pytest.raises(SystemExit) as stop:
        _ending_at(tiny_model, ["\u2603"], tmp_path / "eos")
    err = capsys.readouterr().err
    assert stop.value.code == 2 and err.count("\n") == 1 and err.startswith("error: --eos '\u2603'")
    assert not (tmp_path / "eos").exists()  # refused before anything is copied
