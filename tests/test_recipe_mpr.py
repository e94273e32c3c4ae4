"""Recipe-MPR: letter parsing, seeded shuffling, multi-label per-type metrics, malformed data."""

from __future__ import annotations

import json
import re
import unicodedata
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


def _first_id(rec: dict) -> str:
    return next(iter(rec["options"]))


def _second_id(rec: dict) -> str:
    return list(rec["options"])[1]


# (case, change to a real record, what the one-line error says)
MALFORMED_RECORDS = [
    ("no_answer", lambda rec: rec.pop("answer"), "has no 'answer'"),
    ("unknown_answer_id", lambda rec: rec.update(answer="nope"), "not among its option ids"),
    ("four_options", lambda rec: rec["options"].pop(_first_id(rec)), "has 4 options, expected 5"),
    ("unknown_query_type", lambda rec: rec.update(query_type={"Spicy": 1}), "query_type"),
    # issue: an answer that is not one option id string was a TypeError traceback (unhashable list)
    ("issue_answer_list_of_one_id", lambda rec: rec.update(answer=[rec["answer"]]),
     (r"has answer \['08cb462fdf'\] \(list\), expected the id of its correct option as a string \(one of "
      r"'08cb462fdf', .*\); write \"answer\": \"08cb462fdf\"$")),
    ("answer_list_of_two_ids", lambda rec: rec.update(answer=[rec["answer"], _second_id(rec)]),
     r"\(list\), expected the id of its correct option as a string \(one of [^;]*\)$"),
    ("answer_empty_list", lambda rec: rec.update(answer=[]), r"has answer \[\] \(list\)"),
    ("answer_nested_list", lambda rec: rec.update(answer=[[rec["answer"]]]), r"\(list\), expected the id"),
    ("answer_object", lambda rec: rec.update(answer={"id": rec["answer"]}), r"\(dict\), expected the id"),
    ("answer_null", lambda rec: rec.update(answer=None), r"has answer None \(NoneType\)"),
    ("answer_index", lambda rec: rec.update(answer=0), r"has answer 0 \(int\)"),
    ("answer_huge_list", lambda rec: rec.update(answer=[rec["answer"]] * 10_000), r"has answer \['08cb.*\.\.\. \(list\)"),
    # issue: two options with one text (the model would see one recipe under two letters)
    ("two_options_same_text", lambda rec: rec["options"].update({_second_id(rec): rec["options"][_first_id(rec)]}),
     "has options '08cb462fdf' and '5b9441298f' with the same text 'Simple creamy oyster soup'"),
    ("same_text_but_spacing", lambda rec: rec["options"].update({_second_id(rec): "  Simple  creamy oyster soup\n"}),
     "with the same text 'Simple creamy oyster soup'"),
    ("two_wrong_options_same_text", lambda rec: rec["options"].update({list(rec["options"])[4]: rec["options"][
        list(rec["options"])[3]]}), "has options '8635ea3d3c' and '52b83497d8' with the same text"),
    ("option_text_null", lambda rec: rec["options"].update({_second_id(rec): None}),
     "has option '5b9441298f' with text None, expected a recipe text"),
    ("option_text_blank", lambda rec: rec["options"].update({_second_id(rec): " \t"}), r"with text ' \\t'"),
    ("options_list", lambda rec: rec.update(options=list(rec["options"].values())), "has no options, expected 5"),
    ("query_null", lambda rec: rec.update(query=None), r"record 1 \('None'\) has query None, expected the query text"),
    ("query_blank", lambda rec: rec.update(query=""), r"record 1 \(''\) has query '', expected the query text"),
    ("query_type_flag_text", lambda rec: rec["query_type"].update(Specific="1"), "has query_type .* 0/1 flags"),
    ("query_type_flag_null", lambda rec: rec["query_type"].update(Negated=None), "has query_type .* 0/1 flags"),
    ("query_type_list", lambda rec: rec.update(query_type=["Specific"]), "has query_type \\['Specific'\\]"),
]


@pytest.mark.parametrize("case,mutate,message", MALFORMED_RECORDS, ids=[c[0] for c in MALFORMED_RECORDS])
def test_malformed_records_fail_at_load_naming_the_record(tmp_path, monkeypatch, case, mutate, message):
    bad = _good_record()
    mutate(bad)
    _write_qa(tmp_path, [_good_record(), bad])
    monkeypatch.setenv("QA_PACK_DATA_DIR", str(tmp_path))
    r.load_records.cache_clear()
    try:
        with pytest.raises(QAPackError, match=message) as err:
            r.load_records()
        text = str(err.value)
        assert "record 1 (" in text and "\n" not in text
        assert "('I want to make a warm dish containing oysters')" in text or case.startswith("query_")
        assert len(text) < 400
    finally:
        r.load_records.cache_clear()


@pytest.mark.parametrize("record,message", [
    (None, r"record 1 \('\?'\) is not a JSON object"), (["query"], r"record 1 \('\?'\) is not a JSON object"),
    ({"query": "a\nb" * 1000, "options": {}, "answer": "x", "query_type": {}}, r"record 1 \('a\\nba.*\.\.\.\) has 0 options"),
])
def test_records_that_are_not_objects_or_hold_odd_text_are_one_line(tmp_path, monkeypatch, record, message):
    _write_qa(tmp_path, [_good_record(), record])
    monkeypatch.setenv("QA_PACK_DATA_DIR", str(tmp_path))
    r.load_records.cache_clear()
    try:
        with pytest.raises(QAPackError, match=message) as err:
            r.load_records()
        assert "\n" not in str(err.value)
    finally:
        r.load_records.cache_clear()


def test_real_file_has_one_string_answer_and_distinct_option_texts_per_record():
    """Why a list answer and a repeated option text are errors, not something to accept: none of the 500 has one."""
    for rec in r.load_records():
        assert isinstance(rec["answer"], str)
        shown = [" ".join(unicodedata.normalize("NFKC", t).casefold().split()) for t in rec["options"].values()]
        assert len(set(shown)) == 5


@pytest.mark.slow
def test_list_answer_is_one_line_in_lm_eval_before_the_model_loads(tmp_path):
    from tests.toolkit.env import lm_eval_env
    from tests.toolkit.lm_eval_runs import run_lm_eval

    records = json.loads(json.dumps(r.load_records()[:3]))
    records[2]["answer"] = [records[2]["answer"]]
    _write_qa(tmp_path, records)
    proc, _ = run_lm_eval(["run", "--model", "hf", "--model_args", "pretrained=/nonexistent/model",
                           "--tasks", "recipe_mpr_gen"], env=lm_eval_env(QA_PACK_DATA_DIR=str(tmp_path)), check=False)
    errors = [line for line in proc.stderr.splitlines() if line.startswith("error:")]
    assert proc.returncode == 2 and len(errors) == 1 and "Traceback" not in proc.stderr
    assert "record 2 (" in errors[0] and "(list), expected the id of its correct option as a string" in errors[0]


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
