"""One base model kept loaded while adapters take turns on it, as a ready lm-eval model.

``ResidentHF``: lm-eval's ``HFLM`` around one ``PeftModel``; each adapter is loaded under its own name
(peft ``load_adapter``) and activated (``set_adapter``); the previous one is dropped, so memory stays that
of the base plus one adapter. ``ResidentVLLM``: lm-eval's ``VLLM`` with one engine started with
``enable_lora``; each adapter is its own ``LoRARequest`` (distinct id). Both carry the pack's rollout layer
and hand out ``model_args`` naming the adapter the way a plain ``lm_eval`` run would take it.
"""

from __future__ import annotations

import contextlib
from pathlib import Path

__all__ = ["ResidentHF", "ResidentVLLM", "load_base", "vllm_max_lora_rank"]


def load_base(base: str, quant: dict | None = None, dtype: str = "auto", **kwargs):
    """The base model as lm-eval's HFLM loads it (``dtype=auto``: the checkpoint's own), or 4-bit with a
    QLoRA run's recorded settings (``finetune.quant``: quant type, double quantization, compute dtype)."""
    from lm_eval.models.utils_hf import get_dtype
    from transformers import AutoModelForCausalLM

    if quant:
        from finetune.quant import load_kwargs

        placed = load_kwargs(quant)
        if "device_map" in kwargs:  # the caller's placement wins
            placed.pop("device_map", None)
        kwargs.update(placed)
    else:
        kwargs["dtype"] = get_dtype(dtype)
    model = AutoModelForCausalLM.from_pretrained(base, **kwargs)
    return model.eval()


def quant_model_args(quant: dict | None) -> str:
    """The 4-bit settings as lm-eval ``--model_args`` keys (what a plain run would name)."""
    if not quant:
        return ""
    return (f",load_in_4bit=True,bnb_4bit_quant_type={quant['bnb_4bit_quant_type']},"
            f"bnb_4bit_use_double_quant={bool(quant['bnb_4bit_use_double_quant'])},"
            f"bnb_4bit_compute_dtype={quant.get('bnb_4bit_compute_dtype') or 'auto'}")


class ResidentHF:
    """The base, loaded once; ``activate(adapter)`` makes ``lm`` evaluate base + that adapter.

    On a bitsandbytes 4-bit base, an adapter loaded after the model has run a forward pass gives different
    outputs from the same adapter on a freshly loaded base (peft 0.22 / bitsandbytes 0.50 on CPU), while
    adapters loaded beforehand match exactly; so every adapter known in advance is loaded first
    (``adapters``), and ``can_take`` says whether a later one may still be added."""

    def __init__(self, base: str, quant: dict | None = None, batch_size="auto", dtype: str = "auto",
                 extra_args: str = "", adapters=()):
        from transformers import AutoTokenizer

        self.base, self.quant, self.extra_args, self.batch_size = base, quant, extra_args, batch_size
        self.model = load_base(base, quant, dtype)
        self.tokenizer = AutoTokenizer.from_pretrained(base)  # the base's, as lm-eval's peft= takes it
        self.peft = self.lm = None
        self.active: str | None = None
        self.names: dict[str, str] = {}
        self.ran, self._count = False, 0
        for adapter in adapters:
            self._load(adapter)

    @property
    def can_load_more(self) -> bool:
        return not (self.quant and self.ran)

    def can_take(self, adapter) -> bool:
        """``activate(adapter)`` will evaluate it as on a fresh base (loaded already, or loadable now)."""
        return str(adapter) in self.names or self.can_load_more

    def _load(self, adapter) -> str:
        from peft import PeftModel

        key = str(adapter)
        if key not in self.names:
            self._count += 1
            name = self.names[key] = f"adapter{self._count}"
            if self.peft is None:
                self.peft = PeftModel.from_pretrained(self.model, key, adapter_name=name).eval()
            else:
                self.peft.load_adapter(key, adapter_name=name)
        return self.names[key]

    def _lm(self, model):
        from finetune.eval_callback import make_lm

        self.ran = True
        return make_lm(model, self.tokenizer, self.batch_size)

    def activate(self, adapter: Path | str):
        """The lm-eval model for base + ``adapter``; the previously active adapter is dropped."""
        if not self.can_take(adapter):
            raise RuntimeError("an adapter loaded into a 4-bit base after a forward pass would not evaluate as "
                               "on a fresh base; start a new ResidentHF with it")
        name = self._load(adapter)
        self.peft.set_adapter(name)
        if self.active is not None and self.active != name:
            self.peft.delete_adapter(self.active)
            self.names = {k: v for k, v in self.names.items() if v != self.active}
        self.peft.eval()
        self.active = name
        if self.lm is None:
            self.lm = self._lm(self.peft)
        self.ran = True
        return self.lm

    @contextlib.contextmanager
    def base_only(self):
        """The lm-eval model of the bare base (adapters disabled while the block runs)."""
        if self.peft is None:
            yield self._lm(self.model)
            return
        self.lm = self.lm or self._lm(self.peft)
        with self.peft.disable_adapter():
            yield self.lm

    def model_args(self, adapter: Path | str | None) -> str:
        peft = f",peft={adapter}" if adapter is not None else ""
        return f"pretrained={self.base}{peft}{quant_model_args(self.quant)}{self.extra_args}"


def vllm_max_lora_rank(ranks: list[int]) -> int:
    """The smallest engine ``max_lora_rank`` vLLM accepts that serves every rank (lm-eval's 16 at least)."""
    from finetune.vllm_compat import LM_EVAL_MAX_LORA_RANK, VLLM_MAX_LORA_RANKS

    need = max([LM_EVAL_MAX_LORA_RANK, *ranks])
    return next((r for r in VLLM_MAX_LORA_RANKS if r >= need), VLLM_MAX_LORA_RANKS[-1])


class ResidentVLLM:
    """One vLLM engine with LoRA enabled; ``activate(adapter)`` points lm-eval's VLLM at its LoRARequest."""

    def __init__(self, base: str, model_kwargs: dict, max_lora_rank: int, extra_args: str = ""):
        from lm_eval.models.vllm_causallms import VLLM

        from qa_tasks.rollout import with_rollout

        kwargs = {"enable_lora": True, "max_loras": 1, **model_kwargs, "max_lora_rank": max_lora_rank}
        self.base, self.max_lora_rank, self.extra_args = base, max_lora_rank, extra_args
        self.lm = with_rollout(VLLM)(pretrained=base, **kwargs)
        self._ids: dict[str, int] = {}

    def activate(self, adapter: Path | str):
        from vllm.lora.request import LoRARequest

        key = str(adapter)
        self._ids.setdefault(key, len(self._ids) + 1)  # vLLM caches adapters by id: one id per adapter
        self.lm.lora_request = LoRARequest(f"adapter{self._ids[key]}", self._ids[key], key)
        return self.lm

    @contextlib.contextmanager
    def base_only(self):
        self.lm.lora_request = None
        yield self.lm

    def model_args(self, adapter: Path | str | None) -> str:
        lora = f",enable_lora=True,lora_local_path={adapter},max_lora_rank={self.max_lora_rank}" if adapter else ""
        return f"pretrained={self.base}{lora}{self.extra_args}"
