"""The output objects ``LLM.generate`` returns (vllm/outputs.py), with the fields lm-eval reads."""

from __future__ import annotations

from dataclasses import dataclass, field

from vllm.logprobs import Logprob
from vllm.lora.request import LoRARequest


@dataclass
class CompletionOutput:
    index: int
    text: str
    token_ids: list[int]
    cumulative_logprob: float | None
    logprobs: list[dict[int, Logprob]] | None
    finish_reason: str | None = None  # "stop" or "length"
    stop_reason: int | str | None = None  # the stop string that ended the text, None for EOS/length
    lora_request: LoRARequest | None = None


@dataclass
class RequestOutput:
    request_id: str
    prompt: str | None
    prompt_token_ids: list[int]
    prompt_logprobs: list[dict[int, Logprob] | None] | None
    outputs: list[CompletionOutput]
    finished: bool = True
    lora_request: LoRARequest | None = None
    metrics: dict = field(default_factory=dict)


__all__ = ["CompletionOutput", "RequestOutput"]
