"""Training examples per task family, built by the SAME prompt builders the eval tasks use.

Each family declares its training sets (``Family.training_sets`` in ``qa_tasks``: finetune task name ->
builder); a builder takes the fold and returns a ``TrainingData`` (or a mapping of its fields). The
prompt comes from ``qa_tasks`` (the function the lm-eval task calls) and the gold completion is
appended, so train and eval prompts cannot drift apart. The shipped families' builders:

- ``recipe_mpr``: ``gen_prompt`` / ``gen_completion`` on the train indices of ``fold`` (options shuffled
  by the same seeded permutation as ``recipe_mpr_gen``);
- ``squad_batch``: ``batch_prompt(passage, i)`` + ``format_answer(gold)``, one example per question;
- ``squad_sequential``: ``sequential_messages(passage, gold answers)``, one conversation per passage;
- ``gsm8k_r1_zero``: ``r1_zero_prompt(question)`` + ``r1_zero_completion(reasoning, answer)``;
- ``jsonl``: the user's rows, chat ``messages`` or ``prompt``/``completion``.

``finetune.guard`` refuses training data that touches an evaluation split.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path

from qa_tasks.errors import QAPackError

__all__ = ["TrainingData", "build_training_data", "example_text", "gsm8k_r1_zero_set", "math_r1_zero_set",
           "r1_zero_data", "read_user_jsonl", "recipe_mpr_set", "squad_batch_set", "squad_sequential_set"]

_ROLES = ("system", "user", "assistant")


@dataclass
class TrainingData:
    """Rows ready for TRL's SFTTrainer, with where they came from (for the manifest and the guard)."""

    rows: list[dict]  # {"prompt", "completion"} or {"messages"}
    keys: list[str]  # per row: the source item it comes from (Recipe-MPR index, SQuAD context, question)
    source: str
    split: str
    fold: int | None = None
    path: str | None = None
    extra: dict = field(default_factory=dict)

    @property
    def format(self) -> str:
        return "messages" if "messages" in self.rows[0] else "prompt_completion"

    @property
    def sha256(self) -> str:
        digest = hashlib.sha256()
        for row in self.rows:
            digest.update(json.dumps(row, sort_keys=True, ensure_ascii=False).encode())
            digest.update(b"\n")
        return digest.hexdigest()

    def manifest(self) -> dict:
        out = {"source": self.source, "split": self.split, "fold": self.fold, "n_examples": len(self.rows),
               "sha256": self.sha256, "format": self.format}
        if self.path:
            out["path"] = self.path
        return {**out, **self.extra}


def recipe_mpr_set(fold: int) -> TrainingData:
    from qa_tasks import recipe_mpr

    docs = recipe_mpr.build_docs(fold, "train")
    rows = [{"prompt": recipe_mpr.gen_prompt(d), "completion": recipe_mpr.gen_completion(d)} for d in docs]
    return TrainingData(rows, [f"recipe_mpr:{d.idx}" for d in docs], "recipe_mpr/500QA.json", "train", fold,
                        extra={"eval_split": f"recipe_mpr_fold{fold} / recipe_mpr_gen_fold{fold} (test indices)"})


def _squad_passages(split: str):
    from qa_tasks.squad import load_passages

    return load_passages(split, min_questions=1, max_questions=None)  # every passage, every question


def squad_batch_set(fold: int = 0) -> TrainingData:
    return _squad("batch")


def squad_sequential_set(fold: int = 0) -> TrainingData:
    return _squad("sequential")


def _squad(kind: str) -> TrainingData:
    from qa_tasks.squad import batch_prompt, format_answer, sequential_messages

    passages = _squad_passages("train")
    rows, keys = [], []
    for p in passages:
        golds = [format_answer(q.answers[0]) for q in p.questions]
        if kind == "batch":
            for i, gold in enumerate(golds):
                prompt = batch_prompt(p, i)
                sep = "" if prompt[-1:].isspace() or gold[:1].isspace() else " "
                rows.append({"prompt": prompt, "completion": sep + gold})
                keys.append(f"squad:{p.context}")
        else:
            messages = [dict(m) for m in sequential_messages(p, golds)]
            if messages[-1]["role"] != "assistant":  # the last answer closes the conversation
                messages.append({"role": "assistant", "content": golds[-1]})
            rows.append({"messages": messages})
            keys.append(f"squad:{p.context}")
    return TrainingData(rows, keys, "squad/train-v1.1.json", "train",
                        extra={"eval_split": "squad/dev-v1.1.json (validation)"})


def r1_zero_data(task: str, gold_rows: bool = False) -> TrainingData:
    """GSM8K (``gsm8k_r1_zero``) or MATH (``math_r1_zero``) train as r1_zero prompts: rows ``{prompt,
    completion}`` (the reasoning, then the gold in the answer tags: SFT), or with ``gold_rows`` ``{prompt,
    gold}`` (the gold a GRPO reply is graded against)."""
    from qa_tasks.math import load_gsm8k, load_hendrycks_math, r1_zero_completion, r1_zero_prompt
    from qa_tasks.math.grader import gold_from_math

    if task == "gsm8k_r1_zero":
        items = [(x["question"], x["reasoning"], x["answer"]) for x in load_gsm8k("train")]
        prefix, source, eval_split = "gsm8k", "math/gsm8k_train.jsonl", "math/gsm8k_test.jsonl (gsm8k_think)"
    else:
        items = [(x["problem"], x["solution"], gold_from_math(x)) for x in load_hendrycks_math("train")]
        prefix, source = "math", "hendrycks_math/train"
        eval_split = "hendrycks_math test (hendrycks_math_think, math500_think)"
    rows = [{"prompt": r1_zero_prompt(question),
             **({"gold": gold} if gold_rows else {"completion": r1_zero_completion(reasoning, gold)})}
            for question, reasoning, gold in items]
    extra = {"format": "prompt_gold", "eval_split": eval_split} if gold_rows else {"eval_split": eval_split}
    return TrainingData(rows, [f"{prefix}:{_norm(question)}" for question, _, _ in items], source, "train",
                        extra=extra)


def gsm8k_r1_zero_set(fold: int = 0) -> TrainingData:
    return r1_zero_data("gsm8k_r1_zero")


def math_r1_zero_set(fold: int = 0) -> TrainingData:
    return r1_zero_data("math_r1_zero")


def _check_messages(messages, where: str) -> None:
    if not isinstance(messages, list) or not messages:
        raise QAPackError(f"{where}: `messages` must be a non-empty list of {{role, content}} objects")
    for m in messages:
        if not (isinstance(m, dict) and m.get("role") in _ROLES and isinstance(m.get("content"), str)):
            raise QAPackError(f"{where}: each message needs role ({'/'.join(_ROLES)}) and string content, "
                              f"got {json.dumps(m)[:80]}")


def read_user_jsonl(path: str | Path) -> TrainingData:
    """Rows of a user JSONL file: every line ``{"messages": [...]}`` or every line ``{"prompt", "completion"}``
    (strings, or lists of chat messages)."""
    from qa_tasks.data import read_jsonl

    path = Path(path)
    try:
        raw = read_jsonl(path)
    except OSError as e:
        raise QAPackError(f"cannot read data_path={path}: {e.strerror}; fix the path") from None
    if not raw:
        raise QAPackError(f"data_path={path} has no rows; add JSONL lines with `messages` or `prompt`/`completion`")
    rows, kinds = [], set()
    for lineno, row in enumerate(raw, 1):
        where = f"{path} row {lineno}"
        if "messages" in row:
            _check_messages(row["messages"], where)
            if not any(m["role"] == "assistant" for m in row["messages"]):
                raise QAPackError(f"{where}: no assistant turn, so nothing to learn; add the assistant's answer")
            rows.append({"messages": [{"role": m["role"], "content": m["content"]} for m in row["messages"]]})
            kinds.add("messages")
        elif "prompt" in row and "completion" in row:
            prompt, completion = row["prompt"], row["completion"]
            if isinstance(prompt, str) and isinstance(completion, str):
                kinds.add("text")
            else:
                _check_messages(prompt, where + " prompt")
                _check_messages(completion, where + " completion")
                kinds.add("chat")
            if not completion:
                raise QAPackError(f"{where}: empty completion; every row needs the answer to learn")
            rows.append({"prompt": prompt, "completion": completion})
        else:
            raise QAPackError(f"{where}: needs `messages` or both `prompt` and `completion` (got keys "
                              f"{', '.join(sorted(row)) or 'none'})")
    if len(kinds) > 1:
        raise QAPackError(f"{path} mixes row formats ({', '.join(sorted(kinds))}); use one format per file")
    keys = [f"jsonl:{i}" for i in range(len(rows))]
    return TrainingData(rows, keys, "jsonl", "train", path=str(path.resolve()))


def build_training_data(task: str, fold: int = 0, data_path: str | None = None,
                        max_examples: int | None = None) -> TrainingData:
    """The training examples of ``task`` (see ``finetune.config.tasks``)."""
    from qa_tasks.family import resolve, training_sets

    if task == "jsonl":
        data = read_user_jsonl(data_path)
    elif task in training_sets():
        built = resolve(training_sets()[task][1].build)(fold)
        data = built if isinstance(built, TrainingData) else TrainingData(**built)
    else:
        raise QAPackError(f"task={task!r} is unknown")
    if not data.rows:
        raise QAPackError(f"task={task}: the training split is empty; check {data.source} (QA_PACK_DATA_DIR)")
    if max_examples is not None:
        data.rows, data.keys = data.rows[:max_examples], data.keys[:max_examples]
    return data


def _norm(text: str) -> str:
    return " ".join(text.split())


def example_text(row: dict) -> str:
    """All the text of one training row (used to look for evaluation items inside user data)."""
    if "messages" in row:
        return "\n".join(m["content"] for m in row["messages"])
    parts = [row["prompt"], row["completion"]]
    return "\n".join(p if isinstance(p, str) else "\n".join(m["content"] for m in p) for p in parts)
