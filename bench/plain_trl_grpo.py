"""The baseline of bench_grpo.py: a plain TRL GRPOTrainer script, no finetune module.

    python bench/plain_trl_grpo.py MODEL OUT_DIR MAX_STEPS BATCH GENERATIONS COMPLETION_TOKENS N_PROMPTS

GSM8K train prompts (r1_zero), the same reward functions as finetune.grpo (format, answer), LoRA r=16.
Saves the adapter into OUT_DIR and prints one JSON line with the trainer's metrics.
"""

import json
import sys

import datasets
import torch
from peft import LoraConfig
from transformers import AutoModelForCausalLM, AutoTokenizer
from trl import GRPOConfig, GRPOTrainer

from finetune.rewards import answer_reward, format_reward
from qa_tasks.math import load_gsm8k, r1_zero_prompt

model_path, out = sys.argv[1], sys.argv[2]
max_steps, batch, generations, tokens, n = (int(x) for x in sys.argv[3:8])
rows = [{"prompt": r1_zero_prompt(x["question"]), "gold": x["answer"]} for x in load_gsm8k("train")[:n]]
tok = AutoTokenizer.from_pretrained(model_path)
if tok.pad_token is None:
    tok.pad_token = tok.eos_token
model = AutoModelForCausalLM.from_pretrained(model_path, dtype=torch.float32)
args = GRPOConfig(output_dir=out, use_cpu=not torch.cuda.is_available(), bf16=False, max_steps=max_steps,
                  per_device_train_batch_size=batch, gradient_accumulation_steps=1, learning_rate=1e-4,
                  warmup_steps=0, logging_steps=1, save_steps=100000, report_to="none", seed=42,
                  disable_tqdm=True, num_generations=generations, max_completion_length=tokens,
                  reward_weights=[0.1, 1.0], beta=0.0, temperature=1.0, gradient_checkpointing=False)
trainer = GRPOTrainer(model=model, reward_funcs=[format_reward, answer_reward], args=args,
                      train_dataset=datasets.Dataset.from_list(rows), processing_class=tok,
                      peft_config=LoraConfig(r=16, lora_alpha=32, lora_dropout=0.05, target_modules="all-linear",
                                             task_type="CAUSAL_LM"))
result = trainer.train()
trainer.save_model(out)  # the adapter, as every training script ends (finetune.grpo saves it too)
print("BENCH " + json.dumps({**result.metrics, "global_step": trainer.state.global_step}))
