"""The 4-bit (bitsandbytes) base of a QLoRA run: the one place its ``BitsAndBytesConfig`` is built.

A run's 4-bit settings travel as a small mapping, the one ``finetune.adapters.quantization`` reads back from a
run's manifest or run_config.json: ``bnb_4bit_quant_type``, ``bnb_4bit_use_double_quant``,
``bnb_4bit_compute_dtype`` and the weights ``dtype``. Training (``quant_settings`` of its ModelConfig) and
every later load of that base (``finetune.resident``) go through ``load_kwargs``, so an adapter is evaluated on
the base it was trained on.
"""

from __future__ import annotations

from qa_tasks.hardware import torch_dtype

__all__ = ["QUANT_KEYS", "bnb_config", "load_kwargs", "quant_settings"]

QUANT_KEYS = ("bnb_4bit_quant_type", "bnb_4bit_use_double_quant", "bnb_4bit_compute_dtype", "dtype")


def quant_settings(model) -> dict | None:
    """The 4-bit settings of a run's ModelConfig (``finetune.config.ModelArguments``); None: full precision."""
    if not model.load_in_4bit:
        return None
    storage = {"bnb_4bit_quant_storage": model.bnb_4bit_quant_storage} if model.bnb_4bit_quant_storage else {}
    return {**{key: getattr(model, key) for key in QUANT_KEYS}, **storage}


def bnb_config(settings: dict):
    """``BitsAndBytesConfig`` of recorded 4-bit settings, built by TRL's ``get_quantization_config``."""
    from trl import ModelConfig, get_quantization_config

    compute = torch_dtype(settings.get("bnb_4bit_compute_dtype") or "auto")
    # TRL takes the compute dtype from `dtype`; the pack records it apart from the weights dtype
    return get_quantization_config(ModelConfig(
        load_in_4bit=True, bnb_4bit_quant_type=settings.get("bnb_4bit_quant_type") or "nf4",
        use_bnb_nested_quant=bool(settings.get("bnb_4bit_use_double_quant")), dtype=compute,
        bnb_4bit_quant_storage=settings.get("bnb_4bit_quant_storage")))


def load_kwargs(settings: dict, device_index: int = 0) -> dict:
    """``from_pretrained`` keyword arguments of a 4-bit base: quantization, weights dtype and, on CUDA, the
    device (4-bit weights are placed at load time, one device per process)."""
    import torch

    kwargs = {"quantization_config": bnb_config(settings), "dtype": torch_dtype(settings.get("dtype") or "auto")}
    if torch.cuda.is_available():
        kwargs["device_map"] = {"": device_index}
    return kwargs
