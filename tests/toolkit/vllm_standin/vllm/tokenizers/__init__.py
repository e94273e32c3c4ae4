"""``get_tokenizer`` (moved here from vllm.transformers_utils.tokenizer in vLLM #29793)."""

from __future__ import annotations


def get_tokenizer(tokenizer_name, *args, tokenizer_mode: str = "auto", trust_remote_code: bool = False,
                  revision: str | None = None, download_dir: str | None = None, **kwargs):
    from transformers import AutoTokenizer

    if tokenizer_mode not in ("auto", "slow", "hf"):
        raise ValueError(f"Unknown tokenizer mode: {tokenizer_mode}")
    return AutoTokenizer.from_pretrained(str(tokenizer_name), *args, trust_remote_code=trust_remote_code,
                                         revision=revision, cache_dir=download_dir,
                                         use_fast=tokenizer_mode != "slow", **kwargs)


__all__ = ["get_tokenizer"]
