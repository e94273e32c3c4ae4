"""``TokensPrompt``: a prompt given as token ids (a TypedDict in vLLM too)."""

from typing import TypedDict


class TokensPrompt(TypedDict, total=False):
    prompt_token_ids: list[int]


__all__ = ["TokensPrompt"]
