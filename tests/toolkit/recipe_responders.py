"""Scripted answers for Recipe-MPR: read the prompt, look the query up in the data, answer."""

from __future__ import annotations

import functools
import re

from qa_tasks import recipe_mpr as r


@functools.lru_cache(maxsize=1)
def _docs_by_query() -> dict[str, r.RecipeDoc]:
    return {d.query: d for d in r.build_docs()}


def _doc_for(context: str) -> r.RecipeDoc:
    match = re.search(r"Query: (.*)", context)
    assert match, f"no query in prompt: {context[:200]!r}"
    return _docs_by_query()[match.group(1).strip()]


class Gold:
    """Answers the gold letter (formatted by ``style``); gives the gold option the top loglikelihood."""

    def __init__(self, style: str = "{letter}") -> None:
        self.style = style

    def generate(self, context: str, gen_kwargs: dict) -> str:
        return self.style.format(letter=_doc_for(context).gold_letter)

    def loglikelihood(self, context: str, continuation: str) -> float:
        doc = _doc_for(context)
        return 0.0 if continuation.strip() == doc.options[doc.gold] else -10.0


class Constant:
    """Always the same reply, e.g. "A"; in loglikelihood mode prefers the first listed option."""

    def __init__(self, reply: str = "A") -> None:
        self.reply = reply

    def generate(self, context: str, gen_kwargs: dict) -> str:
        return self.reply

    def loglikelihood(self, context: str, continuation: str) -> float:
        doc = _doc_for(context)
        return 0.0 if continuation.strip() == doc.options[0] else -10.0


class Templated:
    """Replies ``templates[idx % len(templates)]`` to query ``idx``, filled with ``{gold}`` (the gold letter),
    ``{other}`` (the letter after it) and ``{gold_wide}`` (the gold as a full-width letter): hedges,
    articles and statements whose right reading is known for every query."""

    def __init__(self, templates: list[str]) -> None:
        self.templates = list(templates)

    def generate(self, context: str, gen_kwargs: dict) -> str:
        doc = _doc_for(context)
        other = r.LETTERS[(doc.gold + 1) % len(r.LETTERS)]
        wide = chr(ord("Ａ") + doc.gold)
        return self.templates[doc.idx % len(self.templates)].format(gold=doc.gold_letter, other=other, gold_wide=wide)


def templated(templates: list[str], **_ignored) -> Templated:
    return Templated(templates)


def gold(**kwargs) -> Gold:
    return Gold(**kwargs)


def constant(**kwargs) -> Constant:
    return Constant(**kwargs)
