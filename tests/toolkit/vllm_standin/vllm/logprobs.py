"""``Logprob``: one entry of ``prompt_logprobs``/``logprobs`` (vllm/logprobs.py)."""

from dataclasses import dataclass


@dataclass
class Logprob:
    logprob: float
    rank: int | None = None
    decoded_token: str | None = None


__all__ = ["Logprob"]
