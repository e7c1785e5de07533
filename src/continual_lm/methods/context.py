"""The hook contract's other half: what a method's hooks can see and use during training (``TrainContext``)."""
from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import dataclass, field

import torch
from accelerate import Accelerator

from ..config import ExperimentConfig, TrainSettings
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
    stage_index: int = -1                          # current stage
    stage_task_indices: list[int] = field(default_factory=list)
    settings: TrainSettings | None = None         # the current stage's training settings
    optimizer: torch.optim.Optimizer | None = None
    params: list[torch.nn.Parameter] = field(default_factory=list)  # the stage's trainable parameters
    step: int = 0                                  # optimiser steps taken in the current stage
    total_steps: int = 0                           # optimiser steps planned for the current stage
    stop: bool = False                             # a method sets it to end the current stage early

    @property
    def task(self) -> Task:
        """The (last) task of the current stage."""
        return self.tasks[self.stage_task_indices[-1]]

    def optimizer_step(self) -> None:
        """One optimiser step — gradient clipping, the step, zeroed gradients — as the loop takes it after every
        backward, and as a method takes its own extra steps (Recurrent-KIF's outer learner)."""
        max_norm = (self.settings or self.config.training).max_grad_norm
        if max_norm:
            self.accelerator.clip_grad_norm_(self.params, max_norm)
        assert self.optimizer is not None
        self.optimizer.step()
        self.optimizer.zero_grad(set_to_none=True)
