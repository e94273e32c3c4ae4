"""Typed, documented configuration of ``python -m finetune.sft`` and one parser over all of it.

Three dataclasses are parsed together by TRL's ``TrlParser``: :class:`TaskArguments` (model,
training data, evaluation during training), :class:`LoraArguments` (LoRA / QLoRA) and TRL's own
``SFTConfig`` (learning rate, epochs, batch size, ``report_to`` ...). Every field works as a key of the
``--config`` YAML file and as a ``--field value`` flag; flags win over the file.

On a machine without CUDA the defaults become ``use_cpu=True, bf16=False`` (SFTConfig defaults to bf16
and refuses to start on CPU otherwise).
"""

from __future__ import annotations

import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from finetune.loggers import require_loggers
from qa_tasks.errors import QAPackError
from qa_tasks.extras import require
from qa_tasks.family import training_sets

__all__ = [
    "RUN_FILE",
    "TASKS",
    "LoraArguments",
    "SftParser",
    "TaskArguments",
    "cpu_defaults",
    "parse_config",
    "validate",
]

# Training data: task name -> what it trains on; the families' training sets (qa_tasks.family), then the
# user's own file (see finetune.data)
TASKS = {**{name: ts.help for name, (_, ts) in training_sets().items()},
         "jsonl": "`data_path`: JSONL rows with chat `messages` or `prompt`/`completion`"}
RUN_FILE = "run_config.json"  # written when a run starts; identifies the run an output dir holds


def read_yaml_mapping(path: Path, what: str, shape: str) -> dict:
    """A YAML file that must hold a mapping, or one line saying what is wrong with it."""
    import yaml

    try:
        loaded = yaml.safe_load(path.read_text(encoding="utf-8"))
    except OSError as e:
        raise QAPackError(f"cannot read {what} {path}: {e.strerror}; check the path") from None
    except UnicodeDecodeError:
        raise QAPackError(f"{what} {path} is not UTF-8 text; save it as UTF-8 YAML") from None
    except yaml.YAMLError as e:
        raise QAPackError(f"{what} {path} is not valid YAML ({str(e).splitlines()[0]})") from None
    if not isinstance(loaded, dict):
        raise QAPackError(f"{what} {path} must be a YAML mapping {shape}")
    return loaded


@dataclass
class TaskArguments:
    """What to train and on which data; evaluation during training."""

    model_name_or_path: str = field(default=None, metadata={"help": "Base model: local folder or Hub id."})
    task: str = field(default=None, metadata={"help": f"Training data family, one of: {', '.join(TASKS)}."})
    fold: int = field(default=0, metadata={"help": "recipe_mpr: fold 0..4 (train indices; its test split is the "
                                                   "eval split of recipe_mpr_fold<k> / recipe_mpr_gen_fold<k>)."})
    data_path: str | None = field(default=None, metadata={"help": "jsonl: path of the JSONL training file."})
    max_examples: int | None = field(default=None, metadata={"help": "Keep only the first N examples."})
    dtype: str = field(default="auto", metadata={"help": "Weights dtype: auto (bfloat16 on CUDA, float32 on "
                                                         "CPU), float32, bfloat16, float16."})
    eval_tasks: str | None = field(default=None, metadata={
        "help": "Comma-separated lm-eval tasks run on the current adapter every `eval_steps` steps and at the end; "
                "results go to OUTPUT_DIR/eval/step-<step>/ in lm-eval's output layout."})
    eval_limit: float | None = field(default=None, metadata={"help": "lm-eval --limit for evaluation during "
                                                                     "training (count, or fraction < 1)."})
    eval_batch_size: int = field(default=8, metadata={"help": "lm-eval batch size during training."})
    eval_gen_kwargs: str | None = field(default=None, metadata={"help": "lm-eval --gen_kwargs, e.g. "
                                                                        "max_gen_toks=256."})
    validation_size: float | None = field(default=None, metadata={
        "help": "Hold out this many training examples (count, or fraction < 1; seeded by validation_seed) as a "
                "validation split that is never trained on; eval_tasks are then scored on the held-out documents "
                "only, never on an evaluation split (python -m finetune.sweep selects on it)."})
    validation_seed: int = field(default=0, metadata={"help": "Seed of the validation split's random draw."})
    resume: bool = field(default=False, metadata={"help": "Continue the run in output_dir from its last "
                                                          "checkpoint."})


@dataclass
class LoraArguments:
    """Adapter: LoRA on a full-precision base, or QLoRA on a 4-bit NF4 base (bitsandbytes)."""

    method: Literal["lora", "qlora"] = field(default="lora", metadata={"help": "lora or qlora."})
    lora_r: int = field(default=16, metadata={"help": "LoRA rank (> 0)."})
    lora_alpha: int = field(default=32, metadata={"help": "LoRA alpha (scaling = alpha / r)."})
    lora_dropout: float = field(default=0.05, metadata={"help": "Dropout on the LoRA input, 0 <= p < 1."})
    lora_target_modules: str = field(default="all-linear", metadata={
        "help": "'all-linear', or a comma-separated list of module names (e.g. q_proj,k_proj,v_proj,o_proj)."})
    lora_modules_to_save: str = field(default="", metadata={
        "help": "Comma-separated modules trained in full and saved with the adapter (peft modules_to_save), e.g. "
                "lm_head when the output layer must move (new tokens, an untrained head). vLLM's lora_local_path "
                "refuses such adapters: merge first (python -m finetune.merge)."})
    bnb_4bit_quant_type: Literal["nf4", "fp4"] = field(default="nf4", metadata={"help": "qlora: 4-bit type."})
    bnb_4bit_use_double_quant: bool = field(default=True, metadata={"help": "qlora: quantize the quantization "
                                                                           "constants too."})
    bnb_4bit_compute_dtype: str = field(default="auto", metadata={"help": "qlora: compute dtype, auto "
                                                                         "(bfloat16 on CUDA, float32 on CPU)."})

    def target_modules(self) -> str | list[str]:
        value = self.lora_target_modules.strip()
        return value if value == "all-linear" else _names(value)

    def modules_to_save(self) -> list[str] | None:
        return _names(self.lora_modules_to_save) or None


def _names(value: str) -> list[str]:
    return [m.strip() for m in value.split(",") if m.strip()]


def cpu_defaults() -> dict:
    """SFTConfig defaults for a machine without CUDA."""
    import torch

    return {} if torch.cuda.is_available() else {"use_cpu": True, "bf16": False}


class SftParser:
    """TRL's ``TrlParser`` over the three dataclasses: ``--config FILE.yaml`` (with its ``env:`` mapping) reads
    as it does for ``trl sft``, ``--field value`` flags win over the file; mistakes are one line."""

    def __init__(self, groups: tuple = (TaskArguments, LoraArguments), training_config: str = "SFTConfig",
                 prog: str = "python -m finetune.sft"):
        """``groups`` then TRL's ``training_config`` (a class name in ``trl``) are parsed together."""
        require("train", what=prog)
        import trl
        from trl import TrlParser

        self.prog = prog

        class _Parser(TrlParser):
            def error(self, message):  # argparse prints usage + message; one line is enough here
                raise QAPackError(f"{message}; run `{prog} --help` for the options")

        self.parser = _Parser((*groups, getattr(trl, training_config)), prog=prog)

    def _check_config_file(self, argv: list[str]) -> None:
        """What TrlParser would report as a traceback, said in one line first."""

        i = argv.index("--config")
        if i + 1 >= len(argv):
            raise QAPackError("--config needs a YAML file path")
        path = Path(argv[i + 1])
        loaded = read_yaml_mapping(path, "config", "of field: value")
        if not isinstance(loaded.pop("env", None) or {}, dict):
            raise QAPackError(f"config {path}: `env` must be a mapping of variable: value")
        unknown = sorted(set(loaded) - {a.dest for a in self.parser._actions})
        if unknown:
            raise QAPackError(f"config {path}: unknown field(s) {', '.join(unknown)}; "
                              f"see `{self.prog} --help-all`")

    def parse(self, argv: list[str]) -> tuple:
        """One instance per group, the training config last."""
        argv = list(argv)
        if "--config" in argv:
            self._check_config_file(argv)
        self.parser.set_defaults_with_config(**cpu_defaults())  # the config file and flags still win
        try:
            *groups, sft = self.parser.parse_args_and_config(argv)
        except (ValueError, TypeError) as e:  # SFTConfig/TrainingArguments __post_init__ checks
            raise QAPackError(f"bad training option: {str(e).splitlines()[0]}") from None
        if isinstance(sft.report_to, list):  # `--report_to tensorboard,wandb` names two loggers
            sft.report_to = [name.strip() for item in sft.report_to for name in item.split(",") if name.strip()]
        return (*groups, sft)


def parse_config(argv: list[str] | None = None):
    """(TaskArguments, LoraArguments, SFTConfig) from ``argv`` (default: sys.argv[1:]); ``--help`` prints the
    pack's own options and exits, ``--help-all`` every option."""
    argv = sys.argv[1:] if argv is None else list(argv)
    if "--help-all" in argv:
        SftParser().parser.print_help()
        raise SystemExit(0)
    if "-h" in argv or "--help" in argv:
        from finetune.cli_help import short_help

        print(short_help("python -m finetune.sft", "Fine-tune a LoRA / QLoRA adapter with TRL's SFTTrainer.",
                         (("task, data and evaluation during training", TaskArguments),
                          ("adapter (LoRA / QLoRA)", LoraArguments))))
        raise SystemExit(0)
    return SftParser().parse(argv)


def _model_config(name: str):
    """The model's config.json only (no weights): proves the path and gives the module layout."""
    from transformers import AutoConfig

    path = Path(name).expanduser()
    looks_local = path.exists() or name.startswith((".", "/", "~")) or name.count("/") > 1
    if looks_local and not (path / "config.json").is_file():
        raise QAPackError(f"model_name_or_path={name}: no model there (expected a folder with config.json); "
                          "fix the path")
    try:
        return AutoConfig.from_pretrained(str(path) if looks_local else name)
    except (OSError, ValueError) as e:
        reason = str(e).splitlines()[0] if str(e) else type(e).__name__
        raise QAPackError(f"model_name_or_path={name}: cannot load its config ({reason[:160]}); give a local "
                          "model folder or a Hub id that is cached (HF_HUB_OFFLINE=1 allows no download)") from None


def _module_layout(config) -> tuple[list[str], list[str], set[str]]:
    """All module names, the Linear / Conv1D ones, and the embedding layers' names (input and output),
    from the architecture built on the meta device (no weights)."""
    import torch
    from transformers import AutoModelForCausalLM

    with torch.device("meta"):
        model = AutoModelForCausalLM.from_config(config)
    modules = [(name, m) for name, m in model.named_modules() if name]
    linear = [name for name, m in modules if isinstance(m, torch.nn.Linear) or type(m).__name__ == "Conv1D"]
    ends = (model.get_input_embeddings(), model.get_output_embeddings())
    embeddings = {name for name, m in modules if any(m is e for e in ends)}
    return [name for name, _ in modules], linear, embeddings


def _matches(target: str, names) -> bool:
    """peft's rule: a target names a module exactly or as a '.'-suffix."""
    return any(n == target or n.endswith("." + target) for n in names)


def _unmatched_targets(targets: list[str], names: list[str]) -> list[str]:
    """Entries of a LoRA target list that match no module."""
    return [t for t in targets if not _matches(t, names)]


def _check_training_options(sft) -> None:
    """What TrainingArguments accepts but fails (or silently does nothing) once the model is loaded."""
    if not sft.learning_rate > 0:
        raise QAPackError(f"learning_rate={sft.learning_rate} must be > 0 (LoRA runs use 1e-5..2e-4, e.g. 1e-4)")
    if sft.max_steps <= 0 and not sft.num_train_epochs > 0:
        raise QAPackError(f"max_steps={sft.max_steps} and num_train_epochs={sft.num_train_epochs} train 0 steps; "
                          "set max_steps > 0 or num_train_epochs > 0")
    for name in ("per_device_train_batch_size", "gradient_accumulation_steps"):
        if getattr(sft, name) <= 0:
            raise QAPackError(f"{name}={getattr(sft, name)} must be > 0")
    if sft.save_steps is not None and sft.save_steps <= 0:
        raise QAPackError(f"save_steps={sft.save_steps} must be > 0")
    if getattr(sft, "max_length", None) is not None and sft.max_length <= 0:  # GRPOConfig has none
        raise QAPackError(f"max_length={sft.max_length} must be > 0 (or null for no truncation)")


def _check_output_dir(task: TaskArguments, sft) -> None:
    out = Path(sft.output_dir)
    if out.exists() and not out.is_dir():
        raise QAPackError(f"output_dir={out} is a file; choose a folder")
    has_run = out.is_dir() and (out / RUN_FILE).is_file()
    if task.resume:
        if not has_run:
            raise QAPackError(f"--resume: output_dir={out} holds no run to continue ({RUN_FILE} missing); "
                              "drop --resume to start a new run")
        from finetune.manifest import run_finished

        if run_finished(out):
            raise QAPackError(f"--resume: the run in {out} already finished (manifest.json present); "
                              "choose a new output_dir")
    elif out.is_dir() and any(out.iterdir()):
        what = "another run" if has_run else "other files"
        raise QAPackError(f"output_dir={out} already holds {what}; pass --resume to continue it or choose an "
                          "empty/new output_dir")


def validate(task: TaskArguments, lora: LoraArguments, sft) -> object:
    """Every user mistake found before any model loads; returns the model's config."""
    if not task.model_name_or_path:
        raise QAPackError("model_name_or_path is required (a local model folder or a Hub id)")
    if task.task not in TASKS:
        raise QAPackError(f"task={task.task!r} is unknown; use one of: {', '.join(TASKS)}")
    folds = training_sets()[task.task][1].folds if task.task in training_sets() else 0
    if folds and not 0 <= task.fold < folds:
        raise QAPackError(f"fold={task.fold} is not valid; use 0..{folds - 1}")
    if task.task == "jsonl":
        if not task.data_path:
            raise QAPackError("task=jsonl needs data_path (a JSONL file with `messages` or `prompt`/`completion`)")
        if not Path(task.data_path).is_file():
            raise QAPackError(f"data_path={task.data_path} does not exist; fix the path")
    if task.max_examples is not None and task.max_examples <= 0:
        raise QAPackError(f"max_examples={task.max_examples} must be > 0")
    if lora.lora_r <= 0:
        raise QAPackError(f"lora_r={lora.lora_r} must be > 0 (published studies use 8-64, e.g. 16)")
    if lora.lora_alpha <= 0:
        raise QAPackError(f"lora_alpha={lora.lora_alpha} must be > 0 (e.g. 2 * lora_r)")
    if not 0 <= lora.lora_dropout < 1:
        raise QAPackError(f"lora_dropout={lora.lora_dropout} must be in [0, 1)")
    for name, value in (("dtype", task.dtype), ("bnb_4bit_compute_dtype", lora.bnb_4bit_compute_dtype)):
        if value not in ("auto", "float32", "bfloat16", "float16"):
            raise QAPackError(f"{name}={value!r} is not valid; use auto, float32, bfloat16 or float16")
    if task.validation_size is not None:
        size = task.validation_size
        if not (0 < size < 1 or (size >= 1 and float(size).is_integer())):
            raise QAPackError(f"validation_size={size} must be a fraction in (0, 1) or a whole count >= 1")
        if not task.eval_tasks:
            raise QAPackError("validation_size holds examples out for eval_tasks to score; set eval_tasks too "
                              "(e.g. recipe_mpr_gen)")
    if lora.method == "qlora":  # transformers finds out only once the base model loads
        require("train", "bitsandbytes", what="method=qlora")
    require_loggers(sft.report_to, "report_to")
    if task.eval_tasks:
        from finetune.eval_callback import check_tasks

        check_tasks(task.eval_tasks)
        if task.eval_limit is not None and task.eval_limit <= 0:
            raise QAPackError(f"eval_limit={task.eval_limit} must be > 0")
        if sft.eval_steps is not None and sft.eval_steps <= 0:
            raise QAPackError(f"eval_steps={sft.eval_steps} must be > 0")
    _check_training_options(sft)
    _check_output_dir(task, sft)
    config = _model_config(task.model_name_or_path)
    names, linear, embeddings = _module_layout(config)
    targets = lora.target_modules()
    if targets != "all-linear":
        if not targets:
            raise QAPackError("lora_target_modules is empty; use all-linear or a list such as q_proj,v_proj")
        missing = _unmatched_targets(targets, linear)
        if missing:
            leaves = sorted({n.rsplit(".", 1)[-1] for n in linear if n not in embeddings})
            raise QAPackError(f"lora_target_modules {', '.join(missing)} match no module of "
                              f"{task.model_name_or_path}; its linear modules are: {', '.join(leaves)}")
        heads = [t for t in targets if _matches(t, embeddings)]
        if heads:  # TRL computes the loss from lm_head.weight directly: an adapter there would never train
            raise QAPackError(f"lora_target_modules {', '.join(heads)} is the output layer, which TRL cannot "
                              "train through an adapter; train it in full with lora_modules_to_save instead")
    saved = lora.modules_to_save() or []
    missing = _unmatched_targets(saved, names)
    if missing:
        raise QAPackError(f"lora_modules_to_save {', '.join(missing)} match no module of {task.model_name_or_path}"
                          f"; e.g. {', '.join(sorted(n.rsplit('.', 1)[-1] for n in embeddings))}")
    tied = [m for m in saved if _matches(m, embeddings)]
    if tied and getattr(config, "tie_word_embeddings", False):  # lm-eval's tie_weights() fails on the saved copy
        raise QAPackError(f"lora_modules_to_save {', '.join(tied)}: {task.model_name_or_path} ties its input and "
                          "output embeddings, and an adapter holding a copy of a tied layer does not load back "
                          "into lm-eval; drop it, or use a model with untied embeddings")
    return config
