"""finetune.data: training examples come from the eval tasks' own prompt builders; the loss covers
exactly the answers; training never sees an evaluation split."""

from __future__ import annotations

import json

import pytest

from finetune.data import build_training_data, read_user_jsonl
from finetune.guard import check_no_overlap
from qa_tasks import math as math_family
from qa_tasks import recipe_mpr as r
from qa_tasks import squad
from qa_tasks.errors import QAPackError


def test_recipe_rows_are_gen_prompts_of_the_fold_train_indices():
    data = build_training_data("recipe_mpr", fold=0)
    train, test = r.load_folds()[0]
    docs = r.build_docs(0, "train")
    assert len(data.rows) == len(train) == 400 and data.fold == 0 and data.split == "train"
    assert data.rows[5] == {"prompt": r.gen_prompt(docs[5]), "completion": r.gen_completion(docs[5])}
    assert not {int(k.split(":")[1]) for k in data.keys} & set(test)
    # options shuffled the recipe_mpr_gen way: the gold letter is not always A
    assert len({row["completion"] for row in data.rows}) == 5
    assert data.manifest()["sha256"] == build_training_data("recipe_mpr", fold=0).sha256
    assert data.sha256 != build_training_data("recipe_mpr", fold=1).sha256


def test_squad_batch_and_sequential_rows():
    passages = squad.load_passages("train", min_questions=1, max_questions=None)
    batch = build_training_data("squad_batch")
    assert len(batch.rows) == sum(len(p.questions) for p in passages)
    p = passages[0]
    assert batch.rows[1]["prompt"] == squad.batch_prompt(p, 1)
    assert batch.rows[1]["completion"].strip() == squad.format_answer(p.questions[1].answers[0])
    seq = build_training_data("squad_sequential")
    assert len(seq.rows) == len(passages)
    golds = [squad.format_answer(q.answers[0]) for q in p.questions]
    messages = seq.rows[0]["messages"]
    assert messages[:-1] == squad.sequential_messages(p, golds)[: len(messages) - 1]
    assert [m["content"] for m in messages if m["role"] == "assistant"] == golds


def test_gsm8k_rows_are_r1_zero():
    data = build_training_data("gsm8k_r1_zero", max_examples=3)
    item = math_family.load_gsm8k("train")[2]
    assert data.rows[2]["prompt"] == math_family.r1_zero_prompt(item["question"])
    assert data.rows[2]["prompt"].endswith("Assistant: <think>")
    completion = data.rows[2]["completion"]
    assert completion.endswith(f"</think> <answer> {item['answer']} </answer>") and "####" not in completion


def test_families_do_not_overlap_their_eval_split():
    for task in ("recipe_mpr", "squad_batch", "gsm8k_r1_zero"):
        check_no_overlap(build_training_data(task), task, [])


def test_guard_refuses_training_on_eval_items(monkeypatch):
    data = build_training_data("recipe_mpr", fold=0)
    with pytest.raises(QAPackError, match=r"^100 training row\(s\) contain evaluation documents of recipe_mpr_fold3"):
        check_no_overlap(data, "recipe_mpr", ["recipe_mpr_fold3"])
    # a fold file whose train and test parts overlap is caught
    train, test = r.load_folds()[0]
    monkeypatch.setattr(r.data, "load_folds", lambda: ((train, test + train[:1]),) * 5)
    with pytest.raises(QAPackError, match="1 training row.* of recipe_mpr_gen_fold0"):
        check_no_overlap(data, "recipe_mpr", [])


def test_guard_refuses_gsm8k_test_question():
    data = build_training_data("gsm8k_r1_zero", max_examples=2)
    leaked = math_family.load_gsm8k("test")[7]
    data.rows[1] = {"prompt": math_family.r1_zero_prompt(leaked["question"]), "completion": " x"}
    with pytest.raises(QAPackError, match="1 training row.* of gsm8k_think .*training example 2"):
        check_no_overlap(data, "gsm8k_r1_zero", [])


def test_guard_scans_user_jsonl_for_eval_items(tmp_path):
    doc = r.build_docs(0, "test")[0]
    path = tmp_path / "leak.jsonl"
    path.write_text(json.dumps({"prompt": r.gen_prompt(doc), "completion": " A"}) + "\n")
    with pytest.raises(QAPackError, match="1 training row.* of recipe_mpr_gen_fold0 .*leak.jsonl row 1"):
        check_no_overlap(read_user_jsonl(path), "jsonl", ["recipe_mpr_gen_fold0"])
    check_no_overlap(read_user_jsonl(path), "jsonl", ["recipe_mpr_gen_fold1"])  # fold 1 test is elsewhere


@pytest.mark.parametrize("lines, words", [
    ([{"text": "hi"}], "needs `messages` or both `prompt` and `completion`"),
    ([{"messages": [{"role": "user", "content": "hi"}]}], "no assistant turn"),
    ([{"messages": [{"role": "bot", "content": "hi"}]}], "each message needs role"),
    ([{"prompt": "a", "completion": ""}], "empty completion"),
    ([{"prompt": "a", "completion": "b"}, {"messages": [{"role": "assistant", "content": "x"}]}], "mixes row formats"),
], ids=["no-fields", "no-assistant", "bad-role", "empty", "mixed"])
def test_user_jsonl_errors(tmp_path, lines, words):
    path = tmp_path / "d.jsonl"
    path.write_text("".join(json.dumps(x) + "\n" for x in lines))
    with pytest.raises(QAPackError, match=words):
        read_user_jsonl(path)


def test_user_jsonl_formats(tmp_path):
    path = tmp_path / "d.jsonl"
    rows = [{"messages": [{"role": "system", "content": "be brief"}, {"role": "user", "content": "2+2?"},
                          {"role": "assistant", "content": "4"}], "id": 1}]
    path.write_text("".join(json.dumps(x) + "\n" for x in rows))
    data = read_user_jsonl(path)
    assert data.format == "messages" and data.rows == [{"messages": rows[0]["messages"]}]
    path.write_text('{"prompt": "Q: 2+2?\\nA:", "completion": " 4"}\n\n')
    assert read_user_jsonl(path).rows == [{"prompt": "Q: 2+2?\nA:", "completion": " 4"}]
    path.write_text("{broken\n")
    with pytest.raises(QAPackError, match="line 1 is not valid JSON"):
        read_user_jsonl(path)


# --- loss masks and padding sides, through TRL's own dataset preparation -------------------------

def _trainer(tiny_model, tmp_path, data):
    import datasets
    from transformers import AutoModelForCausalLM, AutoTokenizer
    from trl import SFTConfig, SFTTrainer

    from finetune.config import ModelArguments
    from finetune.sft import lora_config, prepare_config

    args = SFTConfig(output_dir=str(tmp_path / "o"), use_cpu=True, bf16=False, report_to="none",
                     max_length=4096, dataset_num_proc=None)
    prepare_config(args, data)
    tok = AutoTokenizer.from_pretrained(tiny_model)
    tok.padding_side = "right"
    model = AutoModelForCausalLM.from_pretrained(tiny_model)
    return tok, SFTTrainer(model=model, args=args, train_dataset=datasets.Dataset.from_list(data.rows),
                           processing_class=tok, peft_config=lora_config(ModelArguments()))


def _learned(tok, example) -> str:
    return tok.decode([t for t, lab in zip(example["input_ids"], example["labels"]) if lab != -100])


def test_completion_loss_covers_exactly_the_answer(tiny_model, tmp_path):
    data = build_training_data("recipe_mpr", fold=0, max_examples=6)
    tok, trainer = _trainer(tiny_model, tmp_path, data)
    for row, example in zip(data.rows, trainer.train_dataset):
        assert _learned(tok, example) == row["completion"] + tok.eos_token
        prompt_part = tok.decode([t for t, lab in zip(example["input_ids"], example["labels"]) if lab == -100])
        assert prompt_part == row["prompt"]
    batch = trainer.data_collator([trainer.train_dataset[i] for i in range(4)])
    lengths = batch["attention_mask"].sum(1)
    assert (lengths < batch["attention_mask"].shape[1]).any()
    for row, n in zip(batch["attention_mask"], lengths):  # training pads on the right
        assert row[:n].all() and not row[n:].any()


def test_assistant_loss_covers_exactly_the_assistant_turns(tiny_model, tmp_path):
    data = build_training_data("squad_sequential", max_examples=3)
    tok, trainer = _trainer(tiny_model, tmp_path, data)
    for row, example in zip(data.rows, trainer.train_dataset):
        answers = [m["content"] + "<|im_end|>" for m in row["messages"] if m["role"] == "assistant"]
        assert _learned(tok, example) == "".join(answers)
        for m in row["messages"]:
            if m["role"] == "user":
                assert m["content"][:40] not in _learned(tok, example)


@pytest.mark.parametrize("case,mutate,message", [
    ("answer_list", lambda rec: rec.update(answer=[rec["answer"]]), r"\(list\), expected the id of its correct option"),
    ("two_options_same_text", lambda rec: rec["options"].update({list(rec["options"])[1]: rec["options"][rec["answer"]]}),
     "with the same text"),
])
def test_malformed_recipe_record_is_one_line_when_building_training_data(tmp_path, monkeypatch, case, mutate, message):
    """finetune.sft builds its rows through the eval loader: a bad record is one line naming it, not a traceback."""
    records = json.loads(json.dumps(r.load_records()[:4]))
    mutate(records[3])
    (tmp_path / "recipe_mpr").mkdir()
    (tmp_path / "recipe_mpr" / "500QA.json").write_text(json.dumps(records))
    monkeypatch.setenv("QA_PACK_DATA_DIR", str(tmp_path))
    r.load_records.cache_clear()
    try:
        with pytest.raises(QAPackError, match=message) as err:
            build_training_data("recipe_mpr", fold=0)
    finally:
        r.load_records.cache_clear()
    assert "record 3 (" in str(err.value) and "\n" not in str(err.value)


@pytest.fixture
def local_math(tmp_path, monkeypatch):
    """A local MATH copy (QA_PACK_HENDRYCKS_MATH_DIR): two train and one test problem per subject."""
    for subject in math_family.HENDRYCKS_SUBJECTS:
        rows = {"train": [{"problem": f"In {subject}, what is {k} plus {k} when both are whole numbers?",
                           "solution": f"Adding gives $\\boxed{{{2 * k}}}$.", "level": "Level 1", "type": subject}
                          for k in (1, 2)],
                "test": [{"problem": f"In {subject}, what is seven times seven for this test problem?",
                          "solution": "It is $\\boxed{49}$.", "level": "Level 2", "type": subject}]}
        for split, part in rows.items():
            path = tmp_path / subject / f"{split}.jsonl"
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text("".join(json.dumps(x) + "\n" for x in part))
    monkeypatch.setenv(math_family.HENDRYCKS_ENV, str(tmp_path))
    math_family.load_hendrycks_math.cache_clear()
    yield tmp_path
    math_family.load_hendrycks_math.cache_clear()


def test_math_train_rows_for_sft_and_grpo_come_from_the_train_split(local_math):
    from finetune.grpo_data import build_prompts

    data = build_training_data("math_r1_zero")
    assert len(data.rows) == 14 and data.split == "train"
    first = math_family.load_hendrycks_math("train")[0]
    assert data.rows[0] == {"prompt": math_family.r1_zero_prompt(first["problem"]),
                            "completion": math_family.r1_zero_completion(first["solution"], "2")}
    prompts = build_prompts("math_r1_zero")
    assert [r["gold"] for r in prompts.rows[:2]] == ["2", "4"] and prompts.rows[0]["prompt"] == data.rows[0]["prompt"]
    check_no_overlap(data, "math_r1_zero", [])  # train and test problems differ


def test_guard_keeps_the_math_test_set_out_of_math_training(local_math):
    data = build_training_data("math_r1_zero")
    leaked = math_family.load_hendrycks_math("test")[3]
    data.rows[5] = {"prompt": math_family.r1_zero_prompt(leaked["problem"]), "completion": " x"}
    with pytest.raises(QAPackError, match="1 training row.* of hendrycks_math_think .*training example 6"):
        check_no_overlap(data, "math_r1_zero", [])


def test_math_train_missing_from_the_local_copy_is_one_line(local_math):
    (local_math / "geometry" / "train.jsonl").unlink()
    math_family.load_hendrycks_math.cache_clear()
    with pytest.raises(QAPackError, match=r"geometry/train.jsonl is missing; the local MATH copy .* needs "
                                          r"<subject>/train.jsonl"):
        build_training_data("math_r1_zero")
