"""The baseline of bench_sft.py: a plain TRL SFTTrainer script, no finetune module.

    python bench/plain_trl_sft.py MODEL OUT_DIR MAX_STEPS BATCH   (Recipe-MPR fold 0 train rows, LoRA r=16)

Saves the adapter into OUT_DIR and prints one JSON line with the trainer's metrics and the tokens it trained on.
"""

import json
import sys

import datasets
import torch
from peft import LoraConfig
from transformers import AutoModelForCausalLM, AutoTokenizer
from trl import SFTConfig, SFTTrainer

from qa_tasks import recipe_mpr as r

model_path, out, max_steps, batch = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
rows = [{"prompt": r.gen_prompt(d), "completion": r.gen_completion(d)} for d in r.build_docs(0, "train")]
tok = AutoTokenizer.from_pretrained(model_path)
model = AutoModelForCausalLM.from_pretrained(model_path, dtype=torch.float32)
args = SFTConfig(output_dir=out, use_cpu=not torch.cuda.is_available(), bf16=False, max_steps=max_steps,
                 per_device_train_batch_size=batch, gradient_accumulation_steps=1, learning_rate=2e-4,
                 warmup_steps=0, logging_steps=1, save_steps=100000, report_to="none", seed=42, max_length=512,
                 disable_tqdm=True, completion_only_loss=True)
trainer = SFTTrainer(model=model, args=args, train_dataset=datasets.Dataset.from_list(rows), processing_class=tok,
                     peft_config=LoraConfig(r=16, lora_alpha=32, lora_dropout=0.05, target_modules="all-linear",
                                            task_type="CAUSAL_LM"))
result = trainer.train()
trainer.save_model(out)  # the adapter, as every training script ends (finetune.sft saves it too)
tokens = [e["num_tokens"] for e in trainer.state.log_history if "num_tokens" in e][-1]
print("BENCH " + json.dumps({**result.metrics, "num_tokens": tokens}))
