"""Experience replay (LoRAReplay under LoRA): a class-balanced memory of each finished task, rehearsed with the new one.

Two ways to rehearse (``mode``):

- ``concat`` (default): the memory joins the stage's training examples and is shuffled with them, so each memory
  example is seen once per epoch — LoRAReplay as the Recurrent-KIF and TaSL authors run it (the memory, 2% of each
  earlier task, concatenated to the new task's training data).
- ``mix``: ``replay_batch_size`` memory examples (default: as many as the batch) drawn with replacement are
  appended to every batch. With ``memory_fraction: 0.2`` and half a batch (``replay_batch_size`` = batch // 2) it
  is the Replay of the spurious-forgetting code (Zheng et al., ICLR 2025).
""" 
from __future__ import annotations

from typing import Literal

from pydantic import Field

import torch

from ..data.task import Example
from .base import Count, Method, MethodParams, Real, Stage, register
from .memory import ReplayMemory


@register
class Replay(Method):
    name = "replay"
    description = "Replay: a class-balanced memory (2% of each task) concatenated to the new data (LoRAReplay with LoRA)."

    class Params(MethodParams):
        memory_fraction: Real = Field(0.02, ge=0, le=1, description="share of each task's training data kept")
        mode: Literal["concat", "mix"] = Field("concat", description="memory joins the data, or is mixed into batches")
        replay_batch_size: Count | None = Field(None, ge=1, description="mix: memory examples per batch (None: batch size)")

    state_attributes = ("memory",)

    def setup(self, ctx) -> None:
        super().setup(ctx)
        self.memory = ReplayMemory(self.params.memory_fraction, ctx.config.seed)

    def before_stage(self, ctx) -> None:
        self.memory.log_sizes(ctx.log)

    def stage_examples(self, ctx, stage: Stage) -> list[Example]:
        return stage.examples + self.memory.examples if self.params.mode == "concat" else stage.examples

    def loss(self, ctx, examples: list[Example]) -> torch.Tensor:
        if self.params.mode == "mix":
            examples = examples + self.memory.sample(self.params.replay_batch_size or len(examples), ctx.rng)
        return ctx.backbone.loss(examples)

    def after_stage(self, ctx) -> None:
        self.memory.add_task(ctx.task)
