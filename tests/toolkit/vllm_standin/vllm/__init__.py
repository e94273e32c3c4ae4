"""Test-only stand-in for the part of vLLM's Python API that lm-eval 0.4.13 calls (see ../README.md)."""

from vllm.entrypoints.llm import LLM
from vllm.inputs import TokensPrompt
from vllm.outputs import CompletionOutput, RequestOutput
from vllm.sampling_params import SamplingParams

__version__ = "0.33.0"
__all__ = ["LLM", "CompletionOutput", "RequestOutput", "SamplingParams", "TokensPrompt"]
