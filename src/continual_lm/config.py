"""Experiment configuration: YAML validated into typed objects (pydantic), with one-line errors."""
from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from .errors import ConfigError


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", validate_assignment=True)


# Numeric settings with their ranges: a value outside is a one-line error naming the key, not a traceback later.
Positive = Annotated[float, Field(gt=0)]
NonNegative = Annotated[float, Field(ge=0)]
Count = Annotated[int, Field(ge=1)]
Fraction = Annotated[float, Field(ge=0, le=1)]


class LoRASettings(_Strict):
    r: Count = 8
    alpha: Positive = 16
    dropout: Annotated[float, Field(ge=0, lt=1)] = 0.0
    target_modules: list[str] | None = None  # None: a sensible default per architecture


class TinyModelSettings(_Strict):
    """A model built from a config (random initialisation); the tokenizer is word-level, built from the data."""
    arch: Literal["gpt", "llama", "t5", "bert"] = "gpt"
    layers: Count = 2
    width: Count = 64
    heads: Count = 2


class ModelSettings(_Strict):
    kind: Literal["causal", "seq2seq", "encoder"] = "causal"
    # A named model (``continual-lm models``: installed offline from a PyPI package, e.g. smollm2-135m), a local
    # folder or a hub id; None with ``tiny`` builds from a config.
    path: str | None = None
    gguf_file: str | None = None     # a GGUF file (in ``path``, or a path of its own): converted once, then cached
    tiny: TinyModelSettings | None = None
    finetune: Literal["lora", "full"] = "lora"
    lora: LoRASettings = LoRASettings()
    max_length: Annotated[int, Field(ge=2)] = 256
    # Tokens an answer may have (generation's limit, and the room the prompt leaves in training too). None: the run's
    # longest label and the end token when every task has labels, else 16.
    max_new_tokens: Count | None = None
    # Generative models: the prompt in the tokenizer's chat template (auto: for an instruct model that has one;
    # models/prompts.py), or the papers' plain prompts (off).
    chat_template: Literal["auto", "on", "off"] = "auto"

    @field_validator("chat_template", mode="before")
    @classmethod
    def _yaml_switch(cls, v: Any) -> Any:
        """YAML reads an unquoted on / off as true / false."""
        return {True: "on", False: "off"}.get(v, v) if isinstance(v, bool) else v
    label_scale: Positive = 20.0        # encoder label scoring: logits = scale * cosine(prompt, label)
    # Encoder label scoring: the candidates of an example are its own task's options ("options": task-incremental),
    # or every label of every task in the run ("all": the output space of a generative model, which can answer
    # with any label it has learnt — where its forgetting comes from). Generative kinds always answer freely.
    label_space: Literal["options", "all"] = "options"

    @model_validator(mode="after")
    def _source(self) -> "ModelSettings":
        if self.path is None and self.tiny is None and self.gguf_file is None and self.kind != "encoder":
            raise ValueError("set model.path (a named model, a local folder or hub id) or model.tiny")
        if self.tiny is not None and (self.path is not None or self.gguf_file is not None):
            raise ValueError("set only one of model.path and model.tiny")
        if self.max_new_tokens is not None and self.max_new_tokens >= self.max_length:
            raise ValueError(f"max_new_tokens ({self.max_new_tokens}) must be below max_length ({self.max_length}): "
                             "the prompt gets what the answer leaves")
        return self


class DataSettings(_Strict):
    benchmark: Literal["standard", "long", "superni", "trace", "custom", "biography"] = "standard"
    data_dir: str | None = None
    order: int | None = None
    tasks: list[str] | None = None
    n_train: Count | None = 1000
    n_test: Count | None = None
    biography: dict[str, Any] = {}   # BiographySettings fields, validated by data.biography
    # The metric of a task, instead of the one its benchmark chooses (evaluation/scores.py)
    metrics: dict[str, Literal["exact_match", "choice_letter", "number", "rouge_l", "edit_similarity", "sari"]] = {}


class TaskOverride(_Strict):
    """Per-task changes to the training schedule (e.g. more epochs for a task that must memorise facts)."""
    epochs: Positive | None = None
    max_steps: Count | None = None
    lr: Positive | None = None


class TrainSettings(_Strict):
    epochs: Positive = 1.0
    max_steps: Count | None = None   # per task; overrides epochs
    batch_size: int = 8
    eval_batch_size: int = 64
    lr: Positive = 1e-3
    weight_decay: NonNegative = 0.0
    schedule: Literal["constant", "linear", "cosine"] = "constant"
    warmup_ratio: Fraction = 0.0
    warmup_steps: Annotated[int, Field(ge=0)] | None = None  # overrides warmup_ratio (the Recurrent-KIF authors warm up for 50 steps)
    grad_accum: int = 1
    group_by_length: bool = False  # batches of similar lengths (less padding); training/loop.py batches()
    max_grad_norm: Positive | None = 1.0
    num_threads: Count | None = None  # torch.set_num_threads for the run; None: leave it (benchmarks: --threads)
    eval_max_examples: Count | None = None   # cap on test examples per evaluation (None: all)
    # Which tasks to evaluate after each stage: "all", or "seen_and_next" (the trained ones and the next one,
    # all that OP/BWT/FWT need; the other cells of the accuracy matrix stay empty). Saves ~40% on 15 tasks.
    eval_tasks: Literal["all", "seen_and_next"] = "all"
    # Each example's prediction, gold and score in <run>/predictions/<stage>/<task>.jsonl: after the last stage, after
    # every stage, or never.
    predictions: Literal["final", "all", "none"] = "final"
    # Accelerate's experiment trackers (loss, lr, every evaluation, the curve points), under <run>/trackers; off by
    # default. Each needs its own package (tensorboard, wandb, …).
    report_to: list[Literal["tensorboard", "wandb", "mlflow", "comet_ml", "aim", "clearml", "dvclive"]] = []
    per_task: dict[str, TaskOverride] = {}  # task name -> overrides
    # Resume points (<run>/resume): every save_every optimiser steps and at each stage's end (0: only at the stages'
    # ends; null: none at all). 50 costs well under 2% of a run for MiniLM + LoRA (benchmarks/resume_overhead.py).
    save_every: Annotated[int, Field(ge=0)] | None = 50
    keep_resume: bool = False        # keep the last resume point when the run finishes (it is deleted otherwise)
    nan_policy: Literal["stop", "skip_step"] = "stop"  # a NaN/inf loss or gradient: stop the run, or skip that step

    def warmup_for(self, total_steps: int) -> int:
        return min(self.warmup_steps, total_steps) if self.warmup_steps is not None else int(self.warmup_ratio * total_steps)

    def for_task(self, name: str) -> "TrainSettings":
        o = self.per_task.get(name)
        if o is None:
            return self
        changes = {k: v for k, v in o.model_dump().items() if v is not None}
        if "epochs" in changes and "max_steps" not in changes:
            changes["max_steps"] = None
        return self.model_copy(update=changes)

    @field_validator("batch_size", "grad_accum", "eval_batch_size")
    @classmethod
    def _positive(cls, v: int) -> int:
        if v < 1:
            raise ValueError("must be >= 1")
        return v


class RecoverySettings(_Strict):
    """Brief fine-tuning on a few training examples of an old task, to test whether its knowledge is still there."""
    steps: Count = 20
    n_examples: Count = 64
    batch_size: Count = 16
    lr: Positive | None = None           # None: training.lr


class MethodSettings(_Strict):
    name: str = "seq"
    params: dict[str, Any] = {}


class ExperimentConfig(_Strict):
    """One run: a model, a task sequence, a training schedule and a method."""
    name: str = "experiment"
    seed: int = 0
    model: ModelSettings
    data: DataSettings = DataSettings()
    training: TrainSettings = TrainSettings()
    method: MethodSettings = MethodSettings()
    # Parameters per method name, used whenever that method runs (method.params take precedence): lets one
    # config serve a comparison of several methods (``continual-lm run --methods a,b``).
    method_params: dict[str, dict[str, Any]] = {}
    # Language-model pre-training of a tiny model on the benchmark's corpus (Biography), cached by config.
    pretrain: TrainSettings | None = None
    # Task-0 evaluations during later tasks (the "spurious forgetting curve"), at these steps of each task.
    curve_steps: list[int] = []
    curve_max_examples: Count | None = None  # the first N test examples of task 0 at the curve points (None: all)
    # Save the trainable weights at these steps of every stage (and at its end) into <run>/checkpoints/,
    # for the analyses (recovery, update angles, loss landscape).
    checkpoint_steps: list[int] = []
    # After the run: short recovery fine-tuning on each old task to split forgetting into a recoverable
    # ("spurious") part and the rest. Off when None.
    forgetting_decomposition: RecoverySettings | None = None
    log_every: Count = 10

    def resolved_method_params(self) -> dict[str, Any]:
        return {**self.method_params.get(self.method.name, {}), **self.method.params}

    @model_validator(mode="after")
    def _consistent(self) -> "ExperimentConfig":
        if self.data.benchmark == "biography" and self.model.kind != "causal":
            raise ValueError("model.kind: the biography benchmark needs a causal LM")
        if self.data.benchmark in ("standard", "long", "superni", "trace", "custom") and not self.data.data_dir:
            raise ValueError(f"data.data_dir: benchmark {self.data.benchmark!r} needs a data folder")
        if self.pretrain is not None and self.model.tiny is None:
            raise ValueError("pretrain: pre-training from scratch needs model.tiny")
        d = self.data
        if d.order is not None and (d.benchmark in ("custom", "biography") or (d.benchmark == "trace" and d.order != 1)):
            # it would be ignored, and recorded as if it had applied
            raise ValueError(f"data.order: benchmark {d.benchmark!r} has "
                             + ("one order (1)" if d.benchmark == "trace" else "no orders") + "; data.tasks sets the "
                             "sequence")
        return self


def _format_validation_error(err: ValidationError, source: str) -> str:
    first = _first_error(err)
    key = ".".join(str(p) for p in first["loc"]) or "(top level)"
    more = f" (+{err.error_count() - 1} more)" if err.error_count() > 1 else ""
    hint = ""
    if first["type"] == "extra_forbidden":  # a typo of a known key: say which
        import difflib
        model: type[BaseModel] | None = ExperimentConfig
        for part in first["loc"][:-1]:
            field = model.model_fields.get(str(part)) if model else None
            model = _model_of(field.annotation) if field else None
        known = list(model.model_fields) if model else []
        close = difflib.get_close_matches(str(first["loc"][-1]), known, n=1)
        hint = f"; did you mean {close[0]!r}?" if close else (f"; known: {known}" if known else "")
    return f"{source}: {key}: {first['msg']}{hint}{more}"


def _model_of(annotation) -> type[BaseModel] | None:
    """The settings model of a field (``X`` or ``X | None``), to look up its known keys."""
    import typing
    for candidate in (annotation, *typing.get_args(annotation)):
        if isinstance(candidate, type) and issubclass(candidate, BaseModel):
            return candidate
    return None


def parse_config(data: dict, source: str = "config", overrides: list[str] | None = None) -> ExperimentConfig:
    """``overrides``: the ``--set KEY=VALUE`` items applied to ``data``; an error in a key one of them set names it."""
    if not isinstance(data, dict):
        raise ConfigError(f"{source}: expected a mapping at the top level")
    try:
        return ExperimentConfig.model_validate(data)
    except ValidationError as e:
        first = _first_error(e)
        key = ".".join(str(p) for p in first["loc"])
        for item in reversed(overrides or []):
            set_key = item.split("=", 1)[0]
            if key == set_key or key.startswith(set_key + ".") or set_key.startswith(key + "."):
                source = f"--set {item}"
                break
        raise ConfigError(_format_validation_error(e, source)) from None


def _first_error(err: ValidationError) -> dict:
    errors = err.errors()
    # A misspelt key is the likelier cause of a missing one: report it first.
    return next((e for e in errors if e["type"] == "extra_forbidden"), errors[0])


def load_config(path: str | Path, overrides: list[str] | None = None) -> ExperimentConfig:
    """Read a YAML file; ``overrides`` are ``key.sub=value`` strings (value parsed as YAML)."""
    path = Path(path)
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except FileNotFoundError:
        raise ConfigError(f"{path}: config file not found") from None
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        problem = getattr(e, "problem", None) or str(e).splitlines()[0]
        raise ConfigError(f"{path}: malformed YAML{where}: {problem}") from None
    for item in overrides or []:
        apply_override(data, item)
    return parse_config(data, str(path), overrides)


def apply_override(data: dict, item: str) -> None:
    if "=" not in item:
        raise ConfigError(f"--set {item}: expected KEY=VALUE")
    key, value = item.split("=", 1)
    node = data
    parts = key.split(".")
    for p in parts[:-1]:
        node = node.setdefault(p, {})
        if not isinstance(node, dict):
            raise ConfigError(f"--set {item}: {p} is not a mapping")
    try:
        node[parts[-1]] = yaml.safe_load(value)
    except yaml.YAMLError as e:
        raise ConfigError(f"--set {item}: the value is not valid YAML ({str(e).splitlines()[0]})") from None


def dump_config(cfg: ExperimentConfig) -> str:
    return yaml.safe_dump(cfg.model_dump(mode="json"), sort_keys=False)
