"""What a method's hooks can see and use during training."""
from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import dataclass, field

import torch
from accelerate import Accelerator

from ..config import ExperimentConfig
from ..data.task import Task
from ..models.backbone import Backbone


@dataclass
class TrainContext:
    config: ExperimentConfig
    backbone: Backbone
    accelerator: Accelerator
    tasks: list[Task]                              # the whole sequence, in order
    log: Callable[[dict], None]
    rng: random.Random                             # for a method's own sampling (seeded)
    task_index: int = -1                           # current stage
    stage_task_indices: list[int] = field(default_factory=list)
    optimizer: torch.optim.Optimizer | None = None
    step: int = 0                                  # optimiser steps taken in the current stage
    global_step: int = 0
    total_steps: int = 0                           # optimiser steps planned for the current stage
    stop: bool = False                             # a method sets it to end the current stage early

    @property
    def task(self) -> Task:
        """The (last) task of the current stage."""
        return self.tasks[self.stage_task_indices[-1]]

    def clip_and_step(self) -> None:
        """One optimiser step as the loop takes it (clipping, step, zero grad): for methods with extra steps."""
        max_norm = self.config.training.max_grad_norm
        params = [p for p in self.backbone.model.parameters() if p.requires_grad]
        if max_norm:
            self.accelerator.clip_grad_norm_(params, max_norm)
        assert self.optimizer is not None
        self.optimizer.step()
        self.optimizer.zero_grad(set_to_none=True)
