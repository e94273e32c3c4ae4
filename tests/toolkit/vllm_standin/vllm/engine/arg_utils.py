"""``EngineArgs``: the keyword arguments ``LLM(**kwargs)`` accepts (vllm/engine/arg_utils.py has many
more; an unknown name is a TypeError there as here), and the model/LoRA configs derived from them."""

from __future__ import annotations

from dataclasses import dataclass, field

# vllm/config/lora.py: MaxLoRARanks = Literal[1, 8, 16, 32, 64, 128, 256, 320, 512]
MAX_LORA_RANKS = (1, 8, 16, 32, 64, 128, 256, 320, 512)


@dataclass
class ModelConfig:
    model: str
    tokenizer: str
    trust_remote_code: bool
    dtype: str
    seed: int
    max_model_len: int
    hf_config: object = None


@dataclass
class LoRAConfig:
    max_lora_rank: int = 16
    max_loras: int = 1

    def __post_init__(self) -> None:
        if self.max_lora_rank not in MAX_LORA_RANKS:  # a pydantic Literal validation error in vLLM
            raise ValueError(f"1 validation error for LoRAConfig\nmax_lora_rank\n  Input should be "
                             f"{', '.join(map(str, MAX_LORA_RANKS[:-1]))} or {MAX_LORA_RANKS[-1]} "
                             f"[type=literal_error, input_value={self.max_lora_rank!r}]")


@dataclass
class EngineArgs:
    model: str = "Qwen/Qwen3-0.6B"
    tokenizer: str | None = None
    tokenizer_mode: str = "auto"
    trust_remote_code: bool = False
    download_dir: str | None = None
    dtype: str = "auto"
    seed: int | None = 0
    max_model_len: int | None = None
    revision: str | None = None
    tokenizer_revision: str | None = None
    quantization: str | None = None
    tensor_parallel_size: int = 1
    pipeline_parallel_size: int = 1
    data_parallel_size: int = 1
    distributed_executor_backend: str | None = None
    gpu_memory_utilization: float = 0.9
    max_num_seqs: int | None = None
    max_num_batched_tokens: int | None = None
    enable_prefix_caching: bool | None = None
    enforce_eager: bool = False
    enable_lora: bool = False
    max_lora_rank: int = 16
    max_loras: int = 1
    max_cpu_loras: int | None = None
    enable_expert_parallel: bool = False
    kv_cache_dtype: str = "auto"
    hf_overrides: dict = field(default_factory=dict)

    def create_model_config(self) -> ModelConfig:
        from transformers import AutoConfig

        hf_config = AutoConfig.from_pretrained(self.model, trust_remote_code=self.trust_remote_code,
                                               revision=self.revision)
        derived = int(getattr(hf_config, "max_position_embeddings", 2048))
        if self.max_model_len is not None and self.max_model_len > derived:
            raise ValueError(f"User-specified max_model_len ({self.max_model_len}) is greater than the derived "
                             f"max_model_len (max_position_embeddings={derived} in model's config.json).")
        return ModelConfig(model=self.model, tokenizer=self.tokenizer or self.model,
                           trust_remote_code=self.trust_remote_code, dtype=self.dtype, seed=self.seed or 0,
                           max_model_len=self.max_model_len or derived, hf_config=hf_config)

    def create_lora_config(self) -> LoRAConfig | None:
        return LoRAConfig(self.max_lora_rank, self.max_loras) if self.enable_lora else None


__all__ = ["MAX_LORA_RANKS", "EngineArgs", "LoRAConfig", "ModelConfig"]
