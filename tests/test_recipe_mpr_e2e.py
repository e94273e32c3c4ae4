"""Recipe-MPR through the real lm_eval CLI: scripted models with known scores, and the tiny hf model."""

from __future__ import annotations

import json

import pytest

from qa_tasks import recipe_mpr as r
from tests.toolkit.env import lm_eval_env
from tests.toolkit.lm_eval_runs import read_samples, run_lm_eval
from tests.toolkit.scripted_lm import one_line_error

pytestmark = pytest.mark.slow
SCRIPTED = "tests.toolkit.recipe_responders"


def _metrics(results: dict, task: str) -> dict[str, float]:
    return {k.split(",")[0]: v for k, v in results["results"][task].items() if k.endswith(",none")}


@pytest.fixture(scope="module")
def gold_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("gold")
    proc, results = run_lm_eval(["run", "--model", "scripted", "--model_args", f"responder={SCRIPTED}:gold",
                                 "--tasks", "recipe_mpr,recipe_mpr_gen,recipe_mpr_gen_fold0", "--log_samples"], out)
    return out, proc.stdout, results


def _printed_tables(stdout: str) -> dict[str, list[str]]:
    """Each task's part of lm-eval's printed table, with the two header lines: a task's first row names it,
    its other metric rows leave the Tasks cell empty."""
    lines = [line for line in stdout.splitlines() if line.startswith("|")]
    tables: dict[str, list[str]] = {}
    task = None
    for line in lines[2:]:
        task = line.split("|")[1].strip() or task
        tables.setdefault(task, lines[:2]).append(line)
    return tables


@pytest.fixture(scope="module")
def always_a_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("always_a")
    _, results = run_lm_eval(["run", "--model", "scripted", "--model_args", f"responder={SCRIPTED}:constant",
                              "--tasks", "recipe_mpr,recipe_mpr_gen"], out)
    return results


def test_gold_model_scores_one_on_every_type(gold_run):
    out, _, results = gold_run
    counts = {t: sum(t in d.types for d in r.build_docs()) for t in r.QUERY_TYPES}
    for task in ("recipe_mpr", "recipe_mpr_gen"):
        m = _metrics(results, task)
        assert m["acc"] == 1.0 and m["n"] == 500
        # counts per type and gold position live in the samples log, not in the metrics
        assert [k for k in m if k.startswith("n_") and not k.endswith("_stderr")] == []
        samples = read_samples(out, task)
        for t in r.QUERY_TYPES:
            assert m[f"acc_{t}"] == 1.0
            assert sum(f"acc_{t}" in s for s in samples) == counts[t]
    gen = _metrics(results, "recipe_mpr_gen")
    assert gen["invalid_rate"] == 0.0
    assert all(gen[f"acc_gold_{x}"] == 1.0 for x in r.LETTERS)


def test_printed_table_of_each_task_fits_a_screen(gold_run):
    """Every metric row shows (the gold model covers all types and letters), yet one task is <= 20 lines."""
    tables = _printed_tables(gold_run[1])
    assert set(tables) == {"recipe_mpr", "recipe_mpr_gen", "recipe_mpr_gen_fold0"}
    gen = tables["recipe_mpr_gen"]
    assert sum(f"|acc_gold_{x} " in "".join(gen) for x in r.LETTERS) == len(r.LETTERS)  # nothing left out
    assert {task: len(lines) for task, lines in tables.items() if len(lines) > 20} == {}


def test_fold_variant_is_the_fold_test_split(gold_run):
    m = _metrics(gold_run[2], "recipe_mpr_gen_fold0")
    assert m["n"] == 100 and m["acc"] == 1.0


def test_always_a_is_not_a_perfect_score(always_a_run):
    share_a = sum(d.gold_letter == "A" for d in r.build_docs()) / 500
    gen = _metrics(always_a_run, "recipe_mpr_gen")
    assert gen["acc"] == pytest.approx(share_a) and 0.12 < gen["acc"] < 0.3
    assert gen["pred_A"] == 1.0 and gen["pred_B"] == 0.0
    assert gen["acc_gold_A"] == 1.0 and gen["acc_gold_B"] == 0.0
    # the loglikelihood variant: preferring whichever option is listed first is no better
    mc = _metrics(always_a_run, "recipe_mpr")
    assert mc["acc"] == pytest.approx(share_a)


def test_chat_template_and_metadata_fold(tmp_path):
    """Verbose chat-style replies parse; --metadata picks the fold on the base task."""
    out = tmp_path / "out"
    args = json.dumps({"responder": f"{SCRIPTED}:gold", "style": "Answer: ({letter}) that one"})
    _, results = run_lm_eval(["run", "--model", "scripted", "--model_args", args,
                              "--tasks", "recipe_mpr_gen", "--apply_chat_template",
                              "--metadata", json.dumps({"fold": 1}), "--log_samples"], out)
    m = _metrics(results, "recipe_mpr_gen")
    assert m["acc"] == 1.0 and m["n"] == 100
    samples = read_samples(out, "recipe_mpr_gen")
    assert {s["doc"]["idx"] for s in samples} == {d.idx for d in r.build_docs(1)}
    assert samples[0]["arguments"]["gen_args_0"]["arg_0"].startswith("<|im_start|>user\nQuery:")


@pytest.fixture(scope="module")
def tiny_run(tiny_model, tmp_path_factory):
    out = tmp_path_factory.mktemp("tiny")
    _, results = run_lm_eval(["run", "--model", "hf", "--model_args", f"pretrained={tiny_model}",
                              "--tasks", "recipe_mpr,recipe_mpr_gen", "--limit", "8", "--apply_chat_template",
                              "--log_samples"], out)
    return out, results


def test_tiny_hf_model_runs_and_per_type_metrics_match_its_samples(tiny_run):
    out, results = tiny_run
    for task in ("recipe_mpr", "recipe_mpr_gen"):
        samples = read_samples(out, task)
        assert len(samples) == 8
        m = _metrics(results, task)
        for t in r.QUERY_TYPES:
            members = [s for s in samples if t in s["doc"]["types"]]
            assert sum(f"acc_{t}" in s for s in samples) == len(members)
            if members:
                assert m[f"acc_{t}"] == pytest.approx(sum(s["acc"] for s in members) / len(members))
            else:
                assert f"acc_{t}" not in m


def test_missing_data_is_one_line_before_the_model_loads(tmp_path):
    env = lm_eval_env(QA_PACK_CACHE=str(tmp_path / "cache"))
    env.pop("QA_PACK_DATA_DIR")
    # a model path that does not exist: had the model loaded first, the error would be about it
    proc, _ = run_lm_eval(["run", "--model", "hf", "--model_args", "pretrained=/nonexistent/model",
                           "--tasks", "recipe_mpr"], env=env, check=False)
    assert proc.returncode == 2
    errors = [line for line in proc.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and "QA_PACK_DATA_DIR" in errors[0] and "recipe_mpr/500QA.json" in errors[0]
    assert "Traceback" not in proc.stderr


def test_malformed_local_data_names_the_record(tmp_path):
    records = json.loads(json.dumps(r.load_records()[:3]))
    del records[2]["answer"]
    (tmp_path / "recipe_mpr").mkdir()
    (tmp_path / "recipe_mpr" / "500QA.json").write_text(json.dumps(records))
    proc, _ = run_lm_eval(["run", "--model", "hf", "--model_args", "pretrained=/nonexistent/model",
                           "--tasks", "recipe_mpr_gen"], env=lm_eval_env(QA_PACK_DATA_DIR=str(tmp_path)), check=False)
    assert proc.returncode == 2
    assert "record 2 " in proc.stderr and "has no 'answer'" in proc.stderr and "Traceback" not in proc.stderr


# The examples, each with the reading it must get: "gold" = credited, "other" = read as the wrong
# letter, None = invalid (never credited, counted in invalid_rate).
REPLIES = [
    ("{gold} or {other}", None), ("{gold}, {other}", None), ("({gold}) and ({other})", None),
    ("The answer is {gold} or {other}", None), ("A vegetarian lasagna with spinach", None),
    ("Option {other} is wrong. The answer is {gold}.", "gold"), ("E.g. the first one", None),
    ("I think it's {gold}", "gold"), ("Definitely {gold}", "gold"), ("The best option here is {gold}", "gold"),
    ("{gold_wide}", "gold"), ("Option {gold} is wrong. The answer is {other}.", "other"),
]


@pytest.fixture(scope="module")
def replies_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("replies")
    args = json.dumps({"responder": f"{SCRIPTED}:templated", "templates": [t for t, _ in REPLIES]})
    _, results = run_lm_eval(["run", "--model", "scripted", "--model_args", args, "--tasks", "recipe_mpr_gen",
                              "--limit", str(2 * len(REPLIES)), "--log_samples"], out)
    return out, results


def test_hedges_articles_and_statements_read_as_a_careful_grader_would(replies_run):
    out, results = replies_run
    samples = read_samples(out, "recipe_mpr_gen")
    assert len(samples) == 2 * len(REPLIES)
    for sample in samples:
        template, reading = REPLIES[sample["doc"]["idx"] % len(REPLIES)]
        reply = sample["filtered_resps"][0]
        gold = sample["doc"]["gold"]
        assert reply == template.format(gold=r.LETTERS[gold], other=r.LETTERS[(gold + 1) % 5],
                                        gold_wide=chr(ord("Ａ") + gold))
        assert sample["acc"] == float(reading == "gold"), reply
        assert sample["invalid_rate"] == float(reading is None), reply
        assert sum(sample[f"pred_{x}"] for x in r.LETTERS) == float(reading is not None), reply
    m = _metrics(results, "recipe_mpr_gen")
    expect = [reading for _, reading in REPLIES] * 2
    assert m["acc"] == pytest.approx(expect.count("gold") / len(expect))
    assert m["invalid_rate"] == pytest.approx(expect.count(None) / len(expect))


@pytest.mark.parametrize("fold", ["x", 1.7])
def test_bad_fold_is_one_line_before_the_model_loads(tmp_path, fold):
    created = tmp_path / "model_created"
    proc, _ = run_lm_eval(["run", "--model", "scripted", "--model_args", f"responder={SCRIPTED}:gold,created={created}",
                           "--tasks", "recipe_mpr_gen", "--metadata", json.dumps({"fold": fold})], check=False)
    error = one_line_error(proc)
    assert f"fold={fold!r} is not valid; use an integer (0..4)" in error
    assert not created.exists()
