"""A tiny model briefly trained to reply like a SQuAD model: ``<answer>span</answer>`` then stop.

The random tiny model of the test suite answers every question with the same token up to the cap, which
is batching's best case (no early stops, no stragglers). This one is the same 2-layer model after a few
seconds of full fine-tuning on SQuAD *train* conversations built with the pack's own prompt builders
(``squad.sequential_messages``, ``squad.planner_prompt``, rendered by ``rollout.render_plain`` as the
rollout layer renders them for a model without a chat template), with the loss on the replies only:

- an answer turn: `` <answer>{gold span}</answer>\\n\\n`` (the ``\\n\\n`` is the tasks' stop string);
- the collab planner: `` {"order": [...], "links": {}}`` then the end-of-text token (its call has no stop
  string).

Its replies on dev passages stop early and vary in length (the span lengths it learned, and wherever
greedy decoding finds the closing tag), so round-batching meets the stragglers real replies bring.

    python -m bench.answer_model OUT_DIR [--steps 150]
"""

from __future__ import annotations

import argparse
import json
import os
import random
import time
from pathlib import Path

__all__ = ["build_answer_model"]


def _examples(tokenizer, passages) -> list[tuple[list[int], list[int]]]:
    """(input ids, labels) per training conversation; labels are -100 outside the replies."""
    from qa_tasks import rollout, squad

    def encode(pieces: list[tuple[str, bool]]) -> tuple[list[int], list[int]]:
        ids, labels = [], []
        for text, trained in pieces:
            piece = tokenizer.encode(text, add_special_tokens=False)
            ids += piece
            labels += piece if trained else [-100] * len(piece)
        return ids, labels

    out = []
    for p in passages:
        golds = [squad.format_answer(q.answers[0]) for q in p.questions]
        messages = squad.sequential_messages(p, golds)
        pieces = []
        for m in messages:
            text = rollout.render_plain([m])
            pieces.append((text, m["role"] == "assistant"))
        out.append(encode(pieces))
        plan = json.dumps({"order": [q.qid for q in p.questions], "links": {}})
        ids, labels = encode([(rollout.render_plain([{"role": "user", "content": squad.planner_prompt(p)}]), False),
                              (" " + plan, True)])
        out.append((ids + [tokenizer.eos_token_id], labels + [tokenizer.eos_token_id]))
    return out


def build_answer_model(out_dir: str | os.PathLike, steps: int = 150, passages: int = 400, batch: int = 8,
                       lr: float = 3e-3, seed: int = 0) -> Path:
    """Write the trained model to ``out_dir`` (skipped when already there); returns its path."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from qa_tasks import squad
    from qa_tasks.testing import build_tiny_model

    out = Path(out_dir)
    if (out / "answer_model.json").is_file():
        return out
    base = build_tiny_model(out.with_name(out.name + ".base"))
    tokenizer = AutoTokenizer.from_pretrained(base)
    model = AutoModelForCausalLM.from_pretrained(base, dtype=torch.float32)
    train = squad.load_passages("train", min_questions=3, max_questions=5)[:passages]
    examples = _examples(tokenizer, train)
    rng = random.Random(seed)
    torch.manual_seed(seed)
    optimizer = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=0.0)
    model.train()
    started, losses = time.perf_counter(), []
    for _ in range(steps):
        chunk = rng.sample(examples, batch)
        width = max(len(ids) for ids, _ in chunk)
        ids = torch.tensor([i + [tokenizer.pad_token_id] * (width - len(i)) for i, _ in chunk])
        labels = torch.tensor([lab + [-100] * (width - len(lab)) for _, lab in chunk])
        mask = torch.tensor([[1] * len(i) + [0] * (width - len(i)) for i, _ in chunk])
        loss = model(input_ids=ids, attention_mask=mask, labels=labels).loss
        loss.backward()
        optimizer.step()
        optimizer.zero_grad()
        losses.append(loss.item())
    model.eval()
    tmp = out.with_name(out.name + ".tmp")
    model.save_pretrained(tmp)
    tokenizer.save_pretrained(tmp)
    (tmp / "answer_model.json").write_text(json.dumps({
        "steps": steps, "passages": len(train), "batch": batch, "lr": lr, "seed": seed,
        "train_s": round(time.perf_counter() - started, 1), "first_loss": losses[0], "last_loss": losses[-1]}))
    os.replace(tmp, out)
    return out


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("out", type=Path)
    parser.add_argument("--steps", type=int, default=150)
    args = parser.parse_args(argv)
    path = build_answer_model(args.out, steps=args.steps)
    print(path, (path / "answer_model.json").read_text())


if __name__ == "__main__":
    main()
