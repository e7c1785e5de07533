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

import torch

from ..data.task import Example
from .base import Method, Stage, register
from .memory import ReplayMemory


@register
class Replay(Method):
    name = "replay"
    description = "Replay: a class-balanced memory (2% of each task) concatenated to the new data (LoRAReplay with LoRA)."
    defaults = {"memory_fraction": 0.02, "mode": "concat", "replay_batch_size": None}  # None: the batch size
    bounds = {"memory_fraction": "[0, 1]", "replay_batch_size": "[1, inf) int"}
    choices = {"mode": ("concat", "mix")}

    def setup(self, ctx) -> None:
        super().setup(ctx)
        self.memory = ReplayMemory(self.memory_fraction, ctx.config.seed)

    def before_task(self, ctx) -> None:
        self.memory.log_sizes(ctx.log)

    def stage_examples(self, ctx, stage: Stage) -> list[Example]:
        return stage.examples + self.memory.examples if self.mode == "concat" else stage.examples

    def loss(self, ctx, examples: list[Example]) -> torch.Tensor:
        if self.mode == "mix":
            examples = examples + self.memory.sample(self.replay_batch_size or len(examples), ctx.rng)
        return ctx.backbone.loss(examples)

    def after_task(self, ctx) -> None:
        self.memory.add_task(ctx.task)
