"""Official SQuAD v1.1 EM/F1 on hand-checked cases, plus tag extraction, lenient match, all-in-one
lines and planner validation. F1 values were worked out by hand from the token bags
(P = common/pred tokens, R = common/gold tokens, F1 = 2PR/(P+R))."""

import pytest

from qa_tasks.squad import metrics as m

D, B = "Denver Broncos", "Broncos"
# (case, prediction, golds, official EM, official F1)
OFFICIAL = [
    ("exact", D, [D], 1, 1.0),
    ("lowercase", "denver broncos", [D], 1, 1.0),
    ("leading_article", "The Denver Broncos", [D], 1, 1.0),
    ("trailing_period", "Denver Broncos.", [D], 1, 1.0),
    ("extra_spaces", "  Denver   Broncos ", [D], 1, 1.0),
    ("partial_prefix", B, [D], 0, 2 / 3),
    ("extra_word", "the Denver Broncos team", [D], 0, 0.8),
    ("wrong_team", "Carolina Panthers", [D], 0, 0.0),
    ("empty_prediction", "", [D], 0, 0.0),
    ("second_gold_first", "Santa Clara, California", ["Santa Clara, California", "Levi's Stadium"], 1, 1.0),
    ("second_gold", "Levi's Stadium", ["Santa Clara, California", "Levi's Stadium"], 1, 1.0),
    ("apostrophe_dropped", "Levis Stadium", ["Levi's Stadium"], 1, 1.0),
    ("max_over_golds", "Stadium", ["Levi's Stadium", "Santa Clara"], 0, 2 / 3),
    ("article_an", "an apple", ["apple"], 1, 1.0),
    ("only_article_em_but_no_f1", "A", ["a"], 1, 0.0),
    ("only_the", "the", ["The"], 1, 0.0),
    ("article_in_gold", "theory", ["the theory"], 1, 1.0),
    ("them_is_not_article", "them", ["them"], 1, 1.0),
    ("an_inside_word", "another", ["other"], 0, 0.0),
    ("hyphen_joins", "A-B", ["AB"], 1, 1.0),
    ("space_splits_article", "A B", ["AB"], 0, 0.0),
    ("thousands_comma", "1,000", ["1000"], 1, 1.0),
    ("dollar_sign", "$5 million", ["5 million"], 1, 1.0),
    ("unit_word", "5 million dollars", ["$5 million"], 0, 0.8),
    ("decade_not_year", "1990s", ["1990"], 0, 0.0),
    ("preposition", "in 1990", ["1990"], 0, 2 / 3),
    ("repeated_pred", "Paris Paris", ["Paris"], 0, 2 / 3),
    ("repeated_gold", "Paris", ["Paris Paris"], 0, 2 / 3),
    ("bag_counts", "new york new york", ["new york"], 0, 2 / 3),
    ("article_dropped_from_gold", "B C D", ["A B C"], 0, 0.8),
    ("unicode_same", "Ünïcode café", ["ünïcode café"], 1, 1.0),
    ("unicode_lower", "CAFÉ", ["café"], 1, 1.0),
    ("curly_quotes_kept", "\u201cquoted\u201d", ["quoted"], 0, 0.0),
    ("em_dash_kept", "\u2014dash", ["dash"], 0, 0.0),
    ("hyphenated_pred", "rock-and-roll", ["rock and roll"], 0, 0.0),
    ("hyphenated_gold", "rock and roll", ["rock-and-roll"], 0, 0.0),
    ("abbreviation_dots", "U.S.", ["US"], 1, 1.0),
    ("abbreviation_vs_words", "U.S. Army", ["United States Army"], 0, 0.4),
    ("short_gold_matches", "Tesla", ["Nikola Tesla", "Tesla"], 1, 1.0),
    ("first_name_only", "Nikola", ["Nikola Tesla", "Tesla"], 0, 2 / 3),
    ("digit_vs_word", "three", ["3"], 0, 0.0),
    ("articles_only", "the the the", ["the"], 1, 0.0),
    ("answer_prefix", "Answer: Paris", ["Paris"], 0, 2 / 3),
    ("newline_whitespace", "paris\nfrance", ["Paris, France"], 1, 1.0),
    ("long_pred", "a b c d e", ["c"], 0, 0.4),
    ("long_gold", "c", ["a b c d e"], 0, 0.4),
    ("any_gold", "Denver", [D, "Denver", B], 1, 1.0),
    ("order_ignored_by_f1", "Broncos Denver", [D], 0, 1.0),
    ("best_of_two_partial", "x y z w", ["x y", "z w v"], 0, 2 / 3),
    ("am_not_article", "a.m.", ["am"], 1, 1.0),
    ("capital_an", "An", ["an"], 1, 0.0),
    ("possessive", "The Beatles' song", ["Beatles song"], 1, 1.0),
    ("title_and_possessive", "Mr. Smith's", ["Mr Smiths"], 1, 1.0),
    ("percent", "100%", ["100"], 1, 1.0),
    ("parentheses", "(1990)", ["1990"], 1, 1.0),
    ("conjunction", "Virginia and Maryland", ["Maryland"], 0, 0.5),
    ("conjunction_swapped", "Maryland and Virginia", ["Virginia and Maryland"], 0, 1.0),
    ("anthem_not_article", "ANTHEM", ["anthem"], 1, 1.0),
    ("aka", "a.k.a", ["aka"], 1, 1.0),
    ("year_phrase", "in the year 1066", ["1066"], 0, 0.5),
    ("hyphenated_name", "Jean-Luc", ["Jean Luc"], 0, 0.0),
    ("over_prefix", "over 1 million", ["1 million"], 0, 0.8),
]


@pytest.mark.parametrize("case,pred,golds,em,f1", OFFICIAL, ids=[c[0] for c in OFFICIAL])
def test_official_em_f1(case, pred, golds, em, f1):
    assert m.exact_match(pred, golds) == em
    assert m.f1(pred, golds) == pytest.approx(f1, abs=1e-9)


def test_table_is_large_enough():
    assert len(OFFICIAL) >= 50


@pytest.mark.parametrize("text,expected", [
    ("the  Denver, Broncos!", "denver broncos"),
    ("An Apple a Day", "apple day"),
    ("Hello\tworld\n", "hello world"),
    ("'quoted'", "quoted"),
])
def test_normalize(text, expected):
    assert m.normalize_answer(text) == expected


@pytest.mark.parametrize("reply,expected", [
    ("<answer>Paris</answer>", ("Paris", True)),
    ("I think <answer> Paris </answer>.", ("Paris", True)),
    ("<answer>Rome</answer> no, <answer>Paris</answer>", ("Paris", True)),  # the last complete pair
    ("<answer>\nmulti\nline\n</answer>", ("multi\nline", True)),
    ("<ANSWER>Paris</ANSWER>", ("Paris", True)),  # tags in any case
    ("<Answer>Paris</answer >", ("Paris", True)),
    ("<answer>Paris", ("Paris", False)),  # unclosed: the rest of the reply, the tag dropped, not complete
    ("It is <answer>Denver\nBroncos", ("Denver\nBroncos", False)),
    ("<answer>Rome</answer> <answer>Paris", ("Rome", True)),  # a complete pair wins over a cut-off one
    ("  Paris \n", ("Paris", False)),
    ("<answer></answer>", ("", True)),
])
def test_extract_answer(reply, expected):
    assert m.extract_answer(reply) == expected


# (case, prediction, golds, lenient on words, lenient_substring on characters)
LENIENT = [
    ("gold_inside_prediction", "Denver Broncos", ["Broncos"], 1.0, 1.0),
    ("prediction_inside_gold", "Broncos", ["Denver Broncos"], 1.0, 1.0),
    ("after_normalisation", "The Broncos!", ["broncos"], 1.0, 1.0),
    ("empty_prediction", "", ["Denver"], 0.0, 0.0),  # never counts (the study's code let it)
    ("only_article", "the", ["the Denver"], 0.0, 0.0),  # normalizes to empty
    ("different", "Carolina", ["Denver"], 0.0, 0.0),
    ("empty_gold_skipped", "x", ["", "x y"], 1.0, 1.0),
    ("word_prefix", "Den", ["Denver"], 0.0, 1.0),  # part of a word is not a word
    ("one_letter", "D", ["inherent difficulty"], 0.0, 1.0),  # the constant-letter exploit
    ("one_letter_word", "D", ["Vitamin D"], 1.0, 1.0),
    ("article_letter", "A", ["a cat"], 0.0, 0.0),  # the article is dropped: an empty prediction
    ("contiguous_run", "Santa Clara", ["Levi's Stadium in Santa Clara, California"], 1.0, 1.0),
    ("not_contiguous", "Stadium California", ["Levi's Stadium in Santa Clara, California"], 0.0, 0.0),
    ("word_order", "Broncos Denver", ["Denver Broncos"], 0.0, 0.0),
    ("sentence_holds_gold", "The answer is Denver Broncos.", ["Denver Broncos"], 1.0, 1.0),
    ("number_inside_number", "10", ["24-10"], 0.0, 1.0),  # "24-10" normalizes to the one word "2410"
    ("year_inside_year", "199", ["1990"], 0.0, 1.0),
    ("second_gold", "Levi's", ["Santa Clara", "Levi's Stadium"], 1.0, 1.0),
    ("whole_words_across_punctuation", "U.S. Army", ["the US Army base"], 1.0, 1.0),
]


@pytest.mark.parametrize("case,pred,golds,words,chars", LENIENT, ids=[c[0] for c in LENIENT])
def test_lenient(case, pred, golds, words, chars):
    assert m.lenient(pred, golds) == words
    assert m.lenient_substring(pred, golds) == chars


ALL = ("em", "em_official", "f1", "lenient", "lenient_substring")


@pytest.mark.parametrize("reply,expected", [
    ("<answer>Denver Broncos</answer>", (1, 1, 1, 1, 1)),
    ("<ANSWER>Denver Broncos</ANSWER>", (1, 1, 1, 1, 1)),  # upper-case tags are tags
    ("Denver Broncos", (0, 1, 1, 1, 1)),  # no tags: em 0
    ("It is <answer>Denver</answer>", (0, 0, 2 / 3, 1, 1)),
    ("<answer>Denver Broncos", (0, 1, 1, 1, 1)),  # cut off before </answer>: the tag is not fused into a word
    ("<answer></answer>", (0, 0, 0, 0, 0)),
    (None, (0, 0, 0, 0, 0)),  # missing answer
    ("The answer is Denver Broncos.", (0, 0, 2 / 3, 1, 1)),
    ("<answer>D</answer>", (0, 0, 0, 0, 1)),  # one letter: lenient_substring is gamed, lenient is not
    ("<answer>X</answer>", (0, 0, 0, 0, 0)),
])
def test_score_answer(reply, expected):
    assert m.score_answer(reply, ["Denver Broncos"]) == pytest.approx(dict(zip(ALL, expected)))


QIDS = ["Q1", "Q2", "Q3"]
A, B, C = "<answer>a</answer>", "<answer>b</answer>", "<answer>c</answer>"


@pytest.mark.parametrize("case,reply,expected", [
    ("one_per_line", f"Q1: {A}\nQ2: {B}\nQ3: {C}", {"Q1": A, "Q2": B, "Q3": C}),
    ("missing_id", f"Q1: {A}\nQ3: {C}", {"Q1": A, "Q2": None, "Q3": C}),
    ("markdown_and_case", "q2) b\n**Q3:** c", {"Q1": None, "Q2": "b", "Q3": "c"}),
    ("first_label_wins", "Q1: first\nQ1: second", {"Q1": "first", "Q2": None, "Q3": None}),
    ("unknown_and_padded_ids", "Q7: x\nQ01: y", {"Q1": "y", "Q2": None, "Q3": None}),
    ("no_labels", "Sure! Here are the answers.", {"Q1": None, "Q2": None, "Q3": None}),
    ("one_line", f"Q1: {A} Q2: {B} Q3: {C}", {"Q1": A, "Q2": B, "Q3": C}),
    ("one_line_separators", f"Q1: {A}; Q2: {B}, Q3: {C}", {"Q1": f"{A};", "Q2": f"{B},", "Q3": C}),
    ("answer_on_next_line", f"Q1:\n{A}\nQ2:\n{B}\nQ3:\n{C}", {"Q1": A, "Q2": B, "Q3": C}),
    ("multi_line_answer", "Q1: <answer>first\nsecond</answer>\nQ2: b", {"Q1": "<answer>first\nsecond</answer>",
                                                                       "Q2": "b", "Q3": None}),
    ("upper_case_tags", "Q1: <ANSWER>a</ANSWER>", {"Q1": "<ANSWER>a</ANSWER>", "Q2": None, "Q3": None}),
    ("label_inside_word_ignored", "Q1: IQ2: x", {"Q1": "IQ2: x", "Q2": None, "Q3": None}),
])
def test_parse_all_in_one(case, reply, expected):
    assert m.parse_all_in_one(reply, QIDS) == expected


@pytest.mark.parametrize("reply", [
    "Q1: <answer>Denver Broncos</answer> Q2: <answer>Santa Clara</answer> Q3: <answer>24-10</answer>",
    "Q1:\n<answer>Denver Broncos</answer>\nQ2:\n<answer>Santa Clara</answer>\nQ3:\n<answer>24-10</answer>",
    "Q1: <ANSWER>Denver\nBroncos</ANSWER>\nQ2: <answer>Santa Clara</answer>\nQ3: <answer>24-10",
])
def test_all_in_one_layouts_score_em_one(reply):
    golds = {"Q1": ["Denver Broncos"], "Q2": ["Santa Clara"], "Q3": ["24-10"]}
    parsed = m.parse_all_in_one(reply, QIDS)
    scores = [m.score_answer(parsed[q], golds[q]) for q in QIDS]
    assert all(s["em_official"] == 1.0 and s["f1"] == 1.0 for s in scores)
    # the cut-off last answer (no </answer>) is read but not counted as the tagged format
    assert [s["em"] for s in scores] == [1.0, 1.0, 0.0 if reply.endswith("24-10") else 1.0]


@pytest.mark.parametrize("reply,order,links,failure", [
    ('{"order": ["Q3", "Q1", "Q2"], "links": {"Q2": ["Q3"]}}', ("Q3", "Q1", "Q2"), {"Q2": ("Q3",)}, None),
    ('```json\n{"order": ["Q2", "Q1", "Q3"]}\n```', ("Q2", "Q1", "Q3"), {}, None),
    ('Plan: {"order": ["Q1", "Q2", "Q3"], "links": {"Q3": "Q1"}} done', ("Q1", "Q2", "Q3"), {"Q3": ("Q1",)}, None),
    ("ask them in order", QIDS, {}, "invalid JSON"),
    ('{"order": "Q1,Q2,Q3"}', QIDS, {}, "no 'order' list"),
    ('{"order": ["Q1", "Q2", "Q4"]}', QIDS, {}, "unknown ids"),
    ('{"order": ["Q1", "Q1", "Q2"]}', QIDS, {}, "duplicate ids"),
    ('{"order": ["Q1", "Q2"]}', QIDS, {}, "missing ids"),
    ('{"order": ["Q1", "Q2", "Q3"], "links": {"Q2": ["Q2"]}}', QIDS, {}, "links to itself"),
    ('{"order": ["Q1", "Q2", "Q3"], "links": {"Q1": ["Q2"], "Q2": ["Q1"]}}', QIDS, {}, "cycle"),
    ('{"order": ["Q1", "Q2", "Q3"], "links": {"Q1": ["Q3"]}}', QIDS, {}, "asked after"),
    ('{"order": ["Q1", "Q2", "Q3"], "links": {"Q9": ["Q1"]}}', QIDS, {}, "unknown ids"),
])
def test_parse_planner(reply, order, links, failure):
    plan = m.parse_planner(reply, QIDS)
    assert plan.order == tuple(order)
    assert plan.links == links
    if failure is None:
        assert not plan.failed
    else:
        assert plan.failed and failure in plan.failure


# --- hostile replies: nested, empty, cut and stray tags, labels inside answers, odd unicode, huge replies ----

# (case, reply, (answer text, tags complete))
HOSTILE_EXTRACT = [
    ("issue_nested_tags", "<answer>a <answer>b</answer></answer>", ("b", True)),
    ("nested_tags_text_after_inner", "<answer>a <answer>b</answer> c</answer>", ("b", True)),
    ("nested_after_a_complete_pair", "<answer>Rome</answer> <answer>Paris</answer></answer>", ("Paris", True)),
    ("stray_close_after_pair", "<answer>a</answer>b</answer>", ("a", True)),
    ("empty_pair_echoed_after_answer", "<answer>Paris</answer> as in <answer></answer>", ("Paris", True)),
    ("blank_pair_after_answer", "<answer>Paris</answer><answer> \n </answer>", ("Paris", True)),
    ("only_empty_pairs", "<answer></answer><answer>  </answer>", ("", True)),
    ("close_tag_only", "Paris</answer>", ("Paris", False)),
    ("close_tag_only_upper_case", "Paris</ANSWER> and more", ("Paris", False)),
    ("close_tag_alone", "</answer>", ("", False)),
    ("open_tag_alone", "<answer>", ("", False)),
    ("cut_inside_close_tag", "<answer>Paris</ans", ("Paris", False)),
    ("cut_after_close_slash", "<answer>Paris</", ("Paris", False)),
    ("cut_before_close_bracket", "<answer>Paris</answer", ("Paris", False)),
    ("lone_angle_bracket_kept", "<answer>Paris<", ("Paris<", False)),
    ("tags_with_spaces_and_case", "< Answer >Paris< / ANSWER >", ("Paris", True)),
    ("not_an_answer_tag", "<answers>Paris</answers>", ("<answers>Paris</answers>", False)),
    ("unicode_spaces_stripped", "<answer>\u00a0Paris\u2003</answer>", ("Paris", True)),
    ("zero_width_space_kept", "<answer>\u200b</answer>", ("\u200b", True)),
    ("many_opens_then_answer", "<answer>" * 100_000 + "Paris</answer>", ("Paris", True)),
    ("many_opens_no_close", "<answer>" * 100_000, ("", False)),
    ("many_closes", "</answer>" * 100_000, ("", False)),
    ("many_pairs", "<answer>Paris</answer>" * 50_000, ("Paris", True)),
]


@pytest.mark.parametrize("case,reply,expected", HOSTILE_EXTRACT, ids=[c[0] for c in HOSTILE_EXTRACT])
def test_extract_answer_hostile(case, reply, expected):
    assert m.extract_answer(reply) == expected


LONG = "<answer>" + "Denver Broncos " * 10_000 + "</answer>"
# (case, reply, (em, em_official, f1, lenient, lenient_substring)) against the gold "Denver Broncos"
HOSTILE_SCORES = [
    ("issue_nested_tags", "<answer>The team: <answer>Denver Broncos</answer></answer>", (1, 1, 1, 1, 1)),
    ("close_tag_only", "Denver Broncos</answer>", (0, 1, 1, 1, 1)),
    ("cut_inside_close_tag", "<answer>Denver Broncos</ans", (0, 1, 1, 1, 1)),
    ("empty_pair_after_answer", "<answer>Denver Broncos</answer> <answer></answer>", (1, 1, 1, 1, 1)),
    ("mixed_case_tags", "<ANSWER>denver broncos</answer>", (1, 1, 1, 1, 1)),
    ("blank_pair", "<answer> </answer>", (0, 0, 0, 0, 0)),
    ("empty_reply", "", (0, 0, 0, 0, 0)),
    ("zero_width_space_answer", "<answer>\u200b</answer>", (0, 0, 0, 0, 0)),  # invisible, never correct
    ("zero_width_space_joins_words", "<answer>Denver\u200bBroncos</answer>", (0, 0, 0, 0, 0)),  # official
    ("full_width_letters", "<answer>\uff24\uff25\uff2e\uff36\uff25\uff32 Broncos</answer>", (0, 0, 0.5, 0, 0)),
    ("punctuation_only", "<answer>?!.</answer>", (0, 0, 0, 0, 0)),
    ("articles_only", "<answer>the a an</answer>", (0, 0, 0, 0, 0)),
    ("huge_repeated_answer", LONG, (0, 0, 2 * (2 / 20_000) / (2 / 20_000 + 1), 1, 1)),
]


@pytest.mark.parametrize("case,reply,expected", HOSTILE_SCORES, ids=[c[0] for c in HOSTILE_SCORES])
def test_score_answer_hostile(case, reply, expected):
    assert m.score_answer(reply, ["Denver Broncos"]) == pytest.approx(dict(zip(ALL, expected)))


NONE3 = {"Q1": None, "Q2": None, "Q3": None}
# (case, reply, parsed replies)
HOSTILE_ALL_IN_ONE = [
    ("issue_label_inside_other_answer", "Q1: <answer>x Q2: y</answer> Q2: <answer>z</answer>",
     {**NONE3, "Q1": "<answer>x Q2: y</answer>", "Q2": "<answer>z</answer>"}),
    ("label_only_inside_other_answer", "Q1: <answer>x Q2: y</answer>", {**NONE3, "Q1": "<answer>x Q2: y</answer>"}),
    ("label_inside_text_before_tags", "Q1: It is <answer>x Q3: y</answer>\nQ3: <answer>z</answer>",
     {**NONE3, "Q1": "It is <answer>x Q3: y</answer>", "Q3": "<answer>z</answer>"}),
    ("label_inside_unclosed_answer", "Q1: <answer>x Q2: <answer>y</answer>",
     {**NONE3, "Q1": "<answer>x", "Q2": "<answer>y</answer>"}),
    ("whole_reply_in_one_pair", "<answer>Q1: a Q2: b</answer>", {**NONE3, "Q1": "a", "Q2": "b</answer>"}),
    ("nested_tags_per_question", "Q1: <answer>a <answer>b</answer></answer>\nQ2: <answer>c</answer>",
     {**NONE3, "Q1": "<answer>a <answer>b</answer></answer>", "Q2": "<answer>c</answer>"}),
    ("empty_tags", "Q1: <answer></answer> Q2: <answer></answer>",
     {**NONE3, "Q1": "<answer></answer>", "Q2": "<answer></answer>"}),
    ("label_with_huge_number", "Q" + "9" * 5000 + ": x\nQ1: a", {**NONE3, "Q1": "a"}),
    ("long_markdown_run", "*" * 100_000 + "Q1: a", {**NONE3, "Q1": "a"}),
    ("markdown_run_after_a_word", "end**Q2:** b", {**NONE3, "Q2": "b"}),
    ("empty_reply", "", NONE3),
]


@pytest.mark.parametrize("case,reply,expected", HOSTILE_ALL_IN_ONE, ids=[c[0] for c in HOSTILE_ALL_IN_ONE])
def test_parse_all_in_one_hostile(case, reply, expected):
    assert m.parse_all_in_one(reply, QIDS) == expected


def test_issue_label_inside_other_answer_scores_what_each_question_was_given():
    parsed = m.parse_all_in_one("Q1: <answer>x Q2: y</answer> Q2: <answer>z</answer>", ["Q1", "Q2"])
    assert m.score_answer(parsed["Q1"], ["x"]) == pytest.approx(dict(zip(ALL, (0, 0, 0.5, 1, 1))))
    assert m.score_answer(parsed["Q2"], ["z"]) == pytest.approx(dict(zip(ALL, (1, 1, 1, 1, 1))))
    assert m.score_answer(parsed["Q2"], ["y"]) == pytest.approx(dict(zip(ALL, (0, 0, 0, 0, 0))))


@pytest.mark.parametrize("reply", ["<answer>" * 100_000, "*" * 100_000, "Q" + "*" * 100_000, "< " * 100_000,
                                   "Q1: <answer>x</answer> " * 20_000], ids=["opens", "stars", "q-stars", "brackets",
                                                                           "labels"])
def test_huge_replies_are_read_in_linear_time(reply):
    """Each of these took from seconds to minutes when tags or markdown runs were rescanned from every start."""
    import time

    start = time.perf_counter()
    m.score_answer(reply, ["x"])
    m.parse_all_in_one(reply, QIDS)
    assert time.perf_counter() - start < 2.0
