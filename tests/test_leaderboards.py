"""Leaderboards: paired tests (tables of known cases), labels, and leaderboards built from real lm_eval
result folders (tiny model, base and adapter runs) checked number by number against the results JSON."""

from __future__ import annotations

import csv
import io
import json
import random
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from leaderboards import build
from leaderboards.reader import Run, TaskResult, model_label, parse_model_args, read_paths
from leaderboards.stats import BOOTSTRAP_ITERS, mcnemar_exact, paired_bootstrap, paired_test
from leaderboards.tables import setup_differences
from tests.conftest import ROOT, lm_eval_env, run_lm_eval

TASKS = ["recipe_mpr", "recipe_mpr_gen", "squad_v1", "squad_batch", "gsm8k_think"]
LIMIT = 4


# --- paired significance tests -------------------------------------------------------------------

@pytest.mark.parametrize(("b", "c", "p"), [
    (0, 0, 1.0),  # no discordant documents: no evidence
    (5, 5, 1.0),
    (0, 1, 1.0),  # one document changed: nothing
    (1, 6, 2 * (1 + 7) / 2**7),  # textbook exact binomial: 0.125
    (10, 0, 2 / 2**10),
    (3, 12, 2 * (1 + 15 + 105 + 455) / 2**15),  # 0.0352: significant
    (12, 3, 2 * (1 + 15 + 105 + 455) / 2**15),  # symmetric
])
def test_mcnemar_exact(b, c, p):
    assert mcnemar_exact(b, c) == pytest.approx(p)


def _noisy(n: int, shift: float, sd: float, seed: int) -> tuple[list[float], list[float]]:
    rng = random.Random(seed)
    a = [rng.random() for _ in range(n)]
    return a, [x + shift + rng.gauss(0, sd) for x in a]


@pytest.mark.parametrize(("name", "a", "b", "significant"), [
    ("identical", [0.2, 0.5, 0.9], [0.2, 0.5, 0.9], False),
    ("reordered, zero mean change", [0.2, 0.8, 0.5, 0.4], [0.8, 0.2, 0.4, 0.5], False),
    # the reference SQuAD study's "+0.001 EM" kind of delta: noise, not an improvement
    ("tiny shift in noise", *_noisy(100, 0.001, 0.1, 0), False),
    ("clear shift", *_noisy(100, 0.1, 0.05, 1), True),
    ("constant shift", [0.1, 0.3, 0.5, 0.7, 0.9, 0.2], [0.2, 0.4, 0.6, 0.8, 1.0, 0.3], True),
])
def test_paired_bootstrap(name, a, b, significant):
    p = paired_bootstrap(a, b)
    assert (p < 0.05) is significant, (name, p)
    assert p == paired_bootstrap(a, b)  # seeded: same inputs, same p


def test_bootstrap_never_claims_p_zero():
    assert paired_bootstrap([0.0] * 5, [1.0] * 5) == pytest.approx(1 / (BOOTSTRAP_ITERS + 1))


@pytest.mark.parametrize(("a", "b", "weights", "method", "delta"), [
    ([1, 0, 1, 0], [1, 1, 1, 0], None, "mcnemar", 0.25),
    ([0.5, 1.0], [1.0, 1.0], None, "bootstrap", 0.25),
    # SQuAD passages: (mean over questions, questions) -> the micro-average over questions
    ([0.0, 1.0], [1.0, 1.0], [1, 3], "bootstrap", 0.25),
    ([1, 0], [0, 0], [5, 5], "bootstrap", -0.5),
])
def test_paired_test_chooses_method(a, b, weights, method, delta):
    result = paired_test(a, b, weights)
    assert result.method == method and result.n == len(a)
    assert result.delta == pytest.approx(delta)


# --- labels ---------------------------------------------------------------------------------------

@pytest.mark.parametrize(("args", "expected"), [
    ({"pretrained": "/m/tiny"}, {"pretrained": "/m/tiny"}),
    ("pretrained=/m/tiny,peft=/a/lora,dtype=float32", {"pretrained": "/m/tiny", "peft": "/a/lora", "dtype": "float32"}),
    ({"pretrained": "Qwen/Qwen2.5-0.5B", "trust_remote_code": True}, {"pretrained": "Qwen/Qwen2.5-0.5B",
                                                                      "trust_remote_code": "True"}),
    (None, {}),
])
def test_parse_model_args(args, expected):
    assert parse_model_args(args) == expected


@pytest.mark.parametrize(("base", "adapter", "manifest", "label"), [
    ("/models/tiny/", None, None, "tiny"),
    ("Qwen/Qwen2.5-0.5B-Instruct", None, None, "Qwen2.5-0.5B-Instruct"),
    ("/m/tiny", "recipe-lora", {"method": "qlora"}, "tiny + recipe-lora (qlora)"),
    ("/m/tiny", "recipe-lora", None, "tiny + recipe-lora"),
])
def test_model_label(base, adapter, manifest, label):
    assert model_label(base, adapter, manifest) == label


def _run(setup: dict, task_setup: dict, n: int = 10) -> tuple[TaskResult, Run]:
    run = Run(Path("r.json"), "m", "m", "m", None, None, None, 0.0, setup=setup)
    return TaskResult("t", {"acc": 0.5}, {}, n, setup=task_setup), run


@pytest.mark.parametrize(("a", "b", "diff"), [
    (({"gen_kwargs": ""}, {"docs/prompts": "h1"}), ({"gen_kwargs": ""}, {"docs/prompts": "h1"}), []),
    (({"gen_kwargs": '{"max_gen_toks": 4}'}, {}), ({"gen_kwargs": ""}, {}), ["gen_kwargs"]),
    (({}, {"docs/prompts": "h1", "n-shot": "0"}), ({}, {"docs/prompts": "h2", "n-shot": "5"}),
     ["docs/prompts", "n-shot"]),
])
def test_setup_differences(a, b, diff):
    assert setup_differences(_run(*a), _run(*b)) == diff


# --- real lm_eval result folders ------------------------------------------------------------------

ADAPTER_SCRIPT = """
import sys, torch
from transformers import AutoModelForCausalLM
from peft import LoraConfig, get_peft_model
torch.manual_seed(0)
model = AutoModelForCausalLM.from_pretrained(sys.argv[1])
# random B (not the zero init) so the adapter really changes the model's outputs
peft = get_peft_model(model, LoraConfig(r=8, lora_alpha=64, target_modules=["q_proj", "v_proj", "down_proj"],
                                        init_lora_weights=False))
peft.save_pretrained(sys.argv[2])
"""


@pytest.fixture(scope="module")
def runs(tiny_model, tmp_path_factory):
    """One lm_eval run of the tiny model and one of the tiny model + a LoRA adapter, same settings."""
    root = tmp_path_factory.mktemp("lb")
    adapter = root / "recipe-lora"
    subprocess.run([sys.executable, "-c", ADAPTER_SCRIPT, str(tiny_model), str(adapter)], check=True,
                   env=lm_eval_env(), capture_output=True)
    (adapter / "manifest.json").write_text(json.dumps({
        "base_model": str(tiny_model), "task": "recipe_mpr", "method": "lora",
        "data": {"source": "recipe_mpr/500QA.json", "split": "train", "fold": 0, "n_examples": 0, "sha256": ""},
        "hyperparameters": {"lora_r": 8, "lora_alpha": 64}, "versions": {}, "metrics": {}, "created": ""}))
    common = ["run", "--model", "hf", "--tasks", ",".join(TASKS), "--limit", str(LIMIT), "--gen_kwargs",
              "max_gen_toks=6", "--batch_size", "4", "--log_samples"]
    _, base = run_lm_eval([*common, "--model_args", f"pretrained={tiny_model}"], root / "base")
    _, tuned = run_lm_eval([*common, "--model_args", f"pretrained={tiny_model},peft={adapter}"], root / "adapter")
    return {"root": root, "base": root / "base", "adapter": root / "adapter", "base_json": base,
            "adapter_json": tuned, "adapter_dir": adapter}


def _metric(results: dict, task: str, name: str):
    return results["results"][task].get(f"{name},none")


def _table(doc: dict, key: str) -> dict:
    return next(t for t in doc["tables"] if t["key"] == key)


@pytest.fixture(scope="module")
def board(runs):
    out = runs["root"] / "board.json"
    build([runs["base"], runs["adapter"]], out, "json")
    return json.loads(out.read_text())


@pytest.mark.slow
def test_overview_numbers_match_results_json(runs, board):
    overview = _table(board, "overview")
    rows = {row[0]: row for row in overview["rows"]}
    name = Path(runs["base_json"]["config"]["model_args"]["pretrained"]).name
    labels = [name, f"{name} + recipe-lora (lora)"]  # labelled from model_args + the adapter's manifest
    assert sorted(rows) == labels
    for label, results in ((labels[0], runs["base_json"]), (labels[1], runs["adapter_json"])):
        for column, cell in zip(overview["columns"][1:], rows[label][1:]):
            task, metric = column[:-1].split(" (")
            assert cell["value"] == _metric(results, task, metric)
            stderr = results["results"][task].get(f"{metric}_stderr,none")
            assert cell["stderr"] == (stderr if isinstance(stderr, float) else None)
            assert cell["n"] == results["n-samples"][task]["effective"] == LIMIT


def _samples(folder: Path, task: str) -> dict[int, dict]:
    (path,) = folder.rglob(f"samples_{task}_2*.jsonl")  # the timestamp keeps recipe_mpr_gen out
    return {rec["doc_id"]: rec for rec in map(json.loads, path.read_text().splitlines())}


@pytest.mark.slow
def test_comparison_matches_results_and_samples(runs, board):
    table = _table(board, "comparison")
    cols = table["columns"]
    rows = {(r[cols.index("Task")], r[cols.index("Metric")]): dict(zip(cols, r)) for r in table["rows"]}
    assert {"recipe_mpr", "recipe_mpr_gen", "squad_v1", "squad_batch", "gsm8k_think"} <= {t for t, _ in rows}
    for (task, metric), row in rows.items():
        base, tuned = _metric(runs["base_json"], task, metric), _metric(runs["adapter_json"], task, metric)
        assert row["Base value"] == base and row["Adapter value"] == tuned
        assert row["Δ"] == pytest.approx(tuned - base)
        assert row["Same setup"] == "yes"
    # McNemar recomputed straight from the two samples logs
    a, b = _samples(runs["base"], "recipe_mpr"), _samples(runs["adapter"], "recipe_mpr")
    worse = sum(a[i]["acc"] == 1 and b[i]["acc"] == 0 for i in a)
    better = sum(a[i]["acc"] == 0 and b[i]["acc"] == 1 for i in a)
    row = rows[("recipe_mpr", "acc")]
    assert row["Test"] == "mcnemar" and row["n paired"] == LIMIT
    assert row["p"] == pytest.approx(mcnemar_exact(worse, better))
    assert row["Significant"] == ("yes" if row["p"] < 0.05 else "no")
    # SQuAD passages: (sum, count) pairs -> weighted bootstrap
    assert rows[("squad_batch", "f1")]["Test"] == "bootstrap"


@pytest.mark.slow
def test_recipe_tables_match_results_json(runs, board):
    types = _table(board, "recipe_types")
    for row in types["rows"]:
        results = runs["adapter_json"] if "+" in row[0] else runs["base_json"]
        task = row[1]
        assert row[2]["value"] == _metric(results, task, "acc") and row[2]["n"] == LIMIT
        for t, cell in zip(types["columns"][3:], row[3:]):
            assert cell["n"] == _metric(results, task, f"n_{t}")
            assert cell["value"] == _metric(results, task, f"acc_{t}")  # None where no query has the type
    bias = _table(board, "position_bias")
    assert {row[1] for row in bias["rows"]} == {"recipe_mpr_gen"}  # the loglikelihood task has no letters
    for row in bias["rows"]:
        results = runs["adapter_json"] if "+" in row[0] else runs["base_json"]
        for x, cell in zip("ABCDE", row[2:7]):
            assert cell["n"] == _metric(results, "recipe_mpr_gen", f"n_gold_{x}")
        assert row[7:12] == [_metric(results, "recipe_mpr_gen", f"pred_{x}") for x in "ABCDE"]
        assert row[12] == _metric(results, "recipe_mpr_gen", "invalid_rate")


@pytest.mark.slow
def test_squad_and_math_tables_match_results_json(runs, board):
    squad = _table(board, "squad")
    from leaderboards.family_tables import SQUAD_COLUMNS

    for row in squad["rows"]:
        results = runs["adapter_json"] if "+" in row[0] else runs["base_json"]
        task = "squad_" + row[1]
        assert row[2:] == [_metric(results, task, key) for key, _ in SQUAD_COLUMNS]
    assert {row[1] for row in squad["rows"]} == {"v1", "batch"}
    calls = squad["columns"].index("Calls")
    assert all((row[calls] is None) == (row[1] == "v1") for row in squad["rows"])  # cost columns: strategies only
    math_rows = _table(board, "math")["rows"]
    assert {row[1] for row in math_rows} == {"gsm8k_think"}
    for row in math_rows:
        results = runs["adapter_json"] if "+" in row[0] else runs["base_json"]
        assert row[2] == _metric(results, "gsm8k_think", "accuracy")
        assert row[5] == _metric(results, "gsm8k_think", "format_failure_rate")
    for row in _table(board, "math_failures")["rows"]:
        results = runs["adapter_json"] if "+" in row[0] else runs["base_json"]
        assert row[3] == _metric(results, "gsm8k_think", "missing_think_close")


@pytest.mark.slow
def test_markdown_is_deterministic_with_plots(runs):
    out = runs["root"] / "md"
    out.mkdir()
    first = build([runs["base"], runs["adapter"]], out / "LEADERBOARD.md")
    text = (out / "LEADERBOARD.md").read_bytes()
    pngs = {p.name: p.read_bytes() for p in first.plots}
    assert pngs and all(data.startswith(b"\x89PNG") for data in pngs.values())
    build([runs["base"], runs["adapter"]], out / "LEADERBOARD.md")
    assert (out / "LEADERBOARD.md").read_bytes() == text
    assert {p.name: p.read_bytes() for p in out.glob("*.png")} == pngs
    md = text.decode()
    for name in pngs:
        assert f"]({name})" in md
    for section in ("## Overview", "## Base vs adapter", "## SQuAD strategies", "## Recipe-MPR: accuracy by query type",
                    "## Recipe-MPR: position bias", "## Math: think/answer format", "## Sources"):
        assert section in md
    assert "/tmp" not in md.split("## Sources")[1]  # sources are relative to the leaderboard


@pytest.mark.slow
def test_csv_long_format(runs):
    out = runs["root"] / "board.csv"
    build([runs["base"], runs["adapter"]], out)  # format from the suffix
    rows = list(csv.DictReader(io.StringIO(out.read_text())))
    acc = next(r for r in rows if r["table"] == "overview" and "+" not in r["row"]
               and r["column"] == "recipe_mpr (acc)")
    assert float(acc["value"]) == _metric(runs["base_json"], "recipe_mpr", "acc") and acc["n"] == str(LIMIT)


def _cli(*args: str, cwd: Path = ROOT) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "leaderboards", *args], capture_output=True, text=True, check=False,
                          cwd=cwd, env=lm_eval_env())


@pytest.mark.slow
def test_bad_files_warn_and_the_rest_renders(runs, tmp_path):
    results_dir = tmp_path / "mixed"
    shutil.copytree(runs["base"], results_dir)
    good = next(results_dir.rglob("results_*.json"))
    text = good.read_text()
    bad = {
        "results_2020-01-01T00-00-00.000001.json": text[: len(text) // 2],  # truncated
        "results_foreign.json": json.dumps({"model": "x", "scores": [1, 2]}),  # valid JSON, not lm-eval
        "results_junk.json": "\x00\x01 not json at all {",  # corrupt
        "results_empty.json": "",  # interrupted write
        "results_partial.json": json.dumps({"results": {"recipe_mpr": {"acc,none": 0.5}}}),  # no config
        "latency_2020.json": json.dumps({"kind": "latency", "task": "squad_v1"}),  # missing fields
    }
    for name, content in bad.items():
        (good.parent / name).write_text(content)
    samples = next(results_dir.rglob("samples_recipe_mpr_2*.jsonl"))
    lines = samples.read_text().splitlines()
    samples.write_text("\n".join(lines[:-1] + [lines[-1][: len(lines[-1]) // 2]]))  # truncated last line
    proc = _cli("build", str(results_dir), "-o", str(tmp_path / "LB.md"))
    assert proc.returncode == 0, proc.stderr
    warnings = [line for line in proc.stderr.splitlines() if line.startswith("warning: ")]
    for name in [*bad, samples.name]:
        assert any(name in w for w in warnings), (name, proc.stderr)
    assert "Traceback" not in proc.stderr
    assert "results_foreign.json: not an lm-eval results file" in proc.stderr
    assert "truncated" in next(w for w in warnings if "results_2020" in w)
    md = (tmp_path / "LB.md").read_text()
    assert "## Warnings" in md and "results_junk.json" in md
    acc = _metric(runs["base_json"], "recipe_mpr", "acc")
    assert f"| {acc:.3f} ± " in md  # the good file still renders with its numbers
    assert f"kept the other {LIMIT - 1} samples" in proc.stderr


@pytest.mark.parametrize("setup", ["missing", "only_bad"])
def test_cli_usage_errors_are_one_line(tmp_path, setup):
    target = tmp_path / "results"
    if setup == "only_bad":
        target.mkdir()
        (target / "results_x.json").write_text("{")
    proc = _cli("build", str(target), "-o", str(tmp_path / "LB.md"))
    assert proc.returncode == 2
    assert len(proc.stderr.strip().splitlines()) == 1 and proc.stderr.startswith("error: ")
    assert str(target) in proc.stderr
    assert not (tmp_path / "LB.md").exists()


def test_latency_file_table(tmp_path):
    (tmp_path / "latency_2026-01-01T00-00-00.json").write_text(json.dumps({
        "kind": "latency", "task": "squad_v1", "model": "pretrained=/m/llama-7b,peft=/a/squad-qlora", "n": 50,
        "p50_s": 0.8, "p95_s": 1.6, "mean_s": 0.9, "peak_mem_bytes": 6 * 2**30,
        "peak_mem_kind": "cuda_max_allocated", "device": "cuda:0"}))
    report = build([tmp_path], tmp_path / "LB.json")
    doc = json.loads((tmp_path / "LB.json").read_text())
    assert _table(doc, "latency")["rows"] == [["llama-7b + squad-qlora", "squad_v1", 50, 0.8, 1.6, 0.9, 6144.0,
                                               "cuda_max_allocated", "cuda:0"]]
    assert not report.warnings


@pytest.mark.slow
def test_progression_from_finetune_eval_folders(runs, tmp_path):
    """The finetune layout: OUT/manifest.json, OUT/eval/step-N/<lm-eval files> naming OUT/checkpoint-N."""
    out = tmp_path / "recipe-lora"
    shutil.copytree(runs["adapter_dir"], out)
    src = next(runs["adapter"].rglob("results_*.json"))
    for step in (5, 10):
        dest = out / "eval" / f"step-{step}"
        dest.mkdir(parents=True)
        data = json.loads(src.read_text())
        data["config"]["model_args"] = f"pretrained={runs['base_json']['config']['model_args']['pretrained']}," \
                                       f"peft={out}/checkpoint-{step}"
        (dest / src.name).write_text(json.dumps(data))
    board = build([runs["base"], out], tmp_path / "LB.json")
    progression = _table(json.loads((tmp_path / "LB.json").read_text()), "progression")
    steps = [(row[1], row[2]) for row in progression["rows"] if row[1] == "recipe_mpr"]
    assert steps == [("recipe_mpr", "base"), ("recipe_mpr", "5"), ("recipe_mpr", "10")]
    acc = progression["columns"].index("acc")
    row = next(r for r in progression["rows"] if r[1] == "recipe_mpr" and r[2] == "base")
    assert row[acc] == _metric(runs["base_json"], "recipe_mpr", "acc")
    assert _table(json.loads((tmp_path / "LB.json").read_text()), "adapters")["rows"][0][0] == "recipe-lora"
    assert not board.warnings


@pytest.mark.slow
def test_without_matplotlib_the_markdown_says_so(runs, tmp_path, monkeypatch):
    from leaderboards import plots

    monkeypatch.setattr(plots, "plots_available", lambda: False)
    report = build([runs["base"]], tmp_path / "LB.md")
    assert not report.plots and not list(tmp_path.glob("*.png"))
    assert plots.MISSING_NOTE in (tmp_path / "LB.md").read_text()


def test_models_sharing_a_basename_get_full_labels(tmp_path):
    for i, (base, peft) in enumerate((("/a/tiny", None), ("/b/tiny", None), ("/a/tiny", "/x/lora"),
                                      ("/a/tiny", "/y/lora"))):
        args = f"pretrained={base}" + (f",peft={peft}" if peft else "")
        (tmp_path / f"results_{i}.json").write_text(json.dumps({"results": {"t": {"acc,none": i / 10}},
                                                                "config": {"model_args": args}}))
    build([tmp_path], tmp_path / "LB.json")
    rows = _table(json.loads((tmp_path / "LB.json").read_text()), "overview")["rows"]
    assert [(r[0], r[1]["value"]) for r in rows] == [("/a/tiny", 0.0), ("/a/tiny + /x/lora", 0.2),
                                                     ("/a/tiny + /y/lora", 0.3), ("/b/tiny", 0.1)]


def test_results_file_given_by_another_name(tmp_path):
    (tmp_path / "mine.json").write_text(json.dumps({"results": {"recipe_mpr": {"acc,none": 0.25}},
                                                    "config": {"model_args": "pretrained=/m/tiny"}}))
    col = read_paths([tmp_path / "mine.json"])
    assert not col.warnings and col.runs[0].model == "tiny" and col.runs[0].tasks["recipe_mpr"].samples is None


def test_reader_skips_group_aggregates_and_reads_pairs(tmp_path):
    folder = tmp_path / "m"
    folder.mkdir()
    stamp = "2026-01-01T00-00-00.000001"
    (folder / f"results_{stamp}.json").write_text(json.dumps({
        "results": {"squad_strategies": {"alias": "squad_strategies"},
                    "squad_batch": {"em,none": 0.5, "em_stderr,none": "N/A", "calls,none": 5.0}},
        "group_subtasks": {"squad_strategies": ["squad_batch"]},
        "config": {"model_args": {"pretrained": "/m/tiny"}}, "n-samples": {"squad_batch": {"effective": 2}}}))
    (folder / f"samples_squad_batch_{stamp}.jsonl").write_text("\n".join(json.dumps(
        {"doc_id": i, "doc_hash": f"h{i}", "metrics": ["em", "calls"], "em": [s, 4], "calls": 5.0})
        for i, s in enumerate((1.0, 3.0))))
    col = read_paths([folder])
    assert not col.warnings
    (run,) = col.runs
    assert list(run.tasks) == ["squad_batch"]
    result = run.tasks["squad_batch"]
    assert result.metrics == {"em": 0.5, "calls": 5.0} and result.stderr == {} and result.n == 2
    assert result.samples[1] == ("h1", {"em": (0.75, 4.0), "calls": (5.0, 1.0)})
