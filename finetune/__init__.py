"""LoRA / QLoRA fine-tuning with TRL on the pack's own prompts, producing adapters lm-eval evaluates.

``python -m finetune.sft`` trains, ``python -m finetune.watch`` evaluates checkpoints as they appear,
``python -m finetune.merge`` exports a merged model. See ``finetune.sft`` for the commands.
"""

__all__: list[str] = []

import logging as _logging

# bitsandbytes' CPU backend logs a warning at import when the optional `kernels` package is absent; its own
# fallback is what runs, so the line only alarms (sft, watch and merge all start here)
_logging.getLogger("bitsandbytes.backends.cpu.ops").setLevel(_logging.ERROR)
