"""Supervised fine-tuning of a LoRA / QLoRA adapter with TRL's ``SFTTrainer``.

The training examples are built by the same prompt builders the evaluation tasks use (``finetune.data``),
the loss covers only completions / assistant turns, and the adapter directory loads straight into
lm-eval and vLLM::

    python -m finetune.sft --config finetune/configs/recipe_mpr_lora.yaml \\
        --model_name_or_path Qwen/Qwen2.5-0.5B-Instruct --output_dir runs/recipe_mpr_fold0
    python -m finetune.sft --config finetune/configs/gsm8k_r1_zero_qlora.yaml --learning_rate 1e-4 ...
    accelerate launch -m finetune.sft --config ...               # several processes / GPUs
    python -m finetune.sft --config ... --output_dir runs/x --resume   # continue an interrupted run
    lm_eval --model hf --model_args pretrained=BASE,peft=runs/recipe_mpr_fold0 --tasks recipe_mpr_gen_fold0

Every field of ``finetune.config`` and of TRL's ``SFTConfig`` and ``ModelConfig`` works as a YAML key and as
a flag (``--help`` lists the pack's own, ``--help-all`` all of them). SIGTERM/SIGINT stop within seconds at any
moment (training step, checkpoint save, evaluation, manifest write): the last complete checkpoint is kept,
manifest.json says ``"status": "interrupted"`` and the exit code is 143 (130 for SIGINT); ``--resume``
continues from that checkpoint.
"""

from __future__ import annotations

import json
import os
import shutil
import sys
from pathlib import Path
from types import SimpleNamespace

from finetune.config import RUN_FILE, adapter_record, parse_config, validate
from finetune.data import build_training_data
from finetune.interrupt import (
    EXIT_INTERRUPTED,
    Interrupt,
    Interrupted,
    TrainingDone,
    run_interruptible,
    stop_at_max_steps,
)
from finetune.manifest import build_manifest
from finetune.vllm_compat import warn_unservable
from qa_tasks.errors import QAPackError, exit_code_of
from qa_tasks.files import checkpoint_step, write_json
from qa_tasks.hardware import peak_memory, torch_dtype

__all__ = [
    "EXIT_INTERRUPTED",
    "Interrupted",
    "collect_evals",
    "last_checkpoint",
    "load_base_model",
    "lora_config",
    "main",
    "prepare_config",
    "run",
    "run_interruptible",
    "whole_run_loss",
]

_ADAPTER_FILES = ("adapter_config.json", "adapter_model.safetensors")


def load_base_model(model):
    """The base model of ``model`` (ModelArguments): full precision for LoRA, 4-bit (bitsandbytes,
    ``finetune.quant``) for QLoRA."""
    from transformers import AutoModelForCausalLM

    from finetune.quant import load_kwargs, quant_settings

    kwargs: dict = {"dtype": torch_dtype(model.dtype)}
    settings = quant_settings(model)
    if settings:
        from accelerate import PartialState

        kwargs = load_kwargs(settings, PartialState().local_process_index)
    return AutoModelForCausalLM.from_pretrained(model.model_name_or_path, revision=model.model_revision,
                                                attn_implementation=model.attn_implementation, **kwargs)


def lora_config(model):
    """The peft LoraConfig of ``model`` (ModelArguments), built by TRL's ``get_peft_config`` as ``trl sft``
    builds it."""
    from trl import get_peft_config

    return get_peft_config(model)


def prepare_config(sft, data) -> None:
    """Loss only on what the model should learn to write: the completion, or the assistant turns."""
    chat = data.format == "messages"
    sft.assistant_only_loss = chat
    sft.completion_only_loss = not chat


def last_checkpoint(output_dir: Path) -> Path | None:
    """The newest complete checkpoint (trainer_state.json is written last)."""
    done = [p for p in output_dir.glob("checkpoint-*")
            if checkpoint_step(p) is not None and (p / "trainer_state.json").is_file()]
    return max(done, key=checkpoint_step, default=None)


def collect_evals(output_dir: Path) -> list[dict]:
    """The evaluations written during training (OUT/eval/step-*), for the manifest."""
    out = []
    for step in sorted((output_dir / "eval").glob("step-*"), key=lambda p: int(p.name.split("-")[1])):
        files = sorted(step.glob("results_*.json"))
        if not files:
            continue
        results = json.loads(files[-1].read_text(encoding="utf-8"))
        metrics = {t: {k: v for k, v in m.items() if isinstance(v, (int, float)) and "stderr" not in k}
                   for t, m in results.get("results", {}).items()}
        out.append({"step": int(step.name.split("-")[1]), "results": str(files[-1].relative_to(output_dir)),
                    "metrics": metrics})
    return out


def _identity(task, model, data) -> dict:
    """What makes two invocations the same run (checked by --resume)."""
    record = adapter_record(model)
    return {"base_model": model.model_name_or_path, "task": task.task, "data_sha256": data.sha256,
            **{k: record[k] for k in ("method", "lora_r", "lora_alpha", "lora_target_modules")},
            **({"lora_modules_to_save": record["lora_modules_to_save"]} if record["lora_modules_to_save"] else {})}


# What shapes the optimisation from the first step on: a resumed run that changed one of these would train
# on with the checkpoint's optimizer and schedule while its manifest named the new value. Steps, saving,
# evaluation and logging may change on --resume.
RESUME_FIXED = ("learning_rate", "lr_scheduler_type", "lr_scheduler_kwargs", "warmup_ratio", "warmup_steps",
                "weight_decay", "adam_beta1", "adam_beta2", "adam_epsilon", "max_grad_norm", "optim",
                "per_device_train_batch_size", "gradient_accumulation_steps", "seed", "max_length", "packing",
                "completion_only_loss", "assistant_only_loss", "bf16", "fp16")


def _hyperparameters(model, sft) -> dict:
    """The run's optimisation settings as JSON values (checked by --resume)."""
    values = {name: getattr(sft, name, None) for name in RESUME_FIXED}
    values["lora_dropout"] = model.lora_dropout
    return json.loads(json.dumps(values, default=str))


def _check_resume(out: Path, identity: dict, hyperparameters: dict) -> None:
    try:
        stored = json.loads((out / RUN_FILE).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        raise QAPackError(f"--resume: {out / RUN_FILE} is unreadable or not JSON; it identifies the run to "
                          "continue: restore it, or start a new output_dir without --resume") from None
    diff = [k for k in identity if stored.get("identity", {}).get(k) != identity[k]]
    if diff:
        raise QAPackError(f"--resume: {out} holds a run with different {', '.join(diff)}; use the same "
                          "config as the interrupted run, or a new output_dir without --resume")
    before = stored.get("hyperparameters", {})  # runs started by older versions recorded none
    changed = [f"{k} {before[k]} -> {v}" for k, v in hyperparameters.items() if k in before and before[k] != v]
    if changed:
        raise QAPackError(f"--resume: {out} was trained with other settings ({'; '.join(changed)}); a resumed "
                          "run keeps the checkpoint's optimizer and schedule: resume with the run's own values, "
                          "or train the new ones in a new output_dir")


def whole_run_loss(log_history: list[dict], resumed_step: int, session_loss: float, global_step: int) -> float:
    """Mean training loss over every step of the run, also when it was resumed: the steps up to the
    checkpoint come from its log history (logged at every save), the rest from this session's trainer."""
    before, last = 0.0, 0
    for entry in log_history:
        if "loss" in entry and entry["step"] <= resumed_step:
            before += entry["loss"] * (entry["step"] - last)
            last = entry["step"]
    return (before + session_loss * (global_step - resumed_step)) / max(global_step, 1)


def _save_final(trainer, tokenizer, out: Path) -> None:
    """Adapter + tokenizer into OUT: saved beside it, then each file renamed into place."""
    tmp = out / f".final.tmp{os.getpid()}"
    shutil.rmtree(tmp, ignore_errors=True)
    trainer.save_model(str(tmp))
    # what generation needs; init_kwargs is what save_pretrained records
    tokenizer.padding_side = tokenizer.init_kwargs["padding_side"] = "left"
    tokenizer.save_pretrained(str(tmp))
    missing = [f for f in _ADAPTER_FILES if not (tmp / f).is_file()]
    if missing:
        raise QAPackError(f"the trainer did not write {', '.join(missing)} into {tmp}; check free disk space")
    for item in tmp.iterdir():
        target = out / item.name
        if target.is_dir():
            shutil.rmtree(target)
        os.replace(item, target)
    tmp.rmdir()


def _train_metrics(trainer, result, resume_from: Path | None, model_bytes: int) -> dict:
    metrics = dict(result.metrics) if result is not None else {}
    resumed = checkpoint_step(resume_from) if resume_from else 0
    if result is not None or (resume_from and trainer.state.global_step == resumed):  # nothing left to train
        metrics["train_loss"] = whole_run_loss(trainer.state.log_history, resumed,
                                               result.training_loss if result is not None else 0.0,
                                               trainer.state.global_step)
    logs = [entry for entry in trainer.state.log_history if "loss" in entry]
    if logs:
        metrics.update({"final_loss": logs[-1]["loss"], "num_tokens": logs[-1].get("num_tokens")})
        # a GRPO run also logs its rewards and the share of completions cut at max_completion_length
        metrics.update({f"final_{k}": v for k, v in logs[-1].items()
                        if k == "reward" or k.startswith("rewards/") or k == "completions/clipped_ratio"})
    metrics["global_step"] = trainer.state.global_step
    metrics.update(model_memory_bytes=model_bytes, **dict(zip(("peak_memory_bytes", "peak_memory_kind"), peak_memory())))
    if resume_from:
        metrics["resumed_from"] = resume_from.name
    return metrics


def _write_manifest(out: Path, task, model_args, sft, data, metrics: dict, world_size: int, status: str,
                    extra: dict | None = None) -> None:
    adapter = SimpleNamespace(**adapter_record(model_args))  # module lists as the config wrote them
    write_json(out / "manifest.json", build_manifest(task, adapter, sft, data, metrics, collect_evals(out),
                                                     world_size, status=status, extra=extra))


def run(argv: list[str] | None = None) -> int:
    return run_interruptible(_run, argv)


def _run(argv: list[str] | None, interrupt: Interrupt) -> int:
    task, model_args, sft = parse_config(argv)
    validate(task, model_args, sft)
    data = build_training_data(task.task, task.fold, task.data_path, task.max_examples)
    from finetune.eval_callback import split_tasks
    from finetune.guard import check_no_overlap

    eval_tasks = split_tasks(task.eval_tasks) if task.eval_tasks else []
    samples = None
    if task.validation_size is not None:  # eval_tasks then score held-out training documents, no eval split
        from finetune.validation import carve, validation_samples

        data, held_out = carve(data, task.validation_size, task.validation_seed)
        check_no_overlap(data, task.task, [], task.fold)
        samples = validation_samples(held_out, data, eval_tasks, task.eval_limit)
    else:
        check_no_overlap(data, task.task, eval_tasks, task.fold)
    out = Path(sft.output_dir)
    identity, hyperparameters = _identity(task, model_args, data), _hyperparameters(model_args, sft)
    if task.resume:
        _check_resume(out, identity, hyperparameters)

    # every check passed: from here on models load
    import datasets
    from accelerate import PartialState

    prepare_config(sft, data)
    PartialState().wait_for_everyone()  # every process has checked output_dir before it is claimed
    if sft.process_index == 0 and not task.resume:
        write_json(out / RUN_FILE, {"identity": identity, "hyperparameters": hyperparameters,
                                    "argv": list(argv or sys.argv[1:])})
    try:
        return _train(task, model_args, sft, data, eval_tasks, out, interrupt, datasets, samples)
    except BaseException:  # an error, or a signal while the model loads
        if sft.process_index == 0 and not task.resume and last_checkpoint(out) is None:
            shutil.rmtree(out, ignore_errors=True)  # a failed start leaves the folder free for the next try
        raise


def _sft_trainer(**kwargs):
    from trl import SFTTrainer

    return SFTTrainer(**kwargs)


def _train(task, model_args, sft, data, eval_tasks, out: Path, interrupt: Interrupt, datasets, samples=None,
           build_trainer=_sft_trainer, manifest_extra: dict | None = None) -> int:
    """Load, train, save, write the manifest. ``build_trainer(model=, args=, train_dataset=, processing_class=,
    peft_config=, callbacks=)`` makes the TRL trainer (SFTTrainer; finetune.grpo passes GRPOTrainer's);
    ``manifest_extra``: keys it adds to manifest.json."""
    from transformers import AutoTokenizer

    from finetune.eval_callback import EvalDuringTraining

    world_size = sft.world_size
    base = model_args.model_name_or_path
    tokenizer = AutoTokenizer.from_pretrained(base, revision=model_args.model_revision)
    tokenizer.padding_side = "right"  # training pads right; generation (eval, saved tokenizer) pads left
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    model = load_base_model(model_args)
    model_bytes = model.get_memory_footprint()  # 4-bit vs full-precision base, before the adapter
    from finetune.loggers import record_callback

    recorder = record_callback(out)
    callbacks = [interrupt.callback(), recorder]
    evaluator = None
    if eval_tasks:
        evaluator = EvalDuringTraining(eval_tasks, base, tokenizer,
                                       sft.eval_steps or sft.save_steps, None if samples else task.eval_limit,
                                       task.eval_batch_size, task.eval_gen_kwargs, interrupt=interrupt,
                                       samples=samples)
        callbacks.append(evaluator)
    callbacks.append(stop_at_max_steps())
    trainer = build_trainer(model=model, args=sft, train_dataset=datasets.Dataset.from_list(data.rows),
                            processing_class=tokenizer, peft_config=lora_config(model_args), callbacks=callbacks)
    recorder.trainer = trainer  # records where the trainer's loggers write, for finetune.watch
    if evaluator is not None:
        evaluator.trainer = trainer  # its scores go through the trainer's loggers (report_to)
    if sft.process_index == 0:  # once, not once per accelerate process
        warn_unservable(lora_config(model_args))  # a fresh one: the trainer may have changed its own
    resume_from = last_checkpoint(out) if task.resume else None
    if task.resume and resume_from is None:
        print(f"[finetune] {out} has no complete checkpoint yet; starting from step 0", flush=True)
    result = None
    try:
        interrupt.enter("train")
        try:
            result = trainer.train(resume_from_checkpoint=str(resume_from) if resume_from else None)
        except TrainingDone:  # the checkpoint holds the last step: its weights are the final adapter
            pass
        interrupt.enter("final")
        if trainer.is_world_process_zero() and interrupt.signum is None:
            _save_final(trainer, tokenizer, out)
    except Interrupted:
        pass
    interrupt.enter("final")
    if not trainer.is_world_process_zero():
        return interrupt.exit_code if interrupt.signum is not None else 0
    metrics = _train_metrics(trainer, result, resume_from, model_bytes)
    if interrupt.signum is None:
        _write_manifest(out, task, model_args, sft, data, metrics, world_size, "complete", manifest_extra)
    if interrupt.signum is not None:  # also when the signal came while the manifest was written
        kept = last_checkpoint(out)
        metrics.update(last_checkpoint=kept.name if kept else None, interrupted_at_step=metrics["global_step"],
                       global_step=checkpoint_step(kept) if kept else 0)
        _write_manifest(out, task, model_args, sft, data, metrics, world_size, "interrupted", manifest_extra)
        print(f"[finetune] interrupted at step {metrics['interrupted_at_step']}; last complete checkpoint: "
              f"{kept.name if kept else 'none'} in {out}; rerun the same command with --resume to continue",
              file=sys.stderr, flush=True)
        return interrupt.exit_code
    print(f"[finetune] adapter and manifest written to {out}", flush=True)
    return 0


def main(argv: list[str] | None = None) -> int:
    return exit_code_of(run, argv)


if __name__ == "__main__":
    sys.exit(main())
