"""``LLM``: the offline engine (vllm/entrypoints/llm.py), here transformers on CPU, one prompt at a time.

Behaviour lm-eval and the pack rely on, as vLLM does it: greedy decoding at temperature 0; stop strings
end the text and are left out of it; EOS ends it (not in the text); ``prompt_logprobs=k`` gives per
prompt position (the first is None) the prompt token's ``Logprob`` plus the top-k; adapters are
checked like vLLM's ``PEFTHelper`` and ``max_lora_rank`` before use.
"""

from __future__ import annotations

import inspect
import json
import os
from collections.abc import Sequence
from pathlib import Path

from vllm.engine.arg_utils import EngineArgs
from vllm.inputs import TokensPrompt
from vllm.logprobs import Logprob
from vllm.lora.request import LoRARequest
from vllm.outputs import CompletionOutput, RequestOutput
from vllm.sampling_params import SamplingParams


def record(event: str, **fields) -> None:
    """Append one JSON line to $VLLM_STANDIN_LOG (tests count constructions and calls with it)."""
    path = os.environ.get("VLLM_STANDIN_LOG")
    if path:
        with open(path, "a", encoding="utf-8") as f:
            f.write(json.dumps({"event": event, "pid": os.getpid(), **fields}) + "\n")


class LLMEngine:
    def __init__(self, model_config, lora_config, tokenizer) -> None:
        self.model_config, self.lora_config, self.tokenizer = model_config, lora_config, tokenizer

    def get_tokenizer(self):
        return self.tokenizer


class LLM:
    def __init__(self, model: str, *, tokenizer: str | None = None, tokenizer_mode: str = "auto",
                 skip_tokenizer_init: bool = False, trust_remote_code: bool = False,
                 tensor_parallel_size: int = 1, dtype: str = "auto", quantization: str | None = None,
                 revision: str | None = None, tokenizer_revision: str | None = None, seed: int | None = 0,
                 gpu_memory_utilization: float = 0.9, enforce_eager: bool = False, **kwargs) -> None:
        import torch
        from transformers import AutoModelForCausalLM

        from vllm.tokenizers import get_tokenizer

        args = EngineArgs(model=model, tokenizer=tokenizer, tokenizer_mode=tokenizer_mode,
                          trust_remote_code=trust_remote_code, tensor_parallel_size=tensor_parallel_size,
                          dtype=dtype, quantization=quantization, revision=revision,
                          tokenizer_revision=tokenizer_revision, seed=seed,
                          gpu_memory_utilization=gpu_memory_utilization, enforce_eager=enforce_eager, **kwargs)
        model_config = args.create_model_config()
        lora_config = args.create_lora_config()
        tok = None if skip_tokenizer_init else get_tokenizer(
            args.tokenizer or model, tokenizer_mode=tokenizer_mode, trust_remote_code=trust_remote_code,
            revision=tokenizer_revision)
        self.llm_engine = LLMEngine(model_config, lora_config, tok)
        torch_dtype = {"float16": torch.float16, "bfloat16": torch.bfloat16}.get(dtype, torch.float32)
        self._load = lambda: AutoModelForCausalLM.from_pretrained(
            model, revision=revision, trust_remote_code=trust_remote_code, dtype=torch_dtype).eval()
        self._models = {None: self._load()}
        self._seed = seed or 0
        record("construct", model=str(model), enable_lora=args.enable_lora, max_lora_rank=args.max_lora_rank,
               tensor_parallel_size=tensor_parallel_size)

    def get_tokenizer(self):
        return self.llm_engine.get_tokenizer()

    # --- adapters ------------------------------------------------------------------------------------
    def _model_for(self, lora_request: LoRARequest | None):
        if lora_request is None:
            return self._models[None]
        lora_config = self.llm_engine.lora_config
        if lora_config is None:
            raise ValueError(f"LoRA request {lora_request.lora_name} was provided but LoRA is not enabled "
                             "(pass enable_lora=True).")
        if lora_request.lora_int_id not in self._models:
            self._models[lora_request.lora_int_id] = self._load_adapter(lora_request, lora_config)
        return self._models[lora_request.lora_int_id]

    def _load_adapter(self, lora_request: LoRARequest, lora_config):
        from peft import PeftModel

        config_file = Path(lora_request.lora_path) / "adapter_config.json"
        if not config_file.is_file():
            raise ValueError(f"No adapter found for {lora_request.lora_path}")
        peft_config = json.loads(config_file.read_text())
        problems = []  # vllm/lora/peft_helper.py PEFTHelper._validate_features
        if peft_config.get("modules_to_save"):
            problems.append("vLLM only supports modules_to_save being None.")
        if peft_config.get("use_dora"):
            problems.append("vLLM does not yet support DoRA.")
        if problems:
            raise ValueError(", ".join(problems))
        rank = int(peft_config["r"])
        if rank > lora_config.max_lora_rank:  # vllm/lora/worker_manager.py _load_adapter
            raise ValueError(f"LoRA rank {rank} is greater than max_lora_rank {lora_config.max_lora_rank}.")
        return PeftModel.from_pretrained(self._load(), lora_request.lora_path).eval()

    # --- generation ----------------------------------------------------------------------------------
    def generate(self, prompts, sampling_params: SamplingParams | Sequence[SamplingParams] | None = None, *,
                 use_tqdm: bool = True, lora_request: LoRARequest | list[LoRARequest] | None = None,
                 priority: list[int] | None = None, tokenization_kwargs: dict | None = None) -> list[RequestOutput]:
        if isinstance(prompts, (str, dict)):
            prompts = [prompts]
        prompts = list(prompts)
        if sampling_params is None:
            sampling_params = SamplingParams()
        params = list(sampling_params) if isinstance(sampling_params, Sequence) else [sampling_params] * len(prompts)
        if len(params) != len(prompts):
            raise ValueError("The lengths of prompts and sampling_params must be the same.")
        loras = list(lora_request) if isinstance(lora_request, list) else [lora_request] * len(prompts)
        outputs = [self._run(str(i), prompt, p, lora)
                   for i, (prompt, p, lora) in enumerate(zip(prompts, params, loras, strict=True))]
        decode = self.get_tokenizer().decode
        record("generate", n=len(prompts), lora=sorted({r.lora_path if r else None for r in loras}, key=str),
               prompt_logprobs=any(p.prompt_logprobs is not None for p in params),
               prompts=[decode(o.prompt_token_ids) for o in outputs], texts=[o.outputs[0].text for o in outputs])
        return outputs

    def _run(self, request_id: str, prompt, params: SamplingParams, lora: LoRARequest | None) -> RequestOutput:
        import torch

        tokenizer = self.get_tokenizer()
        if isinstance(prompt, dict) and "prompt_token_ids" in prompt:
            ids, text = list(prompt["prompt_token_ids"]), prompt.get("prompt")
        else:
            text = prompt["prompt"] if isinstance(prompt, dict) else prompt
            ids = tokenizer(text).input_ids
        max_len = self.llm_engine.model_config.max_model_len
        if len(ids) > max_len:
            raise ValueError(f"The decoder prompt (length {len(ids)}) is longer than the maximum model length "
                             f"of {max_len}.")
        model = self._model_for(lora)
        with torch.no_grad():
            prompt_logprobs = self._prompt_logprobs(model, ids, params.prompt_logprobs) \
                if params.prompt_logprobs is not None else None
            out_ids, finish, stop_reason, out_text = self._decode(model, tokenizer, ids, params, max_len)
        completion = CompletionOutput(0, out_text, out_ids, None, None, finish, stop_reason, lora)
        return RequestOutput(request_id, text, ids, prompt_logprobs, [completion], True, lora)

    def _prompt_logprobs(self, model, ids: list[int], k: int) -> list:
        import torch

        logits = model(input_ids=torch.tensor([ids])).logits[0].float()
        logp = torch.log_softmax(logits, dim=-1)
        decode = self.get_tokenizer().decode
        result: list = [None]
        for pos in range(1, len(ids)):
            row = logp[pos - 1]
            entries = {}
            token = ids[pos]
            entries[token] = Logprob(float(row[token]), int((row > row[token]).sum()) + 1, decode([token]))
            if k > 0:
                top = torch.topk(row, k)
                for rank, (value, tid) in enumerate(zip(top.values.tolist(), top.indices.tolist()), start=1):
                    entries.setdefault(tid, Logprob(value, rank, decode([tid])))
            result.append(entries)
        return result

    def _decode(self, model, tokenizer, ids: list[int], params: SamplingParams, max_len: int):
        import torch

        limit = min(params.max_tokens or max_len, max_len - len(ids))
        eos = set() if params.ignore_eos else {tokenizer.eos_token_id}
        stops = eos | set(params.stop_token_ids or [])
        generator = torch.Generator().manual_seed(params.seed if params.seed is not None else self._seed)
        out: list[int] = []
        past, step_input = None, torch.tensor([ids])
        # transformers 5.x renamed the forward's past_key_values to cache (the output keeps the old name)
        cache_arg = "cache" if "cache" in inspect.signature(model.forward).parameters else "past_key_values"
        for _ in range(max(limit, 0)):
            result = model(input_ids=step_input, use_cache=True, **{cache_arg: past})
            past = result.past_key_values
            row = result.logits[0, -1].float()
            if params.temperature == 0:
                token = int(row.argmax())
            else:
                probs = torch.softmax(row / params.temperature, dim=-1)
                token = int(torch.multinomial(probs, 1, generator=generator))
            if token in stops and len(out) >= params.min_tokens:
                return out, "stop", (None if token in eos else token), self._text(tokenizer, out, params)
            out.append(token)
            step_input = torch.tensor([[token]])
            if params.detokenize and params.stop:
                text = self._text(tokenizer, out, params)
                hits = [(text.find(s), s) for s in params.stop if s and s in text]
                if hits:
                    at, stop = min(hits)
                    end = at + len(stop) if params.include_stop_str_in_output else at
                    return out, "stop", stop, text[:end]
        return out, "length", None, self._text(tokenizer, out, params)

    @staticmethod
    def _text(tokenizer, ids: list[int], params: SamplingParams) -> str:
        if not params.detokenize:
            return ""
        return tokenizer.decode(ids, skip_special_tokens=params.skip_special_tokens,
                                spaces_between_special_tokens=params.spaces_between_special_tokens)


__all__ = ["LLM", "TokensPrompt"]
