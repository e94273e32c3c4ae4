"""Export a merged model: base weights + LoRA adapter folded in, loadable without peft.

    python -m finetune.merge runs/recipe_mpr_fold0 --out runs/recipe_mpr_fold0_merged
    python -m finetune.merge ADAPTER_DIR --out MERGED --base Qwen/Qwen2.5-0.5B-Instruct --dtype bfloat16
    lm_eval --model hf --model_args pretrained=runs/recipe_mpr_fold0_merged --tasks recipe_mpr_gen_fold0

The base is loaded in full precision even for a QLoRA adapter (merging into 4-bit weights would round
the adapter away). The base comes from the run's manifest.json, else adapter_config.json. The merged
folder appears complete or not at all (written beside it, then renamed).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

from qa_tasks.errors import QAPackError
from qa_tasks.files import atomic_dir

__all__ = ["base_of", "main", "merge"]


def base_of(adapter: Path) -> str:
    """The base model an adapter was trained on (manifest first, then adapter_config.json)."""
    for name, key in (("manifest.json", "base_model"), ("adapter_config.json", "base_model_name_or_path")):
        path = adapter / name
        if path.is_file():
            value = json.loads(path.read_text(encoding="utf-8")).get(key)
            if value:
                return value
    raise QAPackError(f"{adapter}: no manifest.json or adapter_config.json naming the base model; pass --base")


def merge(adapter: str | os.PathLike, out: str | os.PathLike, base: str | None = None,
          dtype: str = "float32") -> Path:
    import torch
    from peft import PeftModel
    from transformers import AutoModelForCausalLM, AutoTokenizer

    adapter, out = Path(adapter), Path(out)
    if not (adapter / "adapter_config.json").is_file():
        raise QAPackError(f"{adapter} is not an adapter folder (no adapter_config.json); give the output_dir "
                          "of finetune.sft or one of its checkpoint-* folders")
    if out.exists() and any(out.iterdir()):
        raise QAPackError(f"--out {out} already exists and is not empty; choose a new folder")
    if dtype not in ("float32", "bfloat16", "float16"):
        raise QAPackError(f"--dtype {dtype} is not valid; use float32, bfloat16 or float16")
    base = base or base_of(adapter)
    model = AutoModelForCausalLM.from_pretrained(base, dtype=getattr(torch, dtype))
    model = PeftModel.from_pretrained(model, str(adapter)).merge_and_unload()
    tok_src = adapter if (adapter / "tokenizer_config.json").is_file() else base
    tokenizer = AutoTokenizer.from_pretrained(str(tok_src))
    manifest = adapter / "manifest.json"
    info = {"base_model": base, "adapter": str(adapter.resolve()), "dtype": dtype}
    if manifest.is_file():
        info["adapter_manifest"] = json.loads(manifest.read_text(encoding="utf-8"))
    with atomic_dir(out) as tmp:
        model.save_pretrained(tmp)
        tokenizer.save_pretrained(tmp)
        (tmp / "merge_manifest.json").write_text(json.dumps(info, indent=2), encoding="utf-8")
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m finetune.merge", description=__doc__.splitlines()[0])
    parser.add_argument("adapter", help="adapter folder (finetune.sft output_dir or a checkpoint-* folder)")
    parser.add_argument("--out", required=True, help="folder for the merged model (new or empty)")
    parser.add_argument("--base", help="base model (default: from the manifest / adapter_config.json)")
    parser.add_argument("--dtype", default="float32", help="float32 (default), bfloat16 or float16")
    args = parser.parse_args(argv)
    try:
        print(merge(args.adapter, args.out, args.base, args.dtype))
    except QAPackError as e:
        return e.report()
    return 0


if __name__ == "__main__":
    sys.exit(main())
