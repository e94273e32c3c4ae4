"""Build a tiny Qwen2-architecture causal LM offline in seconds (as lm-eval ships its dummy model: the
demo, the benchmarks and the tests all use it).

2 layers, a byte-level BPE tokenizer trained on the fly on the pack's own data (or built-in text),
and a ChatML chat template with ``{% generation %}`` markers so TRL's assistant-only loss works.

    python -m qa_tasks.testing OUT_DIR
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import sys
import tempfile
from pathlib import Path

from qa_tasks.errors import QAPackError
from qa_tasks.files import atomic_dir

__all__ = ["CACHE_VARIABLE", "CHAT_TEMPLATE", "build_tiny_model"]

# a folder where each tiny model is built once and copied from (the test suite shares one across its
# processes); unset: every call builds
CACHE_VARIABLE = "QA_PACK_TINY_MODEL_CACHE"

CHAT_TEMPLATE = (
    "{% for message in messages %}"
    "{% if message['role'] == 'assistant' %}"
    "{{ '<|im_start|>assistant\\n' }}{% generation %}{{ message['content'] + '<|im_end|>' }}{% endgeneration %}{{ '\\n' }}"
    "{% else %}"
    "{{ '<|im_start|>' + message['role'] + '\\n' + message['content'] + '<|im_end|>\\n' }}"
    "{% endif %}"
    "{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}{% endif %}"
)
SPECIAL_TOKENS = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"]
_FALLBACK_TEXT = (
    "Question: What is 2 + 3? <think> 2 plus 3 is 5 </think> <answer> 5 </answer>\n"
    "Answer with the letter of the best option. A B C D E. Passage: The Normans were a people.\n"
)


def _corpus(data_dir: Path | None) -> list[str]:
    texts = [_FALLBACK_TEXT] * 20
    if data_dir is None:
        return texts
    for path in sorted(data_dir.glob("*/*.json*")):
        raw = path.read_text(encoding="utf-8")
        texts.extend(raw[i : i + 2000] for i in range(0, min(len(raw), 400_000), 2000))
    return texts


def build_tiny_model(out_dir: str | os.PathLike, data_dir: str | os.PathLike | None = None,
                     vocab_size: int = 2048, seed: int = 0, init_std: float = 0.02,
                     hidden_size: int = 64, num_layers: int = 2, tie_embeddings: bool = True) -> Path:
    """Write a loadable model + tokenizer to ``out_dir`` (skipped when already built there).

    ``init_std`` is the weight init scale: with the default the tied embeddings keep every logit near 0,
    which LoRA (it never trains the embeddings or the final norm) cannot sharpen; fine-tuning
    demonstrations use a larger scale so an adapter can move the output distribution.
    ``hidden_size`` (a multiple of 16: one attention head per 16 dims) and ``num_layers`` size the model;
    ``tie_embeddings=False`` gives the output layer its own weights (so ``modules_to_save`` can train it).
    """
    out = Path(out_dir)
    if (out / "config.json").is_file() and (out / "tokenizer.json").is_file():
        return out
    if out.is_dir() and any(out.iterdir()):
        raise QAPackError(f"{out} holds other files but no model; give a new or empty folder for the tiny model")
    if data_dir is None and os.environ.get("QA_PACK_DATA_DIR"):
        data_dir = os.environ["QA_PACK_DATA_DIR"]
    params = {"vocab_size": vocab_size, "seed": seed, "init_std": init_std, "hidden_size": hidden_size,
              "num_layers": num_layers, "tie_embeddings": tie_embeddings}
    cache = os.environ.get(CACHE_VARIABLE)
    if cache:
        built = _cached(Path(cache), data_dir, params)
        with atomic_dir(out) as tmp:
            shutil.copytree(built, tmp, dirs_exist_ok=True)
        return out
    return _build(out, data_dir, **params)


def _cached(cache: Path, data_dir, params: dict) -> Path:
    """The model built with ``params`` in ``cache``, built there once: the key covers the parameters, the
    data folder and this file, and a build lands by rename, so concurrent builders never see half a model."""
    source = hashlib.sha256(Path(__file__).read_bytes()).hexdigest()
    key = json.dumps([params, str(Path(data_dir).resolve()) if data_dir else None, source], sort_keys=True)
    built = cache / hashlib.sha256(key.encode()).hexdigest()[:16]
    if not (built / "config.json").is_file():
        cache.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(dir=cache, prefix=".build-"))
        _build(tmp / "model", data_dir, **params)
        try:
            os.rename(tmp / "model", built)
        except OSError:  # another process renamed its build there first
            pass
        shutil.rmtree(tmp, ignore_errors=True)
    return built


def _build(out: Path, data_dir, vocab_size: int, seed: int, init_std: float, hidden_size: int, num_layers: int,
           tie_embeddings: bool) -> Path:
    import torch
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast, Qwen2Config, Qwen2ForCausalLM


    bpe = Tokenizer(models.BPE(unk_token=None))
    bpe.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    bpe.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=vocab_size, special_tokens=SPECIAL_TOKENS,
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), show_progress=False)
    bpe.train_from_iterator(_corpus(Path(data_dir) if data_dir else None), trainer=trainer)
    tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=bpe, eos_token="<|im_end|>", pad_token="<|endoftext|>",
        bos_token=None, unk_token=None, model_max_length=8192,
    )
    tokenizer.chat_template = CHAT_TEMPLATE

    torch.manual_seed(seed)
    config = Qwen2Config(
        vocab_size=len(tokenizer), hidden_size=hidden_size, intermediate_size=2 * hidden_size,
        num_hidden_layers=num_layers, num_attention_heads=hidden_size // 16,
        num_key_value_heads=max(1, hidden_size // 32), max_position_embeddings=8192,
        eos_token_id=tokenizer.eos_token_id, pad_token_id=tokenizer.pad_token_id,
        bos_token_id=tokenizer.eos_token_id, tie_word_embeddings=tie_embeddings, initializer_range=init_std,
    )
    model = Qwen2ForCausalLM(config)
    model.generation_config.eos_token_id = tokenizer.eos_token_id
    model.generation_config.pad_token_id = tokenizer.pad_token_id
    with atomic_dir(out) as tmp:
        model.save_pretrained(tmp)
        tokenizer.save_pretrained(tmp)
        (tmp / "tiny_model.json").write_text(json.dumps({
            "built_by": "qa_tasks.testing", "seed": seed, "init_std": init_std, "hidden_size": hidden_size,
            "num_layers": num_layers, "tie_embeddings": tie_embeddings}))
    return out


if __name__ == "__main__":
    if len(sys.argv) != 2:
        sys.exit("usage: python -m qa_tasks.testing OUT_DIR")
    print(build_tiny_model(sys.argv[1]))
