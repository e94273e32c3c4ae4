"""The base model's module layout, read before any weights load, and the LoRA module lists checked against it.

``config.json`` proves the model path; the architecture built from it on the meta device (no weights, no
memory) names every module, so a LoRA target or a ``modules_to_save`` entry that matches nothing, or one
that peft or lm-eval would mishandle, is refused in one line before training starts.
"""

from __future__ import annotations

from pathlib import Path

from qa_tasks.errors import QAPackError

__all__ = ["check_lora_modules", "model_config", "module_layout"]


def model_config(name: str):
    """The model's config.json only (no weights): proves the path and gives the module layout."""
    from transformers import AutoConfig

    path = Path(name).expanduser()
    looks_local = path.exists() or name.startswith((".", "/", "~")) or name.count("/") > 1
    if looks_local and not (path / "config.json").is_file():
        raise QAPackError(f"model_name_or_path={name}: no model there (expected a folder with config.json); "
                          "fix the path")
    try:
        return AutoConfig.from_pretrained(str(path) if looks_local else name)
    except (OSError, ValueError) as e:
        reason = str(e).splitlines()[0] if str(e) else type(e).__name__
        raise QAPackError(f"model_name_or_path={name}: cannot load its config ({reason[:160]}); give a local "
                          "model folder or a Hub id that is cached (HF_HUB_OFFLINE=1 allows no download)") from None


def module_layout(config) -> tuple[list[str], list[str], set[str]]:
    """All module names, the Linear / Conv1D ones, and the embedding layers' names (input and output),
    from the architecture built on the meta device (no weights)."""
    import torch
    from transformers import AutoModelForCausalLM

    with torch.device("meta"):
        model = AutoModelForCausalLM.from_config(config)
    modules = [(name, m) for name, m in model.named_modules() if name]
    linear = [name for name, m in modules if isinstance(m, torch.nn.Linear) or type(m).__name__ == "Conv1D"]
    ends = (model.get_input_embeddings(), model.get_output_embeddings())
    embeddings = {name for name, m in modules if any(m is e for e in ends)}
    return [name for name, _ in modules], linear, embeddings


def _matches(target: str, names) -> bool:
    """peft's rule: a target names a module exactly or as a '.'-suffix."""
    return any(n == target or n.endswith("." + target) for n in names)


def _unmatched(targets: list[str], names: list[str]) -> list[str]:
    return [t for t in targets if not _matches(t, names)]


def _check_targets(targets, base: str, linear: list[str], embeddings: set[str]) -> None:
    if targets == "all-linear":
        return
    if not targets:
        raise QAPackError("lora_target_modules is empty; use all-linear or a list such as q_proj,v_proj")
    missing = _unmatched(targets, linear)
    if missing:
        leaves = sorted({n.rsplit(".", 1)[-1] for n in linear if n not in embeddings})
        raise QAPackError(f"lora_target_modules {', '.join(missing)} match no module of {base}; its linear "
                          f"modules are: {', '.join(leaves)}")
    heads = [t for t in targets if _matches(t, embeddings)]
    if heads:  # TRL computes the loss from lm_head.weight directly: an adapter there would never train
        raise QAPackError(f"lora_target_modules {', '.join(heads)} is the output layer, which TRL cannot "
                          "train through an adapter; train it in full with lora_modules_to_save instead")


def _check_saved(saved: list[str], base: str, config, names: list[str], embeddings: set[str]) -> None:
    missing = _unmatched(saved, names)
    if missing:
        raise QAPackError(f"lora_modules_to_save {', '.join(missing)} match no module of {base}"
                          f"; e.g. {', '.join(sorted(n.rsplit('.', 1)[-1] for n in embeddings))}")
    tied = [m for m in saved if _matches(m, embeddings)]
    if tied and getattr(config, "tie_word_embeddings", False):  # lm-eval's tie_weights() fails on the saved copy
        raise QAPackError(f"lora_modules_to_save {', '.join(tied)}: {base} ties its input and output embeddings, "
                          "and an adapter holding a copy of a tied layer does not load back into lm-eval; drop "
                          "it, or use a model with untied embeddings")


def check_lora_modules(model) -> object:
    """``model`` (a ModelConfig): its LoRA targets and modules_to_save name modules of its base that an
    adapter can train; returns the base's config."""
    config = model_config(model.model_name_or_path)
    names, linear, embeddings = module_layout(config)
    _check_targets(model.lora_target_modules, model.model_name_or_path, linear, embeddings)
    _check_saved(model.lora_modules_to_save or [], model.model_name_or_path, config, names, embeddings)
    return config
