"""Recipe-MPR: letter parsing, seeded shuffling, multi-label per-type metrics, malformed data."""

from __future__ import annotations

import json
import re
from collections import Counter
from pathlib import Path

import pytest

from qa_tasks import recipe_mpr as r
from qa_tasks.errors import QAPackError

# (reply, parsed letter) — forms seen from chat and base models; None = unparsable (counted invalid)
LETTER_CASES = [
    ("B", "B"), (" B", "B"), ("B.", "B"), ("(B)", "B"), ("[C]", "C"), ("**D**", "D"),
    ("Answer: B", "B"), ("answer: e", None), ("The answer is C.", "C"), ("The answer is (D)", "D"),
    ("B) Greek salad", "B"), ("B. Greek salad with feta", "B"), ("E: Tomato soup", "E"),
    ("A - Oyster soup", "A"), ("Option C", "C"), ("I choose option E because it is warm.", "E"),
    ("Choice: A", "A"), ("C\nbecause it matches", "C"), ("D Warm vegetable soup", "D"),
    ("", None), ("   ", None), ("I am not sure", None), ("F", None), ("a recipe with oysters", None),
    ("None of them", None), ("42", None), ("AB", None),
]


@pytest.mark.parametrize("reply,expected", LETTER_CASES)
def test_parse_letter(reply, expected):
    assert r.parse_letter(reply) == expected


README = Path(__file__).resolve().parent.parent / "tasks_yaml" / "recipe_mpr" / "README.md"


def _readme_letter_table() -> list[tuple[str, str | None]]:
    """The rows of the README's letter table: (reply, letter read or None for the invalid "—")."""
    text = README.read_text(encoding="utf-8")
    table = text[text.index("| reply | letter read | why |"):].split("\n\n")[0]
    rows = re.findall(r"^\| `([^`]*)` \| (\S+) \| .* \|$", table, re.MULTILINE)
    return [(reply.replace("\\n", "\n"), None if letter == "—" else letter) for reply, letter in rows]


@pytest.mark.parametrize("reply,expected", _readme_letter_table())
def test_readme_letter_table(reply, expected):
    assert r.parse_letter(reply) == expected


def test_readme_letter_table_holds_the_issue_examples():
    table = dict(_readme_letter_table())
    assert len(table) >= 20
    for reply in ("A or B", "A, B", "(B) and (C)", "The answer is A or B", "A vegetarian lasagna with spinach",
                  "E.g. the first one"):
        assert table[reply] is None
    assert table["Option A is wrong. The answer is D."] == "D"
    assert table["I think it's C"] == "C" and table["Definitely B"] == "B" and table["Ｂ"] == "B"


# more replies of the same kinds: hedges, explanations that mention other letters, statements
MORE_CASES = [
    ("B, because unlike A it is warm", "B"), ("Answer: B\nOption C would be too cold", "B"),
    ("I'd go with E", "E"), ("The correct answer would be **C**", "C"), ("It is D.", "D"),
    ("Either A or C", None), ("A/B", None), ("Options B and D both fit", None), ("Ｃ）", "C"),
    ("A warm soup. B.", "B"), ("Option B or option C", None), ("A's recipe", None),
]


@pytest.mark.parametrize("reply,expected", MORE_CASES)
def test_parse_letter_more(reply, expected):
    assert r.parse_letter(reply) == expected


def test_shuffle_is_seeded_and_breaks_the_first_position_leak():
    docs = r.build_docs()
    assert len(docs) == 500
    assert [d.options for d in docs] == [d.options for d in r.build_docs()]  # reproducible
    positions = Counter(d.gold_letter for d in docs)
    # in the file the gold is always first; shuffled it lands everywhere, roughly uniformly
    assert set(positions) == set(r.LETTERS)
    assert max(positions.values()) < 0.3 * len(docs), positions
    raw = r.load_records()
    for doc in docs[:50]:
        assert doc.options[doc.gold] == raw[doc.idx]["options"][raw[doc.idx]["answer"]].strip()
        assert sorted(doc.options) == sorted(t.strip() for t in raw[doc.idx]["options"].values())


def test_type_counts_match_the_data_readme():
    counts = Counter(t for d in r.build_docs() for t in d.types)
    assert counts == {"Commonsense": 268, "Specific": 151, "Negated": 109, "Temporal": 32, "Analogical": 30}
    assert sum(1 for d in r.build_docs() if not d.types) == 110


def test_folds_are_disjoint_and_cover_all_queries():
    tests = []
    for k in range(5):
        train = {d.idx for d in r.build_docs(k, "train")}
        test = {d.idx for d in r.build_docs(k, "test")}
        assert len(train) == 400 and len(test) == 100 and not train & test
        tests += sorted(test)
    assert sorted(tests) == list(range(500))


def _aggregate(metric_dicts: list[dict]) -> dict[str, float]:
    """lm-eval's rule: each metric is averaged over the docs that emitted it; n is summed."""
    keys = {k for m in metric_dicts for k in m}
    out = {}
    for k in keys:
        values = [m[k] for m in metric_dicts if k in m]
        out[k] = sum(values) if k == "n" else sum(values) / len(values)
    return out


def test_per_type_accuracy_equals_direct_multilabel_computation():
    docs = r.build_docs()
    replies = [d.gold_letter if d.idx % 3 else "A" for d in docs]  # a mixed, partly wrong model
    scores = [r.score_generation(d, reply) for d, reply in zip(docs, replies)]
    agg = _aggregate(scores)
    for t in r.QUERY_TYPES:
        members = [(d, reply) for d, reply in zip(docs, replies) if t in d.types]
        assert sum(f"acc_{t}" in s for s in scores) == len(members)  # what the leaderboard counts
        assert agg[f"acc_{t}"] == pytest.approx(sum(reply == d.gold_letter for d, reply in members) / len(members))
    assert agg["acc"] == pytest.approx(sum(reply == d.gold_letter for d, reply in zip(docs, replies)) / 500)


def test_generation_metrics_for_invalid_and_position():
    doc = r.build_docs()[0]
    wrong = next(x for x in r.LETTERS if x != doc.gold_letter)
    assert r.score_generation(doc, "no idea")["invalid_rate"] == 1.0
    assert r.score_generation(doc, "no idea")["acc"] == 0.0
    out = r.score_generation(doc, wrong)
    assert out["acc"] == 0.0 and out["invalid_rate"] == 0.0 and out[f"pred_{wrong}"] == 1.0
    assert out[f"acc_gold_{doc.gold_letter}"] == 0.0
    assert not any(k.startswith("acc_gold_") and k != f"acc_gold_{doc.gold_letter}" for k in out)
    assert not any(k.startswith("n_") for k in out)  # counts per position: the leaderboard reads the samples


def test_choice_metrics():
    doc = r.build_docs()[0]
    lls = [-5.0] * 5
    lls[doc.gold] = -1.0
    assert r.score_choice(doc, lls)["acc"] == 1.0
    lls[doc.gold] = -9.0
    assert r.score_choice(doc, lls)["acc"] == 0.0


def _write_qa(tmp_path: Path, records) -> None:
    (tmp_path / "recipe_mpr").mkdir(parents=True, exist_ok=True)
    (tmp_path / "recipe_mpr" / "500QA.json").write_text(json.dumps(records))


def _good_record() -> dict:
    return json.loads(json.dumps(r.load_records()[0]))


@pytest.mark.parametrize("mutate,message", [
    (lambda rec: rec.pop("answer"), "has no 'answer'"),
    (lambda rec: rec.update(answer="nope"), "not among its option ids"),
    (lambda rec: rec["options"].pop(next(iter(rec["options"]))), "has 4 options, expected 5"),
    (lambda rec: rec.update(query_type={"Spicy": 1}), "query_type"),
])
def test_malformed_records_fail_at_load_naming_the_record(tmp_path, monkeypatch, mutate, message):
    bad = _good_record()
    mutate(bad)
    _write_qa(tmp_path, [_good_record(), bad])
    monkeypatch.setenv("QA_PACK_DATA_DIR", str(tmp_path))
    r.load_records.cache_clear()
    try:
        with pytest.raises(QAPackError, match=message) as err:
            r.load_records()
        assert "record 1 " in str(err.value) and "\n" not in str(err.value)
    finally:
        r.load_records.cache_clear()


@pytest.mark.parametrize("fold", [7, -1, "x", 1.7, True, "1.0", [1]])
def test_bad_fold_value(fold):
    with pytest.raises(QAPackError, match=r"fold=.* is not valid; use an integer \(0\.\.4\)") as err:
        r.build_docs(fold)
    assert "\n" not in str(err.value)


@pytest.mark.parametrize("fold,expected", [(None, None), ("", None), ("all", None), (0, 0), (4, 4), ("3", 3)])
def test_fold_option(fold, expected):
    assert r.fold_option(fold) == expected


@pytest.mark.parametrize("fold,task_fold,expected", [(None, None, None), (2, None, 2), (None, 1, 1), (1, 1, 1),
                                                     ("1", 1, 1), (2, 1, "is fold 1, but --metadata sets fold=2")])
def test_run_fold(fold, task_fold, expected):
    if isinstance(expected, str):
        with pytest.raises(QAPackError, match=expected):
            r.run_fold(fold, task_fold, "recipe_mpr_gen_fold1")
        with pytest.raises(QAPackError, match=expected):
            r.preflight("recipe_mpr_gen_fold1", {"fold": fold})
    else:
        assert r.run_fold(fold, task_fold) == expected
