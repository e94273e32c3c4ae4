"""Recipe-MPR scorers: the letter a reply chooses, and per-query metric dicts for lm-eval."""

from __future__ import annotations

import re
import unicodedata

from qa_tasks.recipe_mpr.data import LETTERS, RecipeDoc

# A letter as an answer: a capital A-E standing alone (markdown, brackets and quotes around it are fine),
# not the start of a word or of an abbreviation ("E.g.", "A's").
_L = r"[(\[*\"']*(?<![A-Za-z0-9])([A-E])(?![A-Za-z0-9]|\.[A-Za-z]|'[a-z])[)\]*\"'.:]*"
# More letters offered next to one: "A or B", "A, B", "(B) and (C)", "A/B"
_MORE = re.compile(rf"\s*(?:,|/|&|\bor\b|\band\b)\s*(?i:(?:option|choice)\s+)?{_L}")
# Explicit statements of the answer, strongest first; the first kind present decides.
_STATEMENTS = [
    re.compile(rf"(?i:\b(?:answer|choice|option|pick|selection)(?:\s+(?:here|would|will|should|must))?"
               rf"\s*(?:\bis\b|\bbe\b|:|=|-)\s*(?:(?:option|choice)\s+)?){_L}"),  # "The answer is C"
    re.compile(rf"(?i:\b(?:i\s+(?:would\s+|will\s+|'d\s+|'ll\s+)?)?(?:choose|chose|pick|select|go\s+with)"
               rf"\s+(?:(?:option|choice)\s+)?){_L}"),  # "I'd go with B"
    re.compile(rf"(?i:\b(?:it['’]s|it\s+is|that['’]s|that\s+is)\s+(?:(?:option|choice)\s+)?){_L}"),  # "it's C"
    re.compile(rf"(?i:\b(?:option|choice)\s+){_L}"),  # "Option C"
]
_LEADING = re.compile(rf"^\s*{_L}")
_ANY = re.compile(_L)
# "A" that opens a sentence and is followed by a lower-case word is the article ("A vegetarian lasagna"),
# unless that word is one a letter answer is followed by ("A is the one", "A because ...").
_ARTICLE = re.compile(r"(?:^|(?<=[.!?\n])\s*)\s*(A) (?!(?:is|was|fits|matches|satisfies|seems|because|since|as|"
                      r"or|and)\b)[a-z]")


def _offered(pattern: re.Pattern, text: str, skip: set[int]) -> set[str]:
    """Letters of every match of ``pattern`` (with the alternatives listed after each), except matches
    whose letter sits at a position in ``skip``."""
    letters: set[str] = set()
    for match in pattern.finditer(text):
        if match.start(1) in skip:
            continue
        letters.add(match.group(1))
        end = match.end()
        while more := _MORE.match(text, end):
            letters.add(more.group(1))
            end = more.end()
    return letters


def parse_letter(text: str) -> str | None:
    """The option letter a reply chooses, or None when it names none or offers several (rules and examples
    in tasks_yaml/recipe_mpr/README.md): an explicit statement ("The answer is C", "Option C") wins, then a
    leading letter ("B) Greek salad"), then the only letter standing alone anywhere ("Definitely B")."""
    text = unicodedata.normalize("NFKC", text).strip()  # full-width "Ｂ" -> "B"
    articles = {m.start(1) for m in _ARTICLE.finditer(text)}
    for pattern in (*_STATEMENTS, _LEADING):
        letters = _offered(pattern, text, articles)
        if letters:
            return letters.pop() if len(letters) == 1 else None
    letters = {m.group(1) for m in _ANY.finditer(text) if m.start(1) not in articles}
    return letters.pop() if len(letters) == 1 else None


# --- scorers: pure functions, results as lm-eval metric dicts ------------------------------------

def _type_metrics(types: tuple[str, ...], correct: float) -> dict[str, float]:
    """acc_<type> only for the types the query has, so each is averaged over its own queries (and the
    samples log says which queries stand behind it: the leaderboard counts them there)."""
    return {f"acc_{t}": correct for t in types}


def score_choice(doc: RecipeDoc, loglikelihoods: list[float]) -> dict[str, float]:
    """Metrics of the loglikelihood task: argmax option (acc) and its char-length-normalised form."""
    pred = max(range(len(loglikelihoods)), key=loglikelihoods.__getitem__)
    norm = [ll / max(len(text), 1) for ll, text in zip(loglikelihoods, doc.options)]
    pred_norm = max(range(len(norm)), key=norm.__getitem__)
    correct = float(pred == doc.gold)
    return {"acc": correct, "acc_norm": float(pred_norm == doc.gold), "n": 1.0, **_type_metrics(doc.types, correct)}


def score_generation(doc: RecipeDoc, reply: str) -> dict[str, float]:
    """Metrics of the generative task, with the position-bias diagnostics."""
    letter = parse_letter(reply)
    correct = float(letter == doc.gold_letter)
    out = {"acc": correct, "invalid_rate": float(letter is None), "n": 1.0, **_type_metrics(doc.types, correct)}
    out[f"acc_gold_{doc.gold_letter}"] = correct  # accuracy by position of the gold letter
    out.update({f"pred_{x}": float(letter == x) for x in LETTERS})  # share of each predicted letter
    return out

