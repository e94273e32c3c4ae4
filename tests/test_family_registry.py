"""Adding a family = one new module + its YAML folder + one line in ``qa_tasks.families`` (README, layout).

A copy of the shipped packages gets a fourth, toy family that way; lm-eval's task list, the data
preflight, ``finetune`` (training set and guard) and the leaderboard then all know it, with nothing else
edited. One evaluation run (tiny model, 3 documents); the bad-data run stops before the model loads.
"""

from __future__ import annotations

import filecmp
import json
import shutil
import subprocess
from pathlib import Path

import pytest

from tests.toolkit.env import BIN, ROOT, lm_eval_env
from tests.toolkit.lm_eval_runs import run_lm_eval

PACKAGES = ("qa_tasks", "finetune", "leaderboards", "tasks_yaml")

TOY_MODULE = '''"""Toy family: short questions with one-word answers (QA_PACK_DATA_DIR/toy/<split>.jsonl)."""

import json
import os
from pathlib import Path

from qa_tasks.errors import QAPackError
from qa_tasks.family import Family, TrainingSet


def load(split: str) -> list[dict]:
    path = Path(os.environ["QA_PACK_DATA_DIR"]) / "toy" / f"{split}.jsonl"
    rows = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    for i, row in enumerate(rows, 1):
        if not (isinstance(row.get("question"), str) and isinstance(row.get("answer"), str)):
            raise QAPackError(f"{path} row {i}: needs a string question and answer")
    return rows


def preflight(task_name: str, metadata: dict | None = None) -> None:
    load("test")


def training_set(fold: int = 0) -> dict:
    rows = load("train")
    return {"rows": [{"prompt": r["question"], "completion": " " + r["answer"]} for r in rows],
            "keys": [f"toy:{i}" for i in range(len(rows))], "source": "toy/train.jsonl", "split": "train"}


def toy_table(models, col):
    from leaderboards.tables import Table, tasks_of, value

    rows = [[m.label, task, value(r, "correct")] for m, task, r in tasks_of(models, "toy")]
    return Table("toy", "Toy: correct answers", ["Model", "Task", "Correct"], rows) if rows else None


FAMILY = Family(
    name="toy",
    preflight=preflight,
    training_sets={"toy_train": TrainingSet("qa_tasks.toy:training_set", "toy questions", eval_task="toy_qa")},
    main_metric="correct",
    tables=("qa_tasks.toy:toy_table",),
)
'''
TOY_YAML = """task: toy_qa
dataset_path: json
custom_dataset: !function utils.load
test_split: test
output_type: generate_until
doc_to_text: "Question: {{question}}\\nAnswer:"
doc_to_target: answer
generation_kwargs:
  until: ["\\n"]
  max_gen_toks: 4
  do_sample: false
process_results: !function utils.process_results
metric_list:
  - metric: correct
    aggregation: mean
    higher_is_better: true
  - metric: answered
    aggregation: mean
    higher_is_better: true
metadata:
  version: 1.0
"""
TOY_UTILS = '''import datasets

from qa_tasks import toy


def load(**_options):
    return {"test": datasets.Dataset.from_list(toy.load("test"))}


def process_results(doc, results):
    reply = results[0].strip()
    return {"correct": float(reply == doc["answer"]), "answered": float(bool(reply))}
'''
TEST_ROWS = [{"question": "What colour is the clear daytime sky?", "answer": "blue"},
             {"question": "How many legs does a spider have?", "answer": "eight"},
             {"question": "Which animal says moo on the farm?", "answer": "cow"}]
# the guard must refuse this training set: its second row is a test question
TRAIN_ROWS = [{"question": "What colour is fresh green grass?", "answer": "green"}, TEST_ROWS[1]]

# in one process of the copy: lm-eval's task listing, the training-task list and the training guard
SCRIPT = """
from lm_eval.tasks import TaskManager

from qa_tasks.harness.task_index import tasks_dir

# the table `lm_eval ls tasks` prints, for the pack's folder alone: without indexing lm-eval's ~14,700
# built-in entries (about 100 s on a busy 2-core machine; tests/test_plugin.py runs the CLI itself)
listing = TaskManager(include_defaults=False, include_path=str(tasks_dir())).list_all_tasks()
print("LISTED", "|toy_qa " in listing, "|recipe_mpr " in listing)

from finetune.config import tasks
from finetune.data import build_training_data
from finetune.guard import check_no_overlap
from qa_tasks.errors import QAPackError

assert "toy_train" in tasks(), tasks()
data = build_training_data("toy_train")
try:
    check_no_overlap(data, "toy_train")
except QAPackError as e:
    print("REFUSED", e)
"""


def _write_jsonl(path: Path, rows: list[dict]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")


def _add_toy_family(pack: Path) -> None:
    """Exactly what the README's recipe says: the module, the YAML folder, one registry line."""
    (pack / "qa_tasks" / "toy.py").write_text(TOY_MODULE, encoding="utf-8")
    (pack / "tasks_yaml" / "toy").mkdir()
    (pack / "tasks_yaml" / "toy" / "toy_qa.yaml").write_text(TOY_YAML, encoding="utf-8")
    (pack / "tasks_yaml" / "toy" / "utils.py").write_text(TOY_UTILS, encoding="utf-8")
    registry = pack / "qa_tasks" / "families.py"
    text = registry.read_text(encoding="utf-8")
    registry.write_text(text.replace('    "qa_tasks.math",\n', '    "qa_tasks.math",\n    "qa_tasks.toy",\n'),
                        encoding="utf-8")


def _changed(pack: Path) -> tuple[set[str], set[str]]:
    """(files new in the copy, files that differ from the checkout)."""
    new, changed = set(), set()
    for path in pack.rglob("*"):
        if path.is_dir() or "__pycache__" in path.parts:
            continue
        rel = path.relative_to(pack).as_posix()
        if not (ROOT / rel).exists():
            new.add(rel)
        elif not filecmp.cmp(path, ROOT / rel, shallow=False):
            changed.add(rel)
    return new, changed


@pytest.mark.slow
def test_a_fourth_family_needs_one_module_one_folder_one_line(tmp_path, tiny_model):
    pack = tmp_path / "pack"
    for name in PACKAGES:
        shutil.copytree(ROOT / name, pack / name, ignore=shutil.ignore_patterns("__pycache__"))
    _add_toy_family(pack)
    new, changed = _changed(pack)
    assert new == {"qa_tasks/toy.py", "tasks_yaml/toy/toy_qa.yaml", "tasks_yaml/toy/utils.py"}
    assert changed == {"qa_tasks/families.py"}
    before = (ROOT / "qa_tasks" / "families.py").read_text().splitlines()
    after = (pack / "qa_tasks" / "families.py").read_text().splitlines()
    assert [line for line in after if line not in before] == ['    "qa_tasks.toy",'] and len(after) == len(before) + 1

    data = tmp_path / "data"
    env = lm_eval_env(PYTHONPATH=str(pack), QA_PACK_DATA_DIR=str(data))
    # the data preflight: a bad row stops the run before the model is even looked at (this model folder does
    # not exist, which the check after the preflight would report), as one line and exit 2
    _write_jsonl(data / "toy" / "test.jsonl", [*TEST_ROWS, {"question": "no answer here"}])
    bad, _ = run_lm_eval(["run", "--model", "hf", "--model_args", f"pretrained={tmp_path / 'no-model'}",
                          "--tasks", "toy_qa"], env=env, check=False)
    assert bad.returncode == 2, bad.stderr[-2000:]
    assert "toy/test.jsonl row 4: needs a string question and answer" in bad.stderr
    assert "Traceback" not in bad.stderr

    _write_jsonl(data / "toy" / "test.jsonl", TEST_ROWS)
    _write_jsonl(data / "toy" / "train.jsonl", TRAIN_ROWS)
    model = ["--model", "hf", "--model_args", f"pretrained={tiny_model}", "--tasks", "toy_qa"]
    _, results = run_lm_eval(["run", *model, "--limit", "3"], output=tmp_path / "out", env=env)
    assert set(results["results"]["toy_qa"]) >= {"correct,none", "answered,none"}

    script = subprocess.run([str(BIN / "python"), "-c", SCRIPT], capture_output=True, text=True, env=env,
                            cwd=tmp_path, timeout=300, check=False)
    assert script.returncode == 0, script.stderr[-2000:]
    assert "LISTED True True" in script.stdout
    assert "REFUSED 1 training row(s) contain evaluation documents of toy_qa" in script.stdout

    board = tmp_path / "board.md"
    built = subprocess.run([str(BIN / "python"), "-m", "leaderboards", "build", str(tmp_path / "out"), "-o",
                            str(board), "--no-plots"], capture_output=True, text=True, env=env, cwd=tmp_path,
                           timeout=300, check=False)
    assert built.returncode == 0, built.stderr[-2000:]
    md = board.read_text()
    assert "| toy_qa | correct |" in md  # the overview shows the family's main metric, not the first by name
    assert "Toy: correct answers" in md


@pytest.mark.parametrize(("ref", "message"), [
    ("qa_tasks.no_such_module:thing", r"qa_tasks.no_such_module:thing is not available in this install"),
    ("qa_tasks.squad:no_such_function", r"qa_tasks.squad:no_such_function is not available in this install"),
])
def test_a_bad_reference_is_one_line(ref, message):
    from qa_tasks.errors import QAPackError
    from qa_tasks.family import resolve

    with pytest.raises(QAPackError, match=message) as info:
        resolve(ref)
    assert "\n" not in str(info.value)


def test_a_listed_module_without_family_is_one_line(monkeypatch):
    from qa_tasks import families as registry
    from qa_tasks.errors import QAPackError
    from qa_tasks.family import families

    monkeypatch.setattr(registry, "FAMILIES", (*registry.FAMILIES, "qa_tasks.errors"))
    families.cache_clear()
    try:
        with pytest.raises(QAPackError, match=r"qa_tasks.errors is listed in qa_tasks.families but exports no FAMILY"):
            families()
    finally:
        monkeypatch.undo()
        families.cache_clear()
    assert [f.name for f in families()] == ["recipe_mpr", "squad", "math"]
