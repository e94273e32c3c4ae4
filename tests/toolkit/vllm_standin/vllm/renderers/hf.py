"""``resolve_chat_template`` (moved here from vllm.entrypoints.chat_utils in vLLM #30200)."""

from __future__ import annotations


def resolve_chat_template(tokenizer, chat_template: str | None, tools: list[dict] | None, *, model_config):
    """The given template first, else the tokenizer's own (vLLM also tries the processor's first)."""
    if chat_template is not None:
        return chat_template
    return getattr(tokenizer, "chat_template", None)


__all__ = ["resolve_chat_template"]
