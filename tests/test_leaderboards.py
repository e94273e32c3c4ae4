"""Leaderboards: labels, leaderboards built from real lm_eval result folders (tiny model, base and adapter
runs) checked number by number against the results JSON and the samples logs, clustered SQuAD statistics
through the CLI, and every markdown table's rendered width. The statistics themselves: test_leaderboard_stats."""

from __future__ import annotations

import csv
import io
import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from markdown_it import MarkdownIt
from statsmodels.stats.multitest import multipletests

from leaderboards import build
from leaderboards.checks import constant_answer, doc_set_warning
from leaderboards.reader import Run, TaskResult, model_label, parse_model_args, read_paths
from leaderboards.stats import cluster_t_test, mcnemar_exact
from leaderboards.tables import setup_differences
from qa_tasks.errors import QAPackError
from tests.toolkit.env import ROOT, lm_eval_env
from tests.toolkit.lm_eval_runs import run_command, run_lm_eval

TASKS = ["recipe_mpr", "recipe_mpr_gen", "squad_v1", "squad_batch", "gsm8k_think"]
LIMIT = 4


# --- clustered SQuAD statistics through the CLI (synthetic lm-eval folders, no model) ------------------

STAMP = "2026-01-01T00-00-00.000001"


def _write_task(folder: Path, task: str, family: str, records: list[dict], results: dict) -> None:
    (folder / f"samples_{task}_{STAMP}.jsonl").write_text("\n".join(map(json.dumps, records)))
    path = folder / f"results_{STAMP}.json"
    data = json.loads(path.read_text()) if path.exists() else {"results": {}, "n-samples": {}, "configs": {}}
    data["results"][task] = {f"{k},none": v for k, v in results.items()}
    data["n-samples"][task] = {"effective": len(records)}
    data["configs"][task] = {"metadata": {"config_source": f"/pack/tasks_yaml/{family}/{task}.yaml"}}
    path.write_text(json.dumps(data))


def synthetic_run(folder: Path, seed: int, model_args: str, passages: int = 8, per: int = 4) -> Path:
    """squad_v1 (``passages`` × ``per`` questions, one document each, naming their passage), squad_batch and
    squad_all_in_one (one document per passage, (sum, count) pairs) and recipe_mpr (30 independent queries),
    as ``lm_eval --log_samples`` writes them; values drawn with ``seed``, passage effects included."""
    rng = np.random.default_rng(seed)
    folder.mkdir(parents=True)
    (folder / f"results_{STAMP}.json").write_text(json.dumps({"results": {}, "n-samples": {}, "configs": {},
                                                              "config": {"model_args": model_args}}))
    skill = rng.beta(0.3, 0.3, passages)  # strong passage effects: questions of a passage agree
    v1 = []
    for p in range(passages):
        for k in range(per):
            em = float(rng.random() < skill[p])
            v1.append({"doc_id": len(v1), "doc_hash": f"q{p}-{k}", "doc": {"pid": f"Title/{p}", "context": f"c{p}"},
                       "metrics": ["em", "f1"], "em": em, "f1": em, "filtered_resps": [f"reply {p} {k}"]})
    _write_task(folder, "squad_v1", "squad", v1, {"em": np.mean([r["em"] for r in v1]),
                                                  "f1": np.mean([r["f1"] for r in v1])})
    for task in ("squad_batch", "squad_all_in_one"):
        recs = [{"doc_id": p, "doc_hash": f"p{p}", "doc": {"pid": f"Title/{p}", "context": f"c{p}"},
                 "metrics": ["em", "f1"], "em": [s := float((rng.random(per) < skill[p]).sum()), per], "f1": [s, per],
                 "filtered_resps": [f"reply {p}"]} for p in range(passages)]
        score = sum(r["em"][0] for r in recs) / (passages * per)
        _write_task(folder, task, "squad", recs, {"em": score, "f1": score, "n_passages": passages})
    recs = [{"doc_id": i, "doc_hash": f"r{i}", "doc": {"types": ["Specific"]}, "metrics": ["acc"],
             "acc": float(rng.random() < 0.4)} for i in range(30)]
    _write_task(folder, "recipe_mpr", "recipe_mpr", recs, {"acc": np.mean([r["acc"] for r in recs])})
    return folder


def _cell_chars(text: str) -> int:
    return max(max((len(word) for word in text.split()), default=0), -(-len(text) // 3))


def _md_table_widths(md: str) -> list[tuple[str, int]]:
    """(header row, narrowest width in px) of every table in ``md`` rendered as GitHub does (markdown-it-py
    with tables): a column is as wide as its longest unbreakable word, or a third of its longest cell (no
    cell wraps to more than 3 lines), at 8 px a character (GitHub's 14 px font) plus 27 px of padding
    and border."""
    tokens = MarkdownIt("commonmark").enable("table").parse(md)
    tables, rows, row = [], [], []
    for i, tok in enumerate(tokens):
        if tok.type == "table_open":
            rows = []
        elif tok.type == "tr_open":
            row = []
        elif tok.type in ("th_open", "td_open"):
            row.append(tokens[i + 1].content if tokens[i + 1].type == "inline" else "")
        elif tok.type == "tr_close":
            rows.append(row)
        elif tok.type == "table_close":
            widths = [max(_cell_chars(cell) for cell in column) for column in zip(*rows)]
            tables.append((" | ".join(rows[0]), sum(8 * w + 27 for w in widths)))
    return tables


GITHUB_WIDTH = 1012  # px of a rendered README / markdown file on github.com


@pytest.fixture(scope="module")
def synthetic(tmp_path_factory):
    root = tmp_path_factory.mktemp("synthetic")
    synthetic_run(root / "base", 1, "pretrained=/m/tiny")
    synthetic_run(root / "adapter", 2, "pretrained=/m/tiny,peft=/a/lora")
    report = build([root / "base", root / "adapter"], root / "LB.md", plots=False)
    assert report.statistics == root / "LB.json"
    return {"root": root, "md": (root / "LB.md").read_text(), "doc": json.loads((root / "LB.json").read_text())}


def _v1(folder: Path) -> tuple[list[float], list[str]]:
    recs = [json.loads(line) for line in next(folder.glob("samples_squad_v1_*")).read_text().splitlines()]
    return [r["em"] for r in recs], [r["doc"]["pid"] for r in recs]


def test_squad_v1_is_clustered_by_passage(synthetic):
    overview = _table(synthetic["doc"], "overview")
    cell = next(r[4] for r in overview["rows"] if r[0] == "squad_v1" and r[2] == "tiny")
    em, pids = _v1(synthetic["root"] / "base")
    _, se, _ = cluster_t_test(em, clusters=pids)
    assert cell["value"] == pytest.approx(np.mean(em)) and cell["n"] == 32
    assert (cell["ci_method"], cell["clusters"], cell["cluster_unit"]) == ("cluster bootstrap", 8, "passages")
    assert cell["stderr"] == pytest.approx(se)
    assert cell["design_effect"] == pytest.approx((se / (np.std(em, ddof=1) / np.sqrt(32))) ** 2)
    assert cell["design_effect"] > 1.5  # the passage effects are really there: the naive error is too narrow
    recipe = next(r for r in overview["rows"] if r[0] == "recipe_mpr" and r[2] == "tiny")
    assert recipe[4]["ci_method"] == "wilson" and recipe[4]["clusters"] is None
    assert "| squad_v1 | em | tiny |" in synthetic["md"] and "(8 passages, deff " in synthetic["md"]


def test_paired_tests_follow_kind_and_clusters(synthetic):
    table = _table(synthetic["doc"], "comparison")
    cols = table["columns"]
    rows = {(r[cols.index("Task")], r[cols.index("Metric")]): dict(zip(cols, r)) for r in table["rows"]}
    # f1 is continuous even where every value is 0 or 1; em on questions sharing passages resamples passages
    assert {k: (r["Test"]["method"], r["Test"]["clusters"]) for k, r in rows.items()} == {
        ("recipe_mpr", "acc"): ("mcnemar", None),
        ("squad_v1", "em"): ("cluster bootstrap", 8), ("squad_v1", "f1"): ("cluster bootstrap", 8),
        ("squad_batch", "em"): ("bootstrap", None), ("squad_batch", "f1"): ("bootstrap", None),
        ("squad_all_in_one", "em"): ("bootstrap", None), ("squad_all_in_one", "f1"): ("bootstrap", None)}
    for row in rows.values():
        test = row["Test"]
        assert test["detectable"] > 0 and test["ci"][0] <= test["delta"] <= test["ci"][1]
        if row["Significant"] != "yes" and abs(test["delta"]) < test["detectable"] < 1:
            assert row["Significant"] == f"underpowered (detectable ≥ {test['detectable']:.3f})"
    head, body = _section(synthetic["md"], "Base vs adapter")
    assert "### tiny → tiny + lora" in head and body.count("tiny") == 0  # the pair named once, above its rows
    assert "cluster bootstrap, 32 in 8 passages" in body
    assert "p adjusted by Holm across the 7 tests of this table" in synthetic["md"]
    pairs = _table(synthetic["doc"], "squad_pairs")  # strategies of one model on the same passages
    assert {(r[0], r[1], r[2], r[3]) for r in pairs["rows"]} == {
        (m, "all_in_one", "batch", x) for m in ("tiny", "tiny + lora") for x in ("em", "f1")}
    assert all(r[7]["unit"] == "passages" and r[7]["n"] == 8 for r in pairs["rows"])


@pytest.mark.parametrize(("correction", "named", "method"), [
    (None, "by Holm", "holm"), ("bh", "by Benjamini–Hochberg", "fdr_bh"), ("none", "raw, not adjusted", None),
])
def test_correction_override(synthetic, tmp_path, correction, named, method):
    root = synthetic["root"]
    build([root / "base", root / "adapter"], tmp_path / "LB.json", correction=correction)
    doc = json.loads((tmp_path / "LB.json").read_text())
    for key in ("comparison", "squad_pairs"):
        table = _table(doc, key)
        assert table["correction"] == (correction or "holm") and named in table["note"]
        p = [r[table["columns"].index("p adj. (raw)")] for r in table["rows"]]
        expected = [x["p"] for x in p] if method is None else list(multipletests([x["p"] for x in p], method=method)[1])
        assert [x["p_adjusted"] for x in p] == pytest.approx(expected)


def test_cli_writes_the_statistics_beside_the_markdown(synthetic, tmp_path):
    root = synthetic["root"]
    proc = subprocess.run([sys.executable, "-m", "leaderboards", "build", str(root / "base"), str(root / "adapter"),
                           "-o", str(tmp_path / "LB.md"), "--no-plots", "--correction", "bh"], capture_output=True,
                          text=True, check=False, cwd=ROOT, env=lm_eval_env(PYTHONPATH=str(ROOT)))  # a plain CLI run
    assert proc.returncode == 0, proc.stderr
    assert f"wrote {tmp_path / 'LB.json'}" in proc.stdout
    doc = json.loads((tmp_path / "LB.json").read_text())
    assert _table(doc, "comparison")["correction"] == "bh"
    assert "p adjusted by Benjamini–Hochberg" in (tmp_path / "LB.md").read_text()
    with pytest.raises(QAPackError, match="--correction 'bonferroni' is not supported"):
        build([root / "base"], tmp_path / "LB.md", correction="bonferroni")


@pytest.mark.parametrize(("p", "adjusted", "delta", "detectable", "kind", "expected"), [
    (None, None, 0.1, None, "binary", "unknown"),  # no test ran (one passage, no common documents)
    (0.001, 0.01, 0.1, 0.3, "binary", "yes"),
    (0.01, 0.2, 0.05, 0.3, "binary", "underpowered (detectable ≥ 0.300)"),  # significant raw, not adjusted
    (0.01, 0.2, 0.4, 0.3, "binary", "no"),  # the comparison could see 0.3, and saw nothing it trusts
    (0.25, 0.25, 0.3, 1.9, "binary", "underpowered (nothing detectable)"),  # n = 3
    (0.25, 0.25, 0.3, 1.9, "count", "underpowered (detectable ≥ 1.900)"),
    (1.0, 1.0, 0.0, None, "binary", "no"),  # the runs agree on every document
    (0.25, 0.25, -1.0, None, "binary", "underpowered"),  # a constant shift: no variation to size the test
])
def test_verdict(p, adjusted, delta, detectable, kind, expected):
    from leaderboards.comparisons import verdict
    from leaderboards.stats import PairedTest
    from leaderboards.tables import TestCell

    cell = TestCell(PairedTest("mcnemar", 20, delta, p, detectable=detectable), kind=kind, adjusted=adjusted)
    assert verdict(cell) == expected


def test_one_passage_says_so_in_the_cell(tmp_path):
    synthetic_run(tmp_path / "base", 1, "pretrained=/m/tiny", passages=1)
    synthetic_run(tmp_path / "adapter", 2, "pretrained=/m/tiny,peft=/a/lora", passages=1)
    build([tmp_path / "base", tmp_path / "adapter"], tmp_path / "LB.md", plots=False)
    md = (tmp_path / "LB.md").read_text()
    assert "| 1 passage: no test | – | unknown |" in md and "1 passage: no interval" in md
    assert "nan" not in md.lower()


def test_markdown_tables_fit_github_width(synthetic):
    widths = _md_table_widths(synthetic["md"])
    assert len(widths) >= 6
    assert [(h, w) for h, w in widths if w > GITHUB_WIDTH] == []
    # the measure can fail: the overview as it was (one column per task) is wider than the page
    tasks = [*(f"recipe_mpr{v}_fold0 (acc)" for v in ("", "_gen")), "squad_v1 (em)", "squad_all_in_one (em)",
             "squad_batch (em)", "squad_sequential (em)", "squad_collab (em)", "gsm8k_think (accuracy)",
             "math500_think (accuracy)"]
    old = "| Model | " + " | ".join(tasks) + " |\n|" + "---|" * 10 + "\n| tiny | " + " | ".join(
        ["0.250 ± 0.131 (n=12)"] * 9) + " |"
    assert _md_table_widths(old)[0][1] > GITHUB_WIDTH


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
    made = run_command([sys.executable, "-c", ADAPTER_SCRIPT, str(tiny_model), str(adapter)])
    assert made.returncode == 0, made.stderr[-3000:]
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
    name = Path(runs["base_json"]["config"]["model_args"]["pretrained"]).name
    labels = [name, f"{name} + recipe-lora (lora)"]  # labelled from model_args + the adapter's manifest
    assert sorted({row[2] for row in overview["rows"]}) == labels
    assert sorted((row[0], row[2]) for row in overview["rows"]) == sorted((t, m) for t in TASKS for m in labels)
    for task, metric, label, rank, cell, _ in overview["rows"]:
        results = runs["adapter_json"] if label == labels[1] else runs["base_json"]
        assert cell["value"] == _metric(results, task, metric)
        assert cell["n"] == results["n-samples"][task]["effective"] == LIMIT
        assert rank in ("1", "2", "1–2")
        samples = _samples(runs["adapter" if label == labels[1] else "base"], task)
        passages = {rec["doc"]["pid"] for rec in samples.values() if "pid" in rec["doc"]}
        if task == "squad_v1" and len(passages) < len(samples):  # questions sharing passages: clustered
            assert cell["ci_method"] == "cluster bootstrap" or cell["problem"] == "1 passage: no interval"
            assert cell["clusters"] == len(passages) and cell["cluster_unit"] == "passages"
        elif task.startswith("recipe_mpr") or task == "gsm8k_think":  # 0/1 of independent documents: Wilson
            stderr = results["results"][task].get(f"{metric}_stderr,none")
            assert cell["ci_method"] == "wilson"
            assert cell["stderr"] == pytest.approx(stderr, abs=1e-9)  # per-document error = lm-eval's
            assert cell["ci"][0] <= cell["value"] <= cell["ci"][1]


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
        assert row["Base"]["value"] == base and row["Adapter"]["value"] == tuned
        assert row["Δ [95% CI]"]["value"] == pytest.approx(tuned - base)  # same documents: the paired Δ
        assert row["Same setup"] == "yes"
        test, p = row["Test"], row["p adj. (raw)"]
        assert p["p"] == test["p"] and table["correction"] == p["correction"] == "holm"
        if p["p"] is not None:
            assert p["p_adjusted"] >= p["p"]
            assert row["Significant"] == "yes" if p["p_adjusted"] < 0.05 else row["Significant"] != "yes"
    raw = [r["p adj. (raw)"]["p"] for r in rows.values() if r["p adj. (raw)"]["p"] is not None]
    adjusted = [r["p adj. (raw)"]["p_adjusted"] for r in rows.values() if r["p adj. (raw)"]["p"] is not None]
    assert adjusted == pytest.approx(multipletests(raw, method="holm")[1].tolist())  # Holm across the whole table
    # McNemar recomputed straight from the two samples logs
    a, b = _samples(runs["base"], "recipe_mpr"), _samples(runs["adapter"], "recipe_mpr")
    worse = sum(a[i]["acc"] == 1 and b[i]["acc"] == 0 for i in a)
    better = sum(a[i]["acc"] == 0 and b[i]["acc"] == 1 for i in a)
    row = rows[("recipe_mpr", "acc")]
    assert row["Test"]["method"] == "mcnemar" and row["Test"]["n"] == LIMIT
    assert row["Test"]["p"] == pytest.approx(mcnemar_exact(worse, better))
    # SQuAD passages: (sum, count) pairs -> bootstrap over passages, weighted by their questions
    assert rows[("squad_batch", "f1")]["Test"]["method"] == "bootstrap"
    assert rows[("squad_batch", "f1")]["Test"]["unit"] == "passages"
    # squad_v1's questions share passages: resampled by passage (or no test where all share one)
    passages = {rec["doc"]["pid"] for rec in _samples(runs["base"], "squad_v1").values()}
    v1 = rows[("squad_v1", "em")]["Test"]
    assert (v1["method"], v1["problem"]) == (("cluster bootstrap", None) if 1 < len(passages) < LIMIT else
                                             (None, "1 passage: no test") if len(passages) == 1 else ("mcnemar", None))


@pytest.mark.slow
def test_recipe_tables_match_results_json(runs, board):
    types = _table(board, "recipe_types")
    for row in types["rows"]:
        results = runs["adapter_json"] if "+" in row[0] else runs["base_json"]
        task = row[1]
        docs = [rec["doc"] for rec in _samples(runs["adapter" if "+" in row[0] else "base"], task).values()]
        assert row[2]["value"] == _metric(results, task, "acc") and row[2]["n"] == LIMIT
        for t, cell in zip(types["columns"][3:], row[3:]):
            assert cell["n"] == sum(t in doc["types"] for doc in docs)  # counted in the samples log
            assert cell["value"] == _metric(results, task, f"acc_{t}")  # None where no query has the type
    bias = _table(board, "position_bias")
    assert {row[1] for row in bias["rows"]} == {"recipe_mpr_gen"}  # the loglikelihood task has no letters
    for row in bias["rows"]:
        results = runs["adapter_json"] if "+" in row[0] else runs["base_json"]
        docs = [rec["doc"] for rec in _samples(runs["adapter" if "+" in row[0] else "base"], row[1]).values()]
        for x, cell in zip("ABCDE", row[2:7]):
            assert cell["n"] == sum(doc["gold_letter"] == x for doc in docs)
        assert row[7:12] == [_metric(results, "recipe_mpr_gen", f"pred_{x}") for x in "ABCDE"]
        assert row[12] == _metric(results, "recipe_mpr_gen", "invalid_rate")


@pytest.mark.slow
def test_squad_and_math_tables_match_results_json(runs, board):
    squad, costs = _table(board, "squad"), _table(board, "squad_costs")
    from leaderboards.family_tables import SQUAD_COSTS, SQUAD_SCORES

    for row in squad["rows"]:
        results = runs["adapter_json"] if "+" in row[0] else runs["base_json"]
        task = "squad_" + row[1]
        assert [cell["value"] for cell in row[2:5]] == [_metric(results, task, key) for key, _ in SQUAD_SCORES]
        assert row[5:] == [results["n-samples"][task]["effective"], _metric(results, task, "n_questions")]
    for row in costs["rows"]:
        results = runs["adapter_json"] if "+" in row[0] else runs["base_json"]
        assert row[2:] == [_metric(results, "squad_" + row[1], key) for key, _ in SQUAD_COSTS]
    assert {row[1] for row in squad["rows"]} == {"v1", "batch"}
    calls = costs["columns"].index("Calls")
    assert all((row[calls] is None) == (row[1] == "v1") for row in costs["rows"])  # cost columns: strategies only
    math_rows = _table(board, "math")["rows"]
    assert {row[1] for row in math_rows} == {"gsm8k_think"}
    for row in math_rows:
        results = runs["adapter_json"] if "+" in row[0] else runs["base_json"]
        assert row[2] == _metric(results, "gsm8k_think", "accuracy")
        assert row[5] == _metric(results, "gsm8k_think", "format_failure_rate")
    failures = _table(board, "math_failures")
    truncated = failures["columns"].index("Truncated")
    assert truncated == len(failures["columns"]) - 1 and "max_gen_toks" in failures["note"]
    for row in failures["rows"]:
        results = runs["adapter_json"] if "+" in row[0] else runs["base_json"]
        assert row[3] == _metric(results, "gsm8k_think", "missing_think_close")
        # the hf backend's replies, counted with the tiny model's tokenizer against max_gen_toks=6
        assert row[truncated] is not None and row[truncated] == _metric(results, "gsm8k_think", "truncated_rate")


@pytest.mark.slow
def test_markdown_is_deterministic_with_plots(runs):
    out = runs["root"] / "md"
    out.mkdir()
    first = build([runs["base"], runs["adapter"]], out / "LEADERBOARD.md")
    text = (out / "LEADERBOARD.md").read_bytes()
    pngs = {p.name: p.read_bytes() for p in first.plots}
    assert pngs and all(data.startswith(b"\x89PNG") for data in pngs.values())
    statistics = (out / "LEADERBOARD.json").read_bytes()  # every statistic, beside the markdown
    assert first.statistics == out / "LEADERBOARD.json" and json.loads(statistics)["tables"]
    build([runs["base"], runs["adapter"]], out / "LEADERBOARD.md")
    assert (out / "LEADERBOARD.md").read_bytes() == text
    assert (out / "LEADERBOARD.json").read_bytes() == statistics
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
               and r["row"].startswith("recipe_mpr / acc / ") and r["column"] == "Score [95% CI] (n)")
    assert float(acc["value"]) == _metric(runs["base_json"], "recipe_mpr", "acc") and acc["n"] == str(LIMIT)
    assert float(acc["ci_low"]) <= float(acc["value"]) <= float(acc["ci_high"])


def _cli(*args: str, cwd: Path = ROOT) -> subprocess.CompletedProcess:
    return run_command([sys.executable, "-m", "leaderboards", *args], lm_eval_env(), cwd)


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
    # the good file still renders with its numbers; its truncated samples log gives no interval, lm-eval's stderr
    assert f"| {acc:.3f} ± " in md
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


def _as_step(run_folder: Path, adapter: Path, step: int, base: str) -> None:
    """The lm-eval files of ``run_folder`` laid out as the finetune module writes a step's evaluation:
    ``adapter/eval/step-N/``, naming ``adapter/checkpoint-N`` in model_args."""
    (src,) = run_folder.rglob("results_*.json")
    dest = adapter / "eval" / f"step-{step}"
    dest.mkdir(parents=True)
    data = json.loads(src.read_text())
    data["config"]["model_args"] = f"pretrained={base},peft={adapter}/checkpoint-{step}"
    (dest / src.name).write_text(json.dumps(data))
    for samples in src.parent.glob("samples_*.jsonl"):
        shutil.copy(samples, dest / samples.name)


@pytest.mark.slow
def test_progression_from_finetune_eval_folders(runs, tmp_path):
    """The finetune layout: OUT/manifest.json, OUT/eval/step-N/<lm-eval files> naming OUT/checkpoint-N."""
    out = tmp_path / "recipe-lora"
    shutil.copytree(runs["adapter_dir"], out)
    for step in (5, 10):
        _as_step(runs["adapter"], out, step, runs["base_json"]["config"]["model_args"]["pretrained"])
    board = build([runs["base"], out], tmp_path / "LB.json")
    progression = _table(json.loads((tmp_path / "LB.json").read_text()), "progression")
    steps = [(row[1], row[2]) for row in progression["rows"] if row[1] == "recipe_mpr" and row[3] == "acc"]
    assert steps == [("recipe_mpr", "base"), ("recipe_mpr", "5"), ("recipe_mpr", "10")]
    row = next(r for r in progression["rows"] if r[1] == "recipe_mpr" and r[2] == "base" and r[3] == "acc")
    assert row[4]["value"] == _metric(runs["base_json"], "recipe_mpr", "acc") and row[5] is None
    step = next(r for r in progression["rows"] if r[1] == "recipe_mpr" and r[2] == "5" and r[3] == "acc")
    assert step[6]["method"] == "mcnemar" and step[7]["correction"] == "bh"  # a screening table: BH
    assert step[5]["value"] == pytest.approx(_metric(runs["adapter_json"], "recipe_mpr", "acc")
                                             - _metric(runs["base_json"], "recipe_mpr", "acc"))
    # the math family's progression follows the share of replies cut off at max_gen_toks, step by step
    cut = [(r[2], r[4]["value"]) for r in progression["rows"] if r[1] == "gsm8k_think" and r[3] == "truncated_rate"]
    assert cut == [("base", _metric(runs["base_json"], "gsm8k_think", "truncated_rate")),
                   *((step, _metric(runs["adapter_json"], "gsm8k_think", "truncated_rate")) for step in ("5", "10"))]
    assert _table(json.loads((tmp_path / "LB.json").read_text()), "adapters")["rows"][0][0] == "recipe-lora"
    assert not board.warnings
    # a run stopped by a signal (finetune.sft writes status "interrupted") is labelled, never taken as finished
    manifest = json.loads((out / "manifest.json").read_text())
    (out / "manifest.json").write_text(json.dumps({**manifest, "status": "interrupted"}))
    build([runs["base"], out], tmp_path / "LB2.json")
    adapters = _table(json.loads((tmp_path / "LB2.json").read_text()), "adapters")
    assert adapters["rows"][0][0] == "recipe-lora (interrupted)"
    assert any("stopped before it finished" in w["text"] and "finetune.sft --resume" in w["text"]
               for w in adapters["warnings"]), adapters
    # a GRPO run says which command finishes it
    (out / "manifest.json").write_text(json.dumps({**manifest, "status": "interrupted", "trainer": "grpo"}))
    build([runs["base"], out], tmp_path / "LB3.json")
    adapters = _table(json.loads((tmp_path / "LB3.json").read_text()), "adapters")
    assert any("finetune.grpo --resume" in w["text"] for w in adapters["warnings"]), adapters


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
    assert sorted((r[2], r[4]["value"]) for r in rows) == [("/a/tiny", 0.0), ("/a/tiny + /x/lora", 0.2),
                                                           ("/a/tiny + /y/lora", 0.3), ("/b/tiny", 0.1)]
    assert {r[3] for r in rows} == {"1–4"}  # no samples logs: no test separates them, all share the ranks


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


def _recipe_folder(root: Path, model: str, samples: bool) -> Path:
    """A recipe_mpr_gen run of 2 documents (types Specific / Specific+Negated, gold A / C) beside a task of
    the user's own whose YAML lies in a folder named like a family folder, outside any tasks_yaml."""
    folder = root / model
    folder.mkdir()
    stamp = "2026-01-01T00-00-00.000001"
    gen = {"acc,none": 0.5, "acc_Specific,none": 0.5, "acc_Negated,none": 0.0, "acc_gold_A,none": 1.0,
           "acc_gold_C,none": 0.0, "invalid_rate,none": 0.0, "n,none": 2.0,
           **{f"pred_{x},none": 0.5 * (x in "AB") for x in "ABCDE"}}
    yaml = {"recipe_mpr_gen": r"C:\elsewhere\qa_tasks\tasks_yaml\recipe_mpr\recipe_mpr_gen.yaml",
            "my_task": "/home/u/tasks/squad/my_task.yaml"}
    (folder / f"results_{stamp}.json").write_text(json.dumps({
        "results": {"recipe_mpr_gen": gen, "my_task": {"acc,none": 0.25}},
        "configs": {task: {"metadata": {"version": 1.2, "config_source": path}} for task, path in yaml.items()},
        "config": {"model_args": {"pretrained": f"/m/{model}"}},
        "n-samples": {task: {"effective": 2} for task in yaml}}))
    if samples:
        docs = [({"types": ["Specific"], "gold_letter": "A"}, {"acc": 1.0, "acc_Specific": 1.0, "acc_gold_A": 1.0}),
                ({"types": ["Specific", "Negated"], "gold_letter": "C"},
                 {"acc": 0.0, "acc_Specific": 0.0, "acc_Negated": 0.0, "acc_gold_C": 0.0})]
        (folder / f"samples_recipe_mpr_gen_{stamp}.jsonl").write_text("\n".join(json.dumps(
            {"doc_id": i, "doc": doc, "doc_hash": f"h{i}", "filter": "none", "metrics": list(m), **m})
            for i, (doc, m) in enumerate(docs)))
    return folder


def test_family_from_recorded_yaml_and_counts_from_samples(tmp_path):
    """No lm-eval import for a build; per-type and per-gold counts from the samples log, n=– without one."""
    from leaderboards.render import fmt
    from leaderboards.tables import Stat

    folders = [_recipe_folder(tmp_path, "logged", True), _recipe_folder(tmp_path, "unlogged", False)]
    out = tmp_path / "LB.json"
    proc = subprocess.run([sys.executable, "-X", "importtime", "-m", "leaderboards", "build", *map(str, folders),
                           "-o", str(out)], capture_output=True, text=True, check=False,
                          env=lm_eval_env(PYTHONPATH=str(ROOT)))  # without the scripted model's registration
    assert proc.returncode == 0, proc.stderr
    imported = {line.rsplit("|", 1)[-1].strip() for line in proc.stderr.splitlines() if line.startswith("import time")}
    assert "leaderboards.build" in imported and not {m for m in imported if m.split(".")[0] == "lm_eval"}
    board = json.loads(out.read_text())
    assert {t["key"] for t in board["tables"]} == {"overview", "recipe_types", "position_bias"}  # my_task: other
    types = {row[0]: dict(zip(_table(board, "recipe_types")["columns"], row))
             for row in _table(board, "recipe_types")["rows"]}
    assert [types["logged"][t]["n"] for t in ("Specific", "Negated", "Commonsense")] == [2, 1, 0]
    assert types["unlogged"]["Specific"] == {"value": 0.5, "stderr": None, "n": None}
    bias = {row[0]: row[2:7] for row in _table(board, "position_bias")["rows"]}
    assert [cell["n"] for cell in bias["logged"]] == [1, 0, 1, 0, 0]
    assert [cell["n"] for cell in bias["unlogged"]] == [None] * 5
    assert fmt(Stat(0.5, None, None, n_unknown=True)) == "0.500 (n=–)" and fmt(Stat(0.5)) == "0.500"


# --- numbers that must not be compared as they stand ----------------------------------------------

def _result(n, hashes=None, metrics=None, replies=None) -> TaskResult:
    samples = None if hashes is None else {i: (h, {}) for i, h in enumerate(hashes)}
    return TaskResult("t", metrics or {"acc": 0.5}, {}, n, samples=samples, replies=replies)


@pytest.mark.parametrize(("entries", "expected"), [
    ([("a", _result(4, "wxyz")), ("b", _result(4, "wxyz"))], None),
    ([("a", _result(4)), ("b", _result(4))], None),  # no samples logs: n is all there is to compare
    ([("a", _result(3, "wxy")), ("b", _result(4, "wxyz")), ("c", _result(4))],
     "t: evaluated on different numbers of documents (n=3 for a; n=4 for b, c)"),
    ([("a", _result(4, "wxyz")), ("b", _result(4, "wxuv"))],  # --samples, or another data file
     "t: same n=4 but different documents (doc_hash in the samples logs: 2 of 4 shared between (a) vs (b))"),
    ([("a", _result(4, "wxyz")), ("b", _result(4))], None),  # one side unknown: not claimed different
    ([("a", _result(4, "wxy")), ("b", _result(4, "wxyz"))], None),  # a truncated log: documents unknown
])
def test_doc_set_warning(entries, expected):
    warning = doc_set_warning("t", entries)
    assert (warning is None) if expected is None else warning.startswith(expected), warning


_PRED = {f"pred_{x}": 0.0 for x in "ABCDE"}


@pytest.mark.parametrize(("result", "expected"), [
    (_result(20, metrics={**_PRED, "pred_C": 1.0}), "answers C to 100% of 20 documents (pred_C = 1.000)"),
    (_result(20, metrics={**_PRED, "pred_C": 0.95, "pred_A": 0.05}), "answers C to 95% of 20"),
    (_result(20, metrics={**_PRED, "pred_C": 0.9, "pred_A": 0.1}), None),  # a strong bias, not one answer
    (_result(2, metrics={**_PRED, "pred_A": 1.0}), None),  # two documents agree by chance too easily
    # all invalid (pred_* all 0): the replies decide
    (_result(3, metrics=dict(_PRED), replies={0: ["I don't know"], 1: [" i don't  know"], 2: ["I don't know"]}),
     "replies \"I don't know\" to 3 of 3 documents"),
    (_result(3, replies={0: ["Denver"], 1: ["Denver"], 2: ["1990"]}), None),
    (_result(2, replies={0: ["A"] * 5, 1: ["A"] * 4}), None),
    (_result(3, replies={0: ["A"] * 5, 1: ["A"] * 4, 2: ["A"] * 3}), "replies 'A' to 12 of 12 questions"),
    (_result(3, replies={0: ["option 1"], 1: ["option 1"], 2: ["option 1"]}), "replies 'option 1' to 3 of 3"),
])
def test_constant_answer(result, expected):
    found = constant_answer(result)
    assert (found is None) if expected is None else found.startswith(expected), found


class ConstantReply:
    """For ``--model scripted``: one reply whatever the prompt. The other model args are the ``pretrained``
    and ``peft`` a real run carries, so the leaderboard labels the run as that model."""

    def __init__(self, reply: str = "A", **model_args) -> None:
        self.reply = reply

    def generate(self, context: str, gen_kwargs: dict) -> str:
        return self.reply


def constant_reply(**kwargs) -> ConstantReply:
    return ConstantReply(**kwargs)


# LIMIT documents, not the first LIMIT; two SQuAD strategies of one model on partly different passages
OTHER_DOCS = {"recipe_mpr_gen": [10, 11, 12, 13], "squad_all_in_one": [0, 1, 2, 3], "squad_batch": [0, 1, 2, 5]}


@pytest.fixture(scope="module")
def mixed(runs):
    """Beside the base and adapter runs: an adapter of the same base that answers "A" to everything, run
    with --limit LIMIT-1; another model run on LIMIT other documents (--samples); both also laid out as
    training steps of two adapters. One leaderboard (markdown, plots, JSON) over all of it."""
    root, base = runs["root"], runs["base_json"]["config"]["model_args"]["pretrained"]
    common = ["run", "--model", "scripted", "--gen_kwargs", "max_gen_toks=6", "--log_samples"]
    responder = "responder=tests.test_leaderboards:constant_reply"
    adapter_args = f"{responder},reply=A,pretrained={base},peft={root / 'constant-lora'}"
    _, constant = run_lm_eval([*common, "--model_args", adapter_args, "--tasks", "recipe_mpr_gen,squad_v1,squad_batch",
                               "--limit", str(LIMIT - 1)], root / "constant")
    run_lm_eval([*common, "--model_args", f"{responder},reply=B,pretrained={root / 'other-model'}",
                 "--tasks", ",".join(OTHER_DOCS), "--samples", json.dumps(OTHER_DOCS)], root / "other")
    for name, run_folder, step in (("lora-fewer", "constant", 5), ("lora-other", "other", 10)):
        shutil.copytree(runs["adapter_dir"], root / "trained" / name)
        _as_step(root / run_folder, root / "trained" / name, step, base)
    folders = [runs["base"], runs["adapter"], root / "constant", root / "other", root / "trained"]
    (root / "mixed").mkdir()
    report = build(folders, root / "mixed" / "LEADERBOARD.md")
    build(folders, root / "mixed" / "LEADERBOARD.json")
    return {"md": (root / "mixed" / "LEADERBOARD.md").read_text(), "report": report, "folders": folders,
            "doc": json.loads((root / "mixed" / "LEADERBOARD.json").read_text()), "constant_json": constant,
            "base": Path(base).name}


def _section(md: str, title: str) -> tuple[str, str]:
    """(text above the table, the table) of the markdown section ``## title``."""
    body = md.split(f"\n## {title}\n", 1)[1].split("\n## ", 1)[0]
    head, _, table = body.partition("\n|")
    return head, "|" + table


@pytest.mark.slow
def test_same_documents_no_warning(board):
    for table in board["tables"]:
        texts = [w["text"] for w in table["warnings"]]
        assert not [t for t in texts if "documents (" in t or "different documents" in t], (table["key"], texts)


@pytest.mark.slow
def test_different_limit_warns_above_every_table(mixed, tmp_path):
    base, fewer = mixed["base"], f"{mixed['base']} + constant-lora"
    for title in ("Overview", "SQuAD strategies", "Recipe-MPR: accuracy by query type", "Recipe-MPR: position bias"):
        head, _ = _section(mixed["md"], title)
        assert "⚠ **Warning: do not compare these numbers as they stand**" in head, title
        tasks = ("squad_batch", "squad_v1") if title.startswith("SQuAD") else ("recipe_mpr_gen",)
        for task in tasks:
            line = next(x for x in head.splitlines() if x.startswith(f"> - {task}: "))
            assert "evaluated on different numbers of documents" in line
            assert f"n={LIMIT - 1} for {fewer}; n={LIMIT} for {base}, {base} + recipe-lora (lora)" in line
        assert "gsm8k_think" not in head and "> - recipe_mpr:" not in head  # same documents there
    head, _ = _section(mixed["md"], "Base vs adapter")
    assert (f"> - squad_v1 ({base} vs {fewer}): evaluated on different numbers of documents "
            f"(n={LIMIT - 1} for adapter; n={LIMIT} for base)") in head
    proc = _cli("build", *map(str, mixed["folders"]), "-o", str(tmp_path / "LB.csv"))
    assert proc.returncode == 0, proc.stderr
    assert "warning: Overview: recipe_mpr_gen: evaluated on different numbers of documents" in proc.stderr
    rows = list(csv.DictReader(io.StringIO((tmp_path / "LB.csv").read_text())))
    assert any(r["table"] == "overview" and r["row"] == "recipe_mpr_gen" and r["column"] == "warning"
               and "different numbers of documents" in r["value"] for r in rows)


@pytest.mark.slow
def test_same_n_different_documents_warns(runs, mixed, tmp_path):
    build([runs["base"], mixed["folders"][3]], tmp_path / "LB.json")
    doc = json.loads((tmp_path / "LB.json").read_text())
    texts = {tuple(w["scope"]): w["text"] for w in _table(doc, "overview")["warnings"]}
    assert sorted(texts) == [("recipe_mpr_gen",), ("squad_batch",)]
    assert texts[("recipe_mpr_gen",)].startswith(f"recipe_mpr_gen: same n={LIMIT} but different documents (doc_hash "
                                                 f"in the samples logs: 0 of {LIMIT} shared between ({mixed['base']}) "
                                                 f"vs (other-model))")
    assert f"{LIMIT - 1} of {LIMIT} shared" in texts[("squad_batch",)]
    head, _ = _section(mixed["md"], "SQuAD strategies")  # strategies of one model on different passages
    assert (f"> - other-model: strategies: same n={LIMIT} but different documents (doc_hash in the samples logs: "
            f"{LIMIT - 1} of {LIMIT} shared between (squad_all_in_one) vs (squad_batch))") in head
    progression = _table(mixed["doc"], "progression")
    texts = {tuple(w["scope"]): w["text"] for w in progression["warnings"]}
    assert texts[(f"{mixed['base']} + lora-other (lora)", "recipe_mpr_gen")].startswith(
        f"{mixed['base']} + lora-other (lora) on recipe_mpr_gen: same n={LIMIT} but different documents")
    assert texts[(f"{mixed['base']} + lora-fewer (lora)", "squad_v1")].startswith(
        f"{mixed['base']} + lora-fewer (lora) on squad_v1: evaluated on different numbers of documents "
        f"(n={LIMIT - 1} for step 5; n={LIMIT} for base)")
    head, _ = _section(mixed["md"], "Training progression")
    assert f"> - {mixed['base']} + lora-other (lora) on recipe_mpr_gen: same n={LIMIT}" in head


def _distinct_replies(folder: Path, task: str) -> int:
    return len({" ".join(rec["filtered_resps"][0].split()).casefold() for rec in _samples(folder, task).values()})


@pytest.mark.slow
def test_constant_answer_adapter_is_flagged(runs, mixed):
    table = _table(mixed["doc"], "comparison")
    cols = table["columns"]
    rows = {(r[1], r[2]): dict(zip(cols, r)) for r in table["rows"]}
    fewer, tuned = f"{mixed['base']} + constant-lora", f"{mixed['base']} + recipe-lora (lora)"
    questions = int(mixed["constant_json"]["results"]["squad_batch"]["n_questions,none"])
    for task, flag in (("recipe_mpr_gen", f"answers A to 100% of {LIMIT - 1} documents (pred_A = 1.000)"),
                       ("squad_v1", f"replies 'A' to {LIMIT - 1} of {LIMIT - 1} documents"),
                       ("squad_batch", f"replies 'A' to {questions} of {questions} questions")):
        assert f"adapter: {flag}" in rows[(fewer, task)]["Constant answer"], task
    head, _ = _section(mixed["md"], "Base vs adapter")
    assert f"> - recipe_mpr_gen: {fewer} answers A to 100% of {LIMIT - 1} documents (pred_A = 1.000); a Δ" in head
    # the tiny models' own replies: flagged exactly where the samples log shows one repeated reply
    for task in ("squad_v1", "gsm8k_think", "recipe_mpr_gen"):
        cell = rows[(tuned, task)]["Constant answer"] or ""
        for who, folder in (("base", runs["base"]), ("adapter", runs["adapter"])):
            results = runs[f"{who}_json"]["results"][task]  # of LIMIT documents, >= 95% is all of them
            one = _distinct_replies(folder, task) == 1 or any(results.get(f"pred_{x},none") == 1 for x in "ABCDE")
            assert (f"{who}: " in cell) == one, (task, who, cell)


@pytest.mark.slow
def test_plots_label_zero_bars_chance_and_axes(mixed):
    from leaderboards.plots import _ZERO_STUB, progress_figure, type_figure

    types = next(t for t in mixed["report"].tables if t.key == "recipe_types")
    assert f"{mixed['report'].output.stem}_types_recipe-mpr-gen.png" in types.plots
    fig = type_figure(types, "recipe_mpr_gen")
    ax = fig.axes[0]
    cells = [c.value for row in types.rows if row[1] == "recipe_mpr_gen" for c in row[2:8]]
    expected = ["no data" if v is None else f"{v:.2f}" for v in cells]
    assert "0.00" in expected and "no data" in expected  # the case under test is really there
    assert sorted(t.get_text() for t in ax.texts) == sorted(expected)  # every bar labelled with its value
    assert sum(p.get_height() == _ZERO_STUB for p in ax.patches) == cells.count(0)  # a 0 is drawn, not empty
    assert [list(line.get_ydata()) for line in ax.lines] == [[0.2, 0.2]]  # chance: 1 in 5 options
    assert ax.get_xlabel().startswith("query type") and ax.get_ylabel() == "accuracy"
    assert any(t.get_text().startswith("WARNING: recipe_mpr_gen: evaluated on different numbers") for t in fig.texts)
    progression = next(t for t in mixed["report"].tables if t.key == "progression")
    fig = progress_figure(progression, (f"{mixed['base']} + lora-fewer (lora)", "squad_v1"))
    ax = fig.axes[0]
    assert [t.get_text() for t in ax.get_xticklabels()] == [f"0\nn={LIMIT}", f"5\nn={LIMIT - 1}"]
    assert ax.get_xlabel().startswith("training step") and ax.get_ylabel() == "score (0-1)"
    assert any("on squad_v1: evaluated on different numbers" in t.get_text() for t in fig.texts)
    assert not ax.lines[-1].get_label().startswith("chance")  # SQuAD has no chance level
    # intervals: whiskers on the bars, a band around each progression curve
    types_ax = type_figure(types, "recipe_mpr_gen").axes[0]
    assert any(type(c).__name__ == "LineCollection" for c in types_ax.collections)
    series = next(k for k in {(r[0], r[1]) for r in progression.rows}
                  if any(r[4] is not None and r[4].ci is not None for r in progression.rows if (r[0], r[1]) == k))
    bands = [c for c in progress_figure(progression, series).axes[0].collections if type(c).__name__ != "LineCollection"]
    assert bands  # fill_between


@pytest.mark.slow
def test_real_leaderboard_tables_fit_github_width(mixed, tmp_path):
    widths = _md_table_widths(mixed["md"])
    assert len(widths) >= 10
    assert [(h, w) for h, w in widths if w > GITHUB_WIDTH] == []
    (tmp_path / "LB.md").write_text(mixed["md"])


@pytest.mark.slow
def test_lenient_substring_never_displaces_lenient(runs, tmp_path):
    """The seed-compatible character-containment variant is logged beside ``lenient``; tables show lenient."""
    folders = []
    for name in ("base", "adapter"):
        folder = tmp_path / name
        shutil.copytree(runs[name], folder)
        (path,) = folder.rglob("results_*.json")
        data = json.loads(path.read_text())
        for task in ("squad_v1", "squad_batch"):
            data["results"][task]["lenient_substring,none"] = 0.75
        path.write_text(json.dumps(data))
        for samples in folder.rglob("samples_squad_*.jsonl"):
            recs = [json.loads(line) for line in samples.read_text().splitlines()]
            samples.write_text("\n".join(json.dumps({**r, "metrics": ["lenient_substring", *r["metrics"]],
                                                     "lenient_substring": 1.0}) for r in recs))
        folders.append(folder)
    build(folders, tmp_path / "LB.json")
    doc = json.loads((tmp_path / "LB.json").read_text())
    squad = _table(doc, "squad")
    lenient = squad["columns"].index("Lenient")
    for row in squad["rows"]:
        results = runs["adapter_json"] if "+" in row[0] else runs["base_json"]
        assert row[lenient]["value"] == _metric(results, "squad_" + row[1], "lenient") != 0.75
    compared = {(r[2], r[3]) for r in _table(doc, "comparison")["rows"] if r[2].startswith("squad")}
    assert compared == {(t, m) for t in ("squad_batch", "squad_v1") for m in ("em", "f1", "lenient")}
    assert "lenient_substring" not in json.dumps([t["columns"] for t in doc["tables"]])
