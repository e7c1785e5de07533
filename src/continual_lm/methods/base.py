"""The method interface and its registry.

A method never owns the training loop; the loop (``training/loop.py``) calls these hooks:

    stages(tasks)              which data each training stage uses (default: one stage per task)
    setup(ctx)                 once, before the first evaluation (validate the backbone, add state)
    before_stage(ctx)          at the start of each stage, before the optimiser is built
    stage_examples(ctx, stage) the examples the stage trains on (default: its own; rehearsal may add its memory)
    loss(ctx, examples)        the training loss of one micro-batch
    after_backward(ctx)        once per optimiser step, when the gradients are complete, before clipping
    after_step(ctx)            after each optimiser step (gradients already zeroed)
    after_stage(ctx)           at the end of each stage, before the evaluation of every task
    report()                   anything the method measured of itself, stored in metrics.json
    state_dict() / load_state_dict(state, ctx)
                               the method's own state, for resume points (default: the attributes named in
                               ``state_attributes``; objects with their own state_dict are restored in place)

``ctx`` is a ``TrainContext`` (``methods/context.py``): the config, backbone, accelerator, tasks, the stage's index
and step, its optimiser, a seeded RNG, a log, and ``ctx.optimizer_step()`` — the one optimiser step.
"""
from __future__ import annotations

import inspect
import types
import typing
from dataclasses import dataclass
from typing import TYPE_CHECKING, Annotated, Any, ClassVar

import torch
from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, ValidationError

from ..data.task import Example, Task
from ..errors import ConfigError

if TYPE_CHECKING:
    from .context import TrainContext


@dataclass
class Stage:
    """One round of training: a name, the task indices it covers, its examples."""
    name: str
    task_indices: list[int]
    examples: list[Example]


def _not_bool(value: Any) -> Any:
    if isinstance(value, bool):
        raise ValueError(f"{value!r} is not a number")
    return value


# Parameter types of ``Method.Params``: numbers that refuse True/False (pydantic would read them as 1 and 0).
Real = Annotated[float, BeforeValidator(_not_bool)]
Count = Annotated[int, BeforeValidator(_not_bool)]


# Prompt tuning's learning rate under AdamW (L2P, LFPT5), swept on Biography seed 0 (benchmarks/results/prompt_lr.md):
# at the run's fine-tuning rate, 1e-4, the prompts barely moved (loss 15 → 9.8, 0% on both tasks). A config can set
# its own per backbone: on MiniLM, L2P forgets less at 1e-3 (configs/standard_cl.yaml).
PROMPT_LR = 0.03


def prompt_learning_rate() -> Any:
    return Field(PROMPT_LR, gt=0, description="learning rate of the prompts (null: training.lr)")


class MethodParams(BaseModel):
    """A method's hyper-parameters: typed, bounded, described; validated when the method is created.

    Every method has ``lr``: its own learning rate where its authors ran it at another than the run's (MIGU's LoRA
    scripts use 1e-4; prompt tuning far larger ones), so one config can compare methods each at its paper's rate."""
    model_config = ConfigDict(extra="forbid", frozen=True)

    lr: Real | None = Field(None, gt=0, description="this method's learning rate (null: training.lr)")


class Method:
    name: ClassVar[str] = ""
    description: ClassVar[str] = ""
    needs_lora: ClassVar[bool] = False
    # The work a step does beyond plain training, where it makes the method cost over 1.5× seq
    # (benchmarks/method_cost.py reports it beside the ratio).
    extra_work: ClassVar[str] = ""
    Params: ClassVar[type[MethodParams]] = MethodParams
    # What a resume point keeps of the method (attributes of tensors, numbers, strings, examples and containers of
    # them, or objects with state_dict/load_state_dict); references to the model are re-derived in after_load.
    state_attributes: ClassVar[tuple[str, ...]] = ()

    def __init__(self, **params: Any):
        unknown = sorted(set(params) - set(self.Params.model_fields))
        if unknown:
            raise ConfigError(f"method.params: unknown key(s) {unknown} for method {self.name!r}; "
                              f"known: {sorted(self.Params.model_fields)}")
        try:
            self.params = self.Params(**params)
        except ValidationError as e:
            first = e.errors()[0]
            first["msg"] = first["msg"].removeprefix("Value error, ")
            key = ".".join(str(x) for x in first["loc"])
            if not key:  # a rule across parameters
                raise ConfigError(f"method.params: {first['msg']} (method {self.name!r})") from None
            raise ConfigError(f"method.params.{key}: {params.get(key)!r}: {first['msg']} (method {self.name!r})") from None

    def stages(self, tasks: list[Task]) -> list[Stage]:
        return [Stage(t.name, [i], t.train) for i, t in enumerate(tasks)]

    def setup(self, ctx: "TrainContext") -> None:
        if self.needs_lora and ctx.config.model.finetune != "lora":
            raise ConfigError(f"method {self.name!r} needs LoRA: set model.finetune: lora "
                              f"(it is {ctx.config.model.finetune!r})")

    def learning_rate(self, lr: float) -> float:
        """The learning rate of a stage whose training settings say ``lr``: the method's own ``lr`` unless it is null
        (prompt tuning's default is its own, far larger one)."""
        return lr if self.params.lr is None else self.params.lr

    def make_optimizer(self, params: list[torch.nn.Parameter], lr: float, weight_decay: float) -> torch.optim.Optimizer:
        """The stage's optimiser (AdamW; a method whose authors used another says so here)."""
        return torch.optim.AdamW(params, lr=lr, weight_decay=weight_decay)

    def before_stage(self, ctx: "TrainContext") -> None:
        pass

    def stage_examples(self, ctx: "TrainContext", stage: Stage) -> list[Example]:
        return stage.examples

    def loss(self, ctx: "TrainContext", examples: list[Example]) -> torch.Tensor:
        return ctx.backbone.loss(examples)

    def after_backward(self, ctx: "TrainContext") -> None:
        pass

    def after_step(self, ctx: "TrainContext") -> None:
        pass

    def after_stage(self, ctx: "TrainContext") -> None:
        pass

    def report(self) -> dict[str, Any]:
        return {}

    def state_dict(self) -> dict[str, Any]:
        out = {}
        for name in self.state_attributes:
            value = getattr(self, name, None)
            out[name] = value.state_dict() if hasattr(value, "state_dict") else value
        return out

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore ``state`` (after ``setup``, before the model's weights are loaded: structure a method grows stage by
        stage, such as SAPT's keys, is grown here)."""
        for name in self.state_attributes:
            current = getattr(self, name, None)
            if hasattr(current, "load_state_dict"):
                current.load_state_dict(state[name])
            else:
                setattr(self, name, state[name])

    def after_load(self, ctx: "TrainContext") -> None:
        """Once the weights and trainable flags are back: re-derive what refers to the model (parameter dicts)."""


METHODS: dict[str, type[Method]] = {}


def register(cls: type[Method]) -> type[Method]:
    if not cls.name or cls.name in METHODS:
        raise ValueError(f"method class {cls.__name__} needs a unique name (got {cls.name!r})")
    METHODS[cls.name] = cls
    return cls


def create_method(name: str, params: dict[str, Any] | None = None) -> Method:
    if name not in METHODS:
        raise ConfigError(f"method.name: unknown method {name!r}; known: {sorted(METHODS)}")
    return METHODS[name](**(params or {}))


def split_method_spec(spec: str) -> tuple[str, dict[str, Any]]:
    """A method entry of a comparison: NAME, NAME:VARIANT (its ``variant`` parameter) and/or NAME(KEY=VALUE, ...)
    (values read as YAML): ``recurrent_kif:reference_code`` → ("recurrent_kif", {"variant": "reference_code"}),
    ``task_vector(alpha=0.2)`` → ("task_vector", {"alpha": 0.2})."""
    import yaml

    head, paren, rest = spec.partition("(")
    params: dict[str, Any] = {}
    if paren:
        if not rest.endswith(")"):
            raise ConfigError(f"method entry {spec!r}: expected NAME(KEY=VALUE, ...)")
        for item in filter(None, (x.strip() for x in rest[:-1].split(","))):
            key, eq, value = item.partition("=")
            if not eq:
                raise ConfigError(f"method entry {spec!r}: {item!r} is not KEY=VALUE")
            params[key.strip()] = yaml.safe_load(value)
    name, _, variant = head.partition(":")
    return name, ({"variant": variant} if variant else {}) | params


def method_label(name: str, params: dict[str, Any] | None) -> str:
    """The comparison name of a run of method ``name`` with ``params`` — the inverse of ``split_method_spec`` for the
    variant: ``recurrent_kif:reference_code`` when the run's ``variant`` is not the method's default, else ``name``."""
    variant = (params or {}).get("variant")
    field = METHODS[name].Params.model_fields.get("variant") if name in METHODS else None
    return f"{name}:{variant}" if variant is not None and (field is None or variant != field.default) else name


def method_summary(cls: type[Method]) -> str:
    return cls.description or (inspect.getdoc(cls) or "").splitlines()[0]


def describe_params(cls: type[Method]) -> list[str]:
    """One line per hyper-parameter: name, type, default, bounds, description (``continual-lm list --verbose``)."""
    lines = []
    for key, info in cls.Params.model_fields.items():
        kind = type_name(info.annotation)
        metadata = [*info.metadata, *(m for arg in typing.get_args(info.annotation)
                                      for m in getattr(arg, "__metadata__", ()))]  # bounds of an Optional's inner type
        bounds = [f"{op} {getattr(m, attr)}" for m in metadata
                  for attr, op in (("ge", ">="), ("gt", ">"), ("le", "<="), ("lt", "<")) if hasattr(m, attr)]
        lines.append(f"{key}: {kind} = {info.default!r}" + (f" ({', '.join(bounds)})" if bounds else "")
                     + (f" — {info.description}" if info.description else ""))
    return lines


def type_name(annotation: Any) -> str:
    """A parameter's type as a user writes it: ``float | None``, ``'l1' | 'frobenius'`` (a Literal's values)."""
    origin, args = typing.get_origin(annotation), typing.get_args(annotation)
    if origin is typing.Literal:
        return " | ".join(repr(a) for a in args)
    if origin is typing.Annotated:
        return type_name(args[0])
    if args and (origin is typing.Union or isinstance(annotation, types.UnionType)):
        return " | ".join("None" if a is type(None) else type_name(a) for a in args)
    return getattr(annotation, "__name__", None) or str(annotation).replace("typing.", "")


def methods_markdown() -> str:
    """The registered methods as a markdown table: name, what it does, its parameters."""
    lines = ["| name | what it does | parameters |", "|---|---|---|"]
    for name, cls in sorted(METHODS.items()):
        params = ", ".join(f"`{k}`" for k in cls.Params.model_fields) or "–"
        lines.append(f"| `{name}` | {method_summary(cls)} | {params} |")
    return "\n".join(lines)
