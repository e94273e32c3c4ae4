"""Every family as a sweep objective: ``squad_batch/f1`` and ``gsm8k_think/accuracy`` are scored by their
validation tasks (``squad_batch_train``, ``gsm8k_think_train``: the same tasks on the train files) on the
split carved from the training data. End to end on the tiny model (2 trials each), the scored documents are
held out of the training rows and are none of the dev/test documents; a metric or filter the validation
task does not report, or an objective task with no held-out document, stops with one line and exit 2."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from finetune.guard import normalise
from tests.test_sweep import _cmd, _popen, _sweep, _write

pytestmark = pytest.mark.heavy(order=2)

optuna = pytest.importorskip("optuna")

COMMON = {"validation_seed": 1, "per_device_train_batch_size": 2, "gradient_accumulation_steps": 1,
          "warmup_steps": 0, "logging_steps": 1, "disable_tqdm": True, "max_length": 256,
          "gradient_checkpointing": False, "max_steps": 2, "save_steps": 2, "eval_steps": 2, "eval_limit": 3,
          "eval_gen_kwargs": "max_gen_toks=8", "report_to": "none", "pruner": "none",
          "search_space": {"lora_r": [4, 8]}}
SQUAD = {"objective": "squad_batch/f1", "task": "squad_batch", "validation_size": 0.25,
         "eval_tasks": "squad_v1", **COMMON}
GSM8K = {"objective": "gsm8k_think/accuracy", "task": "gsm8k_r1_zero", "max_examples": 60,
         "validation_size": 0.2, "eval_tasks": "gsm8k_think", **COMMON}
CASES = {"squad": (SQUAD, "squad_batch_train", "f1"), "gsm8k": (GSM8K, "gsm8k_think_train", "accuracy")}


@pytest.fixture(scope="module")
def sweeps(tiny_model, tmp_path_factory):
    """One 2-trial grid sweep per family (lora_r 4 and 8), each trial 2 steps and one evaluation; the two
    sweeps run at the same time (the sweep worker imports no training library: its trial server does)."""
    runs = {}
    for name, (doc, _, _) in CASES.items():
        root = tmp_path_factory.mktemp(name)
        config, folder, log = _write(root / "sweep.yaml", doc), root / "D", root / "sweep.log"
        proc = _popen(_cmd(config, tiny_model, folder, "--sampler", "grid"), log)
        runs[name] = {"out": folder, "proc": proc, "log": log}
    for run in runs.values():
        run["code"] = run.pop("proc").wait(timeout=600)
        run["output"] = run["log"].read_text(encoding="utf-8", errors="replace")
    return runs


def _scored_docs(folder: Path, task: str) -> list[dict]:
    docs = []
    for path in sorted(folder.glob(f"trial-*/run/eval/step-*/samples_{task}_*.jsonl")):
        docs += [json.loads(line)["doc"] for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
    return docs


def _carved(doc: dict):
    """The (training rows, held-out rows) a trial used, carved again the same way."""
    from finetune.data import build_training_data
    from finetune.validation import carve

    data = build_training_data(doc["task"], 0, None, doc.get("max_examples"))
    return carve(data, doc["validation_size"], doc["validation_seed"])


@pytest.mark.slow
@pytest.mark.parametrize("family", list(CASES))
def test_family_objective_sweep_runs_end_to_end(sweeps, family):
    run = sweeps[family]
    doc, task, metric = CASES[family]
    assert run["code"] == 0, run["output"][-4000:]
    result = _sweep(run["out"])
    assert result["objective"] == f"{task}/{metric}" and result["direction"] == "maximize"
    trials = result["trials"]
    assert len(trials) == 2 and all(t["state"] == "COMPLETE" for t in trials), trials
    assert sorted(t["params"]["lora_r"] for t in trials) == [4, 8]
    for trial in trials:  # the value is the validation task's metric at the trial's last evaluation
        run_dir = Path(trial["output_dir"]) / "run"
        [step] = sorted((run_dir / "eval").glob("step-*"))
        results = json.loads(next(step.glob("results_*.json")).read_text())["results"]
        assert set(results) == {task}  # only the validation task ran, not the base's dev/test eval_tasks
        assert trial["value"] == pytest.approx(results[task][f"{metric},none"])
        assert trial["intermediate"] == {"2": trial["value"]}
        config = yaml.safe_load((Path(trial["output_dir"]) / "config.yaml").read_text())
        assert config["eval_tasks"] == task
    best = yaml.safe_load((run["out"] / "best.yaml").read_text())
    assert best["eval_tasks"] == doc["eval_tasks"] and "validation_size" not in best


@pytest.mark.slow
def test_squad_validation_passages_are_held_out_and_never_dev(sweeps):
    from qa_tasks.squad import load_passages

    train, held = _carved(SQUAD)
    scored = _scored_docs(sweeps["squad"]["out"], "squad_batch_train")
    assert scored
    questions = {(q["squad_id"], q["question"]) for d in scored for q in d["questions"]}
    dev = load_passages("validation", min_questions=1, max_questions=None)
    dev_questions = {(q.squad_id, q.question) for p in dev for q in p.questions}
    assert not {i for i, _ in questions} & {i for i, _ in dev_questions}
    assert not {normalise(t) for _, t in questions} & {normalise(t) for _, t in dev_questions}
    assert not {normalise(d["context"]) for d in scored} & {normalise(p.context) for p in dev}
    # every scored passage is a held-out one, and no training row holds its passage or its questions
    assert {f"squad:{d['context']}" for d in scored} <= set(held.keys)
    assert not {f"squad:{d['context']}" for d in scored} & set(train.keys)
    train_text = [normalise(row["prompt"] + " " + row["completion"]) for row in train.rows]
    for d in scored:
        assert not any(normalise(d["context"]) in text for text in train_text)
    manifest = json.loads(next(sweeps["squad"]["out"].glob("trial-*/run/manifest.json")).read_text())
    assert manifest["data"]["sha256"] == train.sha256 and manifest["data"]["n_examples"] == len(train.rows)
    pids = {d["pid"] for d in scored}  # both trials score the same eval_limit held-out passages
    assert len(pids) == SQUAD["eval_limit"] and len(scored) == 2 * SQUAD["eval_limit"]
    assert manifest["data"]["validation"]["scored_documents"] == {"squad_batch_train": len(pids)}


@pytest.mark.slow
def test_gsm8k_validation_problems_are_held_out_and_never_test(sweeps):
    from qa_tasks.math import load_gsm8k

    train, held = _carved(GSM8K)
    scored = _scored_docs(sweeps["gsm8k"]["out"], "gsm8k_think_train")
    assert scored and all(d["id"].startswith("gsm8k/train/") for d in scored)
    test = {normalise(x["question"]) for x in load_gsm8k("test")}
    assert not {normalise(d["question"]) for d in scored} & test
    assert {f"gsm8k:{' '.join(d['question'].split())}" for d in scored} <= set(held.keys)
    train_text = [normalise(row["prompt"] + " " + row["completion"]) for row in train.rows]
    for d in scored:
        assert not any(normalise(d["question"]) in text for text in train_text)
    manifest = json.loads(next(sweeps["gsm8k"]["out"].glob("trial-*/run/manifest.json")).read_text())
    assert manifest["data"]["sha256"] == train.sha256
    assert manifest["data"]["n_examples"] == 60 - round(0.2 * 60)


@pytest.mark.parametrize("text,task,direction", [
    ("squad_batch/f1", "squad_batch_train", "maximize"),
    ("squad_sequential/em", "squad_sequential_train", "maximize"),
    ("squad_v1/f1", "squad_v1_train", "maximize"),
    ("gsm8k_think/accuracy", "gsm8k_think_train", "maximize"),
    ("gsm8k_think/wrong_answer_rate", "gsm8k_think_train", "minimize"),
    ("squad_batch_train/f1", "squad_batch_train", "maximize"),  # the validation task named directly
    ("recipe_mpr_gen/acc", "recipe_mpr_gen", "maximize"),  # covers the training data itself
])
def test_objective_is_scored_by_its_validation_task(text, task, direction):
    from finetune.sweep_space import parse_objective

    objective = parse_objective(text, "s.yaml")
    assert (objective.task, objective.direction) == (task, direction)
    assert objective.key == f"{task}/{text.split('/')[1]}"


@pytest.mark.parametrize("task,source", [("squad_batch_train", "validation"), ("squad_v1_train", "validation"),
                                         ("gsm8k_think_train", "test")])
def test_validation_tasks_read_the_train_files_only(task, source):
    """Every document of a validation task is from the train file; none is a dev/test document."""
    from finetune.guard import document_text
    from qa_tasks.harness.task_index import task_documents

    docs = task_documents(task)
    if task.startswith("squad"):
        from qa_tasks.squad import load_passages, paragraphs

        assert {d["context"] for d in docs} == {c for _, c, qas in paragraphs("train") if qas}
        other = {normalise(p.context) for p in load_passages(source, min_questions=1, max_questions=None)}
    else:
        from qa_tasks.math import load_gsm8k

        assert len(docs) == len(load_gsm8k("train"))
        other = {normalise(x["question"]) for x in load_gsm8k(source)}
    assert not {document_text(d) for d in docs} & other


BAD = [
    ("squad_metric_not_produced", {**SQUAD, "objective": "squad_batch/accuracy"},
     "squad_batch (scored on the validation split by squad_batch_train) does not produce metric 'accuracy'"),
    ("gsm8k_metric_not_produced", {**GSM8K, "objective": "gsm8k_think/f1"}, "does not produce metric 'f1'"),
    ("gsm8k_filter_not_produced", {**GSM8K, "objective": "gsm8k_think/accuracy,strict"}, "has no filter 'strict'"),
    ("squad_task_without_validation_task", {**SQUAD, "objective": "squad_collab/f1"}, "has no document among the"),
    ("gsm8k_objective_on_squad_training", {**SQUAD, "objective": "gsm8k_think/accuracy"},
     "eval task gsm8k_think_train has no document among the"),
]


@pytest.mark.parametrize("name,doc,message", BAD, ids=[b[0] for b in BAD])
def test_bad_objective_is_one_line_exit_2_before_training(name, doc, message, tiny_model, tmp_path, capsys):
    from finetune.sweep import main

    out = tmp_path / "D"
    code = main(["--config", str(_write(tmp_path / "s.yaml", doc)), "--model_name_or_path", str(tiny_model),
                 "--output_dir", str(out)])
    err = capsys.readouterr().err.strip()
    assert code == 2 and message in err and len(err.splitlines()) == 1, err
    assert "Traceback" not in err and not list(out.glob("trial-*"))
