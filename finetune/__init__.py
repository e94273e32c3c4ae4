"""LoRA / QLoRA fine-tuning with TRL on the pack's own prompts, producing adapters lm-eval evaluates.

``python -m finetune.sft`` trains, ``python -m finetune.watch`` evaluates checkpoints as they appear,
``python -m finetune.merge`` exports a merged model. See ``finetune.sft`` for the commands.
"""

__all__: list[str] = []
