"""Experience replay (LoRAReplay under LoRA): a class-balanced memory of each finished task, mixed into every batch."""
from __future__ import annotations

import torch

from ..data.task import Example
from .base import Method, register
from .memory import ReplayMemory


@register
class Replay(Method):
    name = "replay"
    description = "Replay: a class-balanced memory (2% of each task) mixed into every batch (LoRAReplay with LoRA)."
    defaults = {"memory_fraction": 0.02, "replay_batch_size": None}  # None: the training batch size
    bounds = {"memory_fraction": "[0, 1]", "replay_batch_size": "[1, inf) int"}

    def setup(self, ctx) -> None:
        super().setup(ctx)
        self.memory = ReplayMemory(self.memory_fraction, ctx.config.seed)

    def loss(self, ctx, examples: list[Example]) -> torch.Tensor:
        k = self.replay_batch_size or len(examples)
        return ctx.backbone.loss(examples + self.memory.sample(k, ctx.rng))

    def after_task(self, ctx) -> None:
        self.memory.add_task(ctx.task)
