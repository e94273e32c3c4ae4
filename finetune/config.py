"""Typed, documented configuration of ``python -m finetune.sft`` and one parser over all of it.

TRL's ``TrlParser`` parses three dataclasses together, as ``trl sft`` does: :class:`TaskArguments` (the
pack's own options: training data, evaluation during training, ``--resume``), TRL's ``SFTConfig`` (learning
rate, epochs, batch size, ``report_to`` ...) and :class:`ModelArguments`, TRL's ``ModelConfig`` (base model,
dtype, LoRA, 4-bit) with the pack's defaults and its few adapter options TRL has no field for (``method``,
``bnb_4bit_use_double_quant``, ``bnb_4bit_compute_dtype``). Every field works as a key of the ``--config``
YAML file and as a ``--field value`` flag; flags win over the file. ``validate`` finds every user mistake
before any model loads.

On a machine without CUDA the defaults become ``use_cpu=True, bf16=False`` (SFTConfig defaults to bf16
and refuses to start on CPU otherwise).
"""

from __future__ import annotations

import dataclasses
import functools
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from finetune.loggers import require_loggers
from finetune.run_checks import RUN_FILE, check_output_dir, check_training_options
from qa_tasks.errors import QAPackError
from qa_tasks.extras import require
from qa_tasks.family import training_sets

__all__ = [
    "RUN_FILE",
    "PackModelOptions",
    "SftParser",
    "TaskArguments",
    "adapter_record",
    "cpu_defaults",
    "help_text",
    "parse_config",
    "tasks",
    "validate",
]

CHOICES = "{choices}"  # in a help text: the training tasks known when the help is printed
DTYPES = ("auto", "float32", "bfloat16", "float16")


@functools.cache
def tasks() -> dict[str, str]:
    """Training data: task name -> what it trains on; the families' training sets (qa_tasks.family), then
    the user's own file (see finetune.data). Computed on first use, after every family has registered."""
    return {**{name: ts.help for name, (_, ts) in training_sets().items()},
            "jsonl": "`data_path`: JSONL rows with chat `messages` or `prompt`/`completion`"}


def __getattr__(name: str):
    if name == "ModelArguments":  # built on first use: TRL is an optional extra, and --help works without it
        return _model_arguments()
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


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
    """What to train on; evaluation during training. The base model is ``ModelArguments``' (``model``)."""

    task: str = field(default=None, metadata={"help": f"Training data family, one of: {CHOICES}."})
    fold: int = field(default=0, metadata={"help": "recipe_mpr: fold 0..4 (train indices; its test split is the "
                                                   "eval split of recipe_mpr_fold<k> / recipe_mpr_gen_fold<k>)."})
    data_path: str | None = field(default=None, metadata={"help": "jsonl: path of the JSONL training file."})
    max_examples: int | None = field(default=None, metadata={"help": "Keep only the first N examples."})
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
    # the parsed ModelArguments, set by SftParser.parse; not an option
    model: object = field(default=None, init=False, repr=False, compare=False)

    @property
    def model_name_or_path(self) -> str | None:
        return self.model.model_name_or_path if self.model is not None else None

    @property
    def dtype(self) -> str:
        return self.model.dtype if self.model is not None else "auto"


@dataclass
class PackModelOptions:
    """The pack's defaults and help texts for fields of TRL's ModelConfig, and its adapter options TRL has no
    field for: base model and dtype; LoRA on a full-precision base, or QLoRA on a 4-bit bitsandbytes base.
    Module lists are comma-separated (or a YAML list). Parsed as ``ModelArguments``."""

    model_name_or_path: str | None = field(default=None, metadata={"help": "Base model: local folder or Hub id."})
    dtype: str | None = field(default="auto", metadata={"help": "Weights dtype: auto (bfloat16 on CUDA, float32 "
                                                                "on CPU), float32, bfloat16, float16."})
    use_peft: bool = field(default=True, metadata={"help": "Train a LoRA adapter (the only kind these commands "
                                                           "train; must stay true)."})
    lora_r: int = field(default=16, metadata={"help": "LoRA rank (> 0)."})
    lora_alpha: int = field(default=32, metadata={"help": "LoRA alpha (scaling = alpha / r)."})
    lora_dropout: float = field(default=0.05, metadata={"help": "Dropout on the LoRA input, 0 <= p < 1."})
    lora_target_modules: list[str] | None = field(default="all-linear", metadata={
        "help": "'all-linear', or a comma-separated list of module names (e.g. q_proj,k_proj,v_proj,o_proj)."})
    lora_modules_to_save: list[str] | None = field(default=None, metadata={
        "help": "Comma-separated modules trained in full and saved with the adapter (peft modules_to_save), e.g. "
                "lm_head when the output layer must move (new tokens, an untrained head). vLLM's lora_local_path "
                "refuses such adapters: merge first (python -m finetune.merge)."})
    load_in_4bit: bool = field(default=False, metadata={"help": "4-bit base: the same as method=qlora."})
    bnb_4bit_quant_type: str = field(default="nf4", metadata={"help": "qlora: 4-bit type, nf4 or fp4.",
                                                              "choices": ["fp4", "nf4"]})
    use_bnb_nested_quant: bool = field(default=True, metadata={"help": "qlora: the same as "
                                                                       "bnb_4bit_use_double_quant."})
    method: Literal["lora", "qlora"] = field(default="lora", metadata={"help": "lora or qlora (4-bit NF4/FP4 "
                                                                              "base, bitsandbytes)."})
    bnb_4bit_use_double_quant: bool = field(default=True, metadata={"help": "qlora: quantize the quantization "
                                                                           "constants too."})
    bnb_4bit_compute_dtype: str = field(default="auto", metadata={"help": "qlora: compute dtype, auto "
                                                                         "(bfloat16 on CUDA, float32 on CPU)."})


@functools.cache
def _model_arguments() -> type:
    """``ModelArguments``: TRL's ModelConfig with ``PackModelOptions`` over it. Built on first use: TRL is an
    optional extra, and ``--help`` prints without it."""
    from trl import ModelConfig

    @dataclass
    class ModelArguments(PackModelOptions, ModelConfig):
        __doc__ = PackModelOptions.__doc__

        def __post_init__(self):
            super().__post_init__()
            # peft reads a single string as a regex over full module paths: names stay a list
            targets = _names(self.lora_target_modules)
            self.lora_target_modules = "all-linear" if targets in (None, ["all-linear"]) else targets
            self.lora_modules_to_save = _names(self.lora_modules_to_save) or None
            # TRL's names and the pack's name the same choices: either one sets them
            self.method = "qlora" if self.load_in_4bit or self.method == "qlora" else "lora"
            self.load_in_4bit = self.method == "qlora"
            nested = self.use_bnb_nested_quant and self.bnb_4bit_use_double_quant
            self.use_bnb_nested_quant = self.bnb_4bit_use_double_quant = nested

    ModelArguments.__module__, ModelArguments.__qualname__ = __name__, "ModelArguments"  # pickles by name
    return ModelArguments


def _names(value: str | list[str] | None) -> list[str] | None:
    """Module names from a comma-separated string or a list (each item may hold commas too)."""
    if value is None:
        return None
    items = [value] if isinstance(value, str) else value
    return [name.strip() for item in items for name in str(item).split(",") if name.strip()]


def adapter_record(model) -> dict:
    """The adapter settings as a run records them (run_config.json, manifest.json): module lists written
    comma-separated, as in a config file."""
    targets = model.lora_target_modules
    return {"method": model.method, "lora_r": model.lora_r, "lora_alpha": model.lora_alpha,
            "lora_dropout": model.lora_dropout,
            "lora_target_modules": targets if isinstance(targets, str) else ",".join(targets),
            "lora_modules_to_save": ",".join(model.lora_modules_to_save or []),
            **{k: getattr(model, k) for k in ("bnb_4bit_quant_type", "bnb_4bit_use_double_quant",
                                              "bnb_4bit_compute_dtype")}}


def help_text(cls, name: str) -> str:
    """The help of field ``name`` of ``cls``, with the training tasks known now in place of {choices}."""
    text = next(f for f in dataclasses.fields(cls) if f.name == name).metadata.get("help", "")
    return text.replace(CHOICES, ", ".join(tasks())) if CHOICES in text else text


def cpu_defaults() -> dict:
    """SFTConfig defaults for a machine without CUDA."""
    import torch

    return {} if torch.cuda.is_available() else {"use_cpu": True, "bf16": False}


class SftParser:
    """TRL's ``TrlParser`` over the pack's dataclasses, the training config and ModelArguments:
    ``--config FILE.yaml`` (with its ``env:`` mapping) reads as it does for ``trl sft``, ``--field value``
    flags win over the file; mistakes are one line."""

    def __init__(self, groups: tuple = (TaskArguments,), training_config: str = "SFTConfig",
                 prog: str = "python -m finetune.sft"):
        """``groups`` (the task's dataclass first), TRL's ``training_config`` (a class name in ``trl``) and
        ModelArguments are parsed together."""
        require("train", what=prog)
        import trl
        from trl import TrlParser

        self.prog = prog

        class _Parser(TrlParser):
            def error(self, message):  # argparse prints usage + message; one line is enough here
                raise QAPackError(f"{message}; run `{prog} --help` for the options")

        self.parser = _Parser((*groups, getattr(trl, training_config), _model_arguments()), prog=prog)
        for action in self.parser._actions:  # --help-all lists the choices known now
            if action.help and CHOICES in action.help:
                action.help = action.help.replace(CHOICES, ", ".join(tasks()))

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
        """(task, model, *other groups, training config): the task's dataclass, ModelArguments, the other
        groups, then the training config; ``task.model`` is the ModelArguments."""
        argv = list(argv)
        if "--config" in argv:
            self._check_config_file(argv)
        self.parser.set_defaults_with_config(**cpu_defaults())  # the config file and flags still win
        try:
            task, *groups, sft, model = self.parser.parse_args_and_config(argv)
        except (ValueError, TypeError) as e:  # SFTConfig/TrainingArguments __post_init__ checks
            raise QAPackError(f"bad training option: {str(e).splitlines()[0]}") from None
        if isinstance(sft.report_to, list):  # `--report_to tensorboard,wandb` names two loggers
            sft.report_to = [name.strip() for item in sft.report_to for name in item.split(",") if name.strip()]
        task.model = model
        return (task, model, *groups, sft)


MODEL_OPTIONS = ("model_name_or_path", "dtype")  # ModelArguments in --help's first section
ADAPTER_OPTIONS = ("method", "lora_r", "lora_alpha", "lora_dropout", "lora_target_modules", "lora_modules_to_save",
                   "bnb_4bit_quant_type", "bnb_4bit_use_double_quant", "bnb_4bit_compute_dtype")


def help_sections(task_cls, *groups) -> list[tuple[str, list[tuple[str, str]]]]:
    """--help's sections: (title, [(option, help)]); ``groups``: further (title, dataclass) pairs."""
    def options(cls, names=None):
        names = names or [f.name for f in dataclasses.fields(cls) if f.init]
        return [(name, help_text(cls, name)) for name in names]

    return [("task, data and evaluation during training",
             options(PackModelOptions, MODEL_OPTIONS) + options(task_cls)),
            ("adapter (LoRA / QLoRA; every TRL ModelConfig option: --help-all)",
             options(PackModelOptions, ADAPTER_OPTIONS)),
            *((title, options(cls)) for title, cls in groups)]


def parse_config(argv: list[str] | None = None):
    """(TaskArguments, ModelArguments, SFTConfig) from ``argv`` (default: sys.argv[1:]); ``--help`` prints
    the pack's own options and exits, ``--help-all`` every option."""
    argv = sys.argv[1:] if argv is None else list(argv)
    if "--help-all" in argv:
        SftParser().parser.print_help()
        raise SystemExit(0)
    if "-h" in argv or "--help" in argv:
        from finetune.cli_help import short_help

        print(short_help("python -m finetune.sft", "Fine-tune a LoRA / QLoRA adapter with TRL's SFTTrainer.",
                         help_sections(TaskArguments)))
        raise SystemExit(0)
    return SftParser().parse(argv)


def _check_task(task: TaskArguments) -> None:
    """The training data exists and is what the pack can train on."""
    if task.task not in tasks():
        raise QAPackError(f"task={task.task!r} is unknown; use one of: {', '.join(tasks())}")
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


def _check_adapter(model) -> None:
    """LoRA hyper-parameters, dtypes and the 4-bit base."""
    if not model.use_peft:
        raise QAPackError("use_peft=false would train the whole model; these commands train a LoRA adapter")
    if model.load_in_8bit:
        raise QAPackError("load_in_8bit is not supported; use method=qlora for a 4-bit base")
    if model.lora_r <= 0:
        raise QAPackError(f"lora_r={model.lora_r} must be > 0 (published studies use 8-64, e.g. 16)")
    if model.lora_alpha <= 0:
        raise QAPackError(f"lora_alpha={model.lora_alpha} must be > 0 (e.g. 2 * lora_r)")
    if not 0 <= model.lora_dropout < 1:
        raise QAPackError(f"lora_dropout={model.lora_dropout} must be in [0, 1)")
    for name in ("dtype", "bnb_4bit_compute_dtype"):
        if getattr(model, name) not in DTYPES:
            raise QAPackError(f"{name}={getattr(model, name)!r} is not valid; use auto, float32, bfloat16 or float16")
    if model.method == "qlora":  # transformers finds out only once the base model loads
        require("train", "bitsandbytes", what="method=qlora")


def _check_validation_split(task: TaskArguments) -> None:
    size = task.validation_size
    if size is None:
        return
    if not (0 < size < 1 or (size >= 1 and float(size).is_integer())):
        raise QAPackError(f"validation_size={size} must be a fraction in (0, 1) or a whole count >= 1")
    if not task.eval_tasks:
        raise QAPackError("validation_size holds examples out for eval_tasks to score; set eval_tasks too "
                          "(e.g. recipe_mpr_gen)")


def _check_evaluation(task: TaskArguments, sft) -> None:
    """The lm-eval tasks run during training exist; their limit and interval are positive."""
    if not task.eval_tasks:
        return
    from finetune.eval_callback import check_tasks

    check_tasks(task.eval_tasks)
    if task.eval_limit is not None and task.eval_limit <= 0:
        raise QAPackError(f"eval_limit={task.eval_limit} must be > 0")
    if sft.eval_steps is not None and sft.eval_steps <= 0:
        raise QAPackError(f"eval_steps={sft.eval_steps} must be > 0")


def validate(task: TaskArguments, model, sft) -> object:
    """Every user mistake found before any model loads; returns the base model's config."""
    if not model.model_name_or_path:
        raise QAPackError("model_name_or_path is required (a local model folder or a Hub id)")
    _check_task(task)
    _check_adapter(model)
    _check_validation_split(task)
    require_loggers(sft.report_to, "report_to")
    _check_evaluation(task, sft)
    check_training_options(sft)
    check_output_dir(task.resume, sft.output_dir)
    from finetune.layout import check_lora_modules

    return check_lora_modules(model)  # last: builds the architecture (on the meta device)
