"""The method interface and its registry.

A method never owns the training loop; the loop (``training/loop.py``) calls these hooks:

    stages(tasks)             which data each training stage uses (default: one stage per task)
    setup(ctx)                once, before the first evaluation (validate the backbone, add state)
    before_task(ctx)          at the start of each stage, before the optimiser is built
    stage_examples(ctx, stage) the examples the stage trains on (default: its own; rehearsal may add its memory)
    loss(ctx, examples)       the training loss of one micro-batch
    after_backward(ctx)       once per optimiser step, when the gradients are complete, before clipping
    after_step(ctx)           after each optimiser step (gradients already zeroed)
    after_task(ctx)           at the end of each stage, before the evaluation of every task
    report()                  anything the method measured of itself, stored in metrics.json
"""
from __future__ import annotations

import inspect
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar

import torch

from ..data.task import Example, Task
from ..errors import ConfigError

if TYPE_CHECKING:
    from ..training.context import TrainContext


@dataclass
class Stage:
    """One round of training: a name, the task indices it covers, its examples."""
    name: str
    task_indices: list[int]
    examples: list[Example]


class Method:
    name: ClassVar[str] = ""
    description: ClassVar[str] = ""
    defaults: ClassVar[dict[str, Any]] = {}
    # Allowed values, checked when the method is created, so that a bad value fails before any training:
    # numbers: an interval such as "(0, 1]" or "[1, inf)", with " int" for an integer parameter whose default is
    # None (an int default already makes it one); a None value passes
    bounds: ClassVar[dict[str, str]] = {}
    choices: ClassVar[dict[str, tuple]] = {}       # parameters with a fixed set of values
    needs_lora: ClassVar[bool] = False

    def __init__(self, **params: Any):
        unknown = sorted(set(params) - set(self.defaults))
        if unknown:
            raise ConfigError(f"method.params: unknown key(s) {unknown} for method {self.name!r}; "
                              f"known: {sorted(self.defaults)}")
        self.params: dict[str, Any] = {**self.defaults, **params}
        for key, allowed in self.choices.items():
            if self.params[key] not in allowed:
                raise ConfigError(f"method.params.{key}: {self.params[key]!r} is not one of {list(allowed)} "
                                  f"(method {self.name!r})")
        for key, interval in self.bounds.items():
            interval, int_suffix, _ = interval.partition(" int")
            check_in_interval(f"method.params.{key}", self.params[key], interval,
                              integer=bool(int_suffix) or type(self.defaults[key]) is int)
        for key, value in self.params.items():
            setattr(self, key, value)

    def stages(self, tasks: list[Task]) -> list[Stage]:
        return [Stage(t.name, [i], t.train) for i, t in enumerate(tasks)]

    def setup(self, ctx: "TrainContext") -> None:
        if self.needs_lora and ctx.config.model.finetune != "lora":
            raise ConfigError(f"method {self.name!r} needs LoRA: set model.finetune: lora "
                              f"(it is {ctx.config.model.finetune!r})")

    def before_task(self, ctx: "TrainContext") -> None:
        pass

    def stage_examples(self, ctx: "TrainContext", stage: Stage) -> list[Example]:
        return stage.examples

    def loss(self, ctx: "TrainContext", examples: list[Example]) -> torch.Tensor:
        return ctx.backbone.loss(examples)

    def after_backward(self, ctx: "TrainContext") -> None:
        pass

    def after_step(self, ctx: "TrainContext") -> None:
        pass

    def after_task(self, ctx: "TrainContext") -> None:
        pass

    def report(self) -> dict[str, Any]:
        return {}


def check_in_interval(key: str, value: Any, interval: str, integer: bool = False) -> None:
    """ConfigError unless ``value`` is None or a number in ``interval`` ("[a, b]", "(a, b)", "[a, inf)", ...)."""
    if value is None:
        return
    if isinstance(value, bool) or not isinstance(value, (int, float)) or (integer and value != int(value)):
        raise ConfigError(f"{key}: {value!r} is not {'an integer' if integer else 'a number'}")
    low, high = (float(x) for x in interval[1:-1].split(","))
    above = low <= value if interval[0] == "[" else low < value
    below = value <= high if interval[-1] == "]" else value < high
    if not (above and below):
        raise ConfigError(f"{key}: {value} is outside {interval}")


METHODS: dict[str, type[Method]] = {}


def register(cls: type[Method]) -> type[Method]:
    if not cls.name or cls.name in METHODS:
        raise ValueError(f"method class {cls.__name__} needs a unique name (got {cls.name!r})")
    stray = sorted((set(cls.bounds) | set(cls.choices)) - set(cls.defaults))
    if stray:
        raise ValueError(f"method {cls.name!r}: bounds/choices for parameters it does not have: {stray}")
    METHODS[cls.name] = cls
    return cls


def create_method(name: str, params: dict[str, Any] | None = None) -> Method:
    if name not in METHODS:
        raise ConfigError(f"method.name: unknown method {name!r}; known: {sorted(METHODS)}")
    return METHODS[name](**(params or {}))


def split_method_spec(spec: str) -> tuple[str, dict[str, Any]]:
    """A method entry of a comparison: a registered name, or NAME:VARIANT for one of its variants
    (``recurrent_kif:reference_code`` → ("recurrent_kif", {"variant": "reference_code"}))."""
    name, _, variant = spec.partition(":")
    return name, ({"variant": variant} if variant else {})


def method_summary(cls: type[Method]) -> str:
    return cls.description or (inspect.getdoc(cls) or "").splitlines()[0]
