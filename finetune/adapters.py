"""Which adapters a command line names, on which base, quantized how: checked before any model loads.

A ``finetune.sft`` run folder stands for its ``checkpoint-<step>`` adapters in step order, then its final
adapter (the folder itself); any other folder holding ``adapter_config.json`` stands for itself. Every
adapter must name the same base (``base_model_name_or_path``); a QLoRA run's base is quantized as its
``manifest.json`` (or, while it trains, its recorded config) says.
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass
from pathlib import Path

from qa_tasks.errors import QAPackError
from qa_tasks.files import checkpoint_step

__all__ = ["Adapter", "adapter_rank", "check_tokenizers", "common_base", "expand", "fingerprint", "quantization"]

_CONFIG = "adapter_config.json"
_WEIGHTS = ("adapter_model.safetensors", "adapter_model.bin")


@dataclass(frozen=True)
class Adapter:
    """One adapter to evaluate: its folder, the run it belongs to, and where its results go."""

    path: Path
    run: Path | None  # the finetune.sft run folder, when the adapter is one of its checkpoints or its final
    label: str  # relative result folder: <run>/checkpoint-<step>, <run>/final, or <adapter>

    @property
    def config(self) -> dict:
        return json.loads((self.path / _CONFIG).read_text(encoding="utf-8"))

    @property
    def step(self) -> int | None:
        return checkpoint_step(self.path)


def _is_adapter(path: Path) -> bool:
    return (path / _CONFIG).is_file() and any((path / w).is_file() for w in _WEIGHTS)


def _checkpoints(run: Path) -> list[Path]:
    found = [p for p in run.glob("checkpoint-*") if checkpoint_step(p) is not None and _is_adapter(p)]
    return sorted(found, key=checkpoint_step)


def expand(paths: list[str | os.PathLike]) -> list[Adapter]:
    """The adapters the arguments stand for, in order (a run folder: its checkpoints by step, then final)."""
    out: list[Adapter] = []
    for raw in paths:
        path = Path(raw).expanduser().resolve()
        if not path.is_dir():
            raise QAPackError(f"{raw} is not a folder; give a finetune.sft run folder or a peft adapter folder")
        checkpoints = _checkpoints(path)
        if checkpoints:
            out += [Adapter(c, path, f"{path.name}/{c.name}") for c in checkpoints]
            if _is_adapter(path):
                out.append(Adapter(path, path, f"{path.name}/final"))
        elif _is_adapter(path):
            inside = checkpoint_step(path) is not None
            out.append(Adapter(path, path.parent if inside else None,
                               f"{path.parent.name}/{path.name}" if inside else path.name))
        else:
            raise QAPackError(f"{raw} holds no adapter ({_CONFIG} + adapter weights) and no checkpoint-N adapter; "
                              "give a finetune.sft run folder or a peft adapter folder")
    seen: set[str] = set()
    unique = []
    for adapter in out:  # the same adapter named twice is evaluated once
        if str(adapter.path) not in {str(a.path) for a in unique}:
            label = adapter.label
            while label in seen:  # two runs with the same folder name
                label = f"{label}~"
            seen.add(label)
            unique.append(Adapter(adapter.path, adapter.run, label))
    return unique


def _same_base(a: str, b: str) -> bool:
    return a == b or (Path(a).exists() and Path(b).exists() and Path(a).resolve() == Path(b).resolve())


def common_base(adapters: list[Adapter], pretrained: str | None = None) -> str:
    """The one base every adapter was trained on (``pretrained=`` when given)."""
    bases: dict[str, Adapter] = {}
    for adapter in adapters:
        base = adapter.config.get("base_model_name_or_path")
        if base and not any(_same_base(base, seen) for seen in bases):
            bases[base] = adapter
    if len(bases) > 1:
        (a, x), (b, y) = list(bases.items())[:2]
        raise QAPackError(f"the adapters were trained on different bases: {x.path} on {a}, {y.path} on {b}; "
                          "evaluate each base's adapters in a separate command")
    if pretrained:
        return pretrained
    if not bases:
        raise QAPackError(f"{adapters[0].path}/{_CONFIG} names no base_model_name_or_path; "
                          "pass --model_args pretrained=BASE")
    return next(iter(bases))


def check_tokenizers(adapters: list[Adapter], base: str) -> None:
    """An adapter saved with a tokenizer that has tokens the base's lacks would be evaluated with the base's
    tokenizer (as lm-eval does with peft=) and never see them: refuse it."""
    from transformers import AutoTokenizer

    with_tokenizer = [a for a in adapters if (a.path / "tokenizer_config.json").is_file()]
    if not with_tokenizer:
        return
    base_vocab = set(AutoTokenizer.from_pretrained(base).get_vocab())
    for adapter in with_tokenizer:
        extra = set(AutoTokenizer.from_pretrained(adapter.path).get_vocab()) - base_vocab
        if extra:
            example = min(extra)
            raise QAPackError(f"{adapter.path}: its tokenizer has {len(extra)} token(s) the base {base} lacks "
                              f"(e.g. {example!r}); evaluate the merged model (python -m finetune.merge) instead")


def adapter_rank(adapter: Adapter) -> int:
    config = adapter.config
    ranks = [int(config.get("r", 8)), *(int(r) for r in (config.get("rank_pattern") or {}).values())]
    return max(ranks)


def _recorded_lora(run: Path) -> dict | None:
    """The LoRA/QLoRA settings a finetune.sft run recorded: its manifest, or while it trains its config."""
    manifest = run / "manifest.json"
    if manifest.is_file():
        data = json.loads(manifest.read_text(encoding="utf-8"))
        return {"method": data.get("method"), **data.get("hyperparameters", {})}
    config = run / "run_config.json"
    if not config.is_file():
        return None
    stored = json.loads(config.read_text(encoding="utf-8"))
    if stored.get("identity", {}).get("method") != "qlora":
        return {"method": stored.get("identity", {}).get("method")}
    from finetune.config import parse_config

    try:
        task, lora, _ = parse_config(stored.get("argv") or [])
    except (QAPackError, SystemExit, OSError, ValueError) as e:
        raise QAPackError(f"{run}: a QLoRA run without manifest.json whose recorded config no longer parses "
                          f"({e}); wait for the run to finish") from None
    return {"method": "qlora", "dtype": task.dtype, "bnb_4bit_quant_type": lora.bnb_4bit_quant_type,
            "bnb_4bit_use_double_quant": lora.bnb_4bit_use_double_quant,
            "bnb_4bit_compute_dtype": lora.bnb_4bit_compute_dtype}


def quantization(adapters: list[Adapter]) -> dict | None:
    """The 4-bit settings of the QLoRA run(s) the adapters come from (``None``: full-precision base);
    every QLoRA run among them must have recorded the same ones."""
    found: dict[str, dict] = {}
    for run in dict.fromkeys(a.run for a in adapters if a.run is not None):
        lora = _recorded_lora(run)
        if lora and lora.get("method") == "qlora":
            found[str(run)] = {k: lora.get(k) for k in ("bnb_4bit_quant_type", "bnb_4bit_use_double_quant",
                                                        "bnb_4bit_compute_dtype", "dtype")}
    settings = list({json.dumps(v, sort_keys=True) for v in found.values()})
    if len(settings) > 1:
        raise QAPackError(f"the QLoRA runs {', '.join(found)} quantized their base differently; "
                          "evaluate each in a separate command")
    if found and len(found) < len({a.run for a in adapters}):
        raise QAPackError("LoRA and QLoRA runs in one command would share one base; evaluate them separately")
    return json.loads(settings[0]) if settings else None


def fingerprint(adapter_path: Path | None, setup: dict) -> str:
    """sha256 of the adapter's files and of the evaluation set-up (tasks, limit, generation, backend...)."""
    digest = hashlib.sha256(json.dumps(setup, sort_keys=True, default=str).encode())
    if adapter_path is not None:
        for name in (_CONFIG, *_WEIGHTS):
            file = adapter_path / name
            if file.is_file():
                digest.update(name.encode())
                with open(file, "rb") as f:
                    for block in iter(lambda: f.read(1 << 20), b""):
                        digest.update(block)
    return digest.hexdigest()
