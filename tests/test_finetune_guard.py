"""The eval-split guard covers every eval task of the pack (read through lm-eval's own task configs), on
normalised text: case, whitespace and punctuation changes do not hide a leak."""

from __future__ import annotations

import json
import os

import pytest

from finetune.data import read_user_jsonl
from finetune.guard import check_no_overlap, document_text, normalise
from qa_tasks.errors import QAPackError
from qa_tasks.harness.task_index import is_pack_only, leaf_tasks, pack_tasks, task_documents, task_manager

FIXTURE = os.path.join(os.path.dirname(__file__), "fixtures", "hendrycks_math")
EVAL_TASKS = sorted(pack_tasks())


@pytest.fixture(autouse=True)
def hendrycks_fixture(monkeypatch):
    monkeypatch.setenv("QA_PACK_HENDRYCKS_MATH_DIR", FIXTURE)


def _jsonl(tmp_path, texts: list[str]):
    path = tmp_path / "train.jsonl"
    path.write_text("".join(json.dumps({"prompt": f"Question: {t}\n", "completion": " 42"}) + "\n" for t in texts))
    return read_user_jsonl(path)


def _disguise(text: str) -> str:
    """What a copy-paste does to a document: other case, line breaks, extra punctuation."""
    words = text.split()
    return "  ".join(w.upper() if i % 2 else w + "," for i, w in enumerate(words)) + "?!"


@pytest.mark.parametrize("task", EVAL_TASKS)
def test_every_pack_eval_task_is_guarded(task, tmp_path):
    leaves = leaf_tasks(task)
    doc = task_documents(leaves[0])[-1]
    raw = max((v for v in doc.values() if isinstance(v, str)), key=len)
    data = _jsonl(tmp_path, ["an unrelated arithmetic question about apples and pears", _disguise(raw)])
    with pytest.raises(QAPackError, match=rf"^1 training row\(s\) contain evaluation documents of {leaves[0]} "
                                          r"\(e\.g\. .*train\.jsonl row 2: ") as err:
        check_no_overlap(data, "jsonl", [task])
    assert "\n" not in str(err.value)


@pytest.mark.parametrize("change, refused", [
    (lambda q: q, True),
    (str.lower, True),  # issue 13: lower-cased Recipe-MPR queries passed
    (lambda q: q.upper().replace(" ", " ,\n "), True),
    (lambda q: " ".join(q.split()[:3]), False),  # a few of its words are not the document
], ids=["verbatim", "lower-cased", "upper-case-punctuation-newlines", "first-words-only"])
def test_recipe_queries_match_after_normalising(change, refused, tmp_path):
    query = task_documents("recipe_mpr_gen_fold0")[0]["query"]
    assert document_text(task_documents("recipe_mpr_gen_fold0")[0]) == normalise(query)
    data = _jsonl(tmp_path, [change(query)])
    if refused:
        with pytest.raises(QAPackError, match="^1 training row.* of recipe_mpr_gen_fold0"):
            check_no_overlap(data, "jsonl", ["recipe_mpr_gen_fold0"])
    else:
        check_no_overlap(data, "jsonl", ["recipe_mpr_gen_fold0"])


def test_math500_problems_are_refused(tmp_path):
    """Issue 13: a JSONL of MATH-500 problems trained with --eval_tasks math500_think."""
    problems = [d["question"] for d in task_documents("math500_think")[:3]]
    with pytest.raises(QAPackError, match=r"^3 training row\(s\) contain evaluation documents of math500_think"):
        check_no_overlap(_jsonl(tmp_path, problems), "jsonl", ["math500_think"])


def test_pack_only_task_index():
    assert is_pack_only(["recipe_mpr_gen_fold0", "math500_think"]) and not is_pack_only(["hellaswag", "squad_v1"])
    manager = task_manager(["squad_v1"])
    assert manager is task_manager(["recipe_mpr"])  # built once per process
    assert "hellaswag" not in manager.all_tasks and set(pack_tasks()) <= set(manager.all_tasks)
