"""Task Vector (Zheng et al., ICLR 2025, Sec. 5): after a task, subtract α × the update of its first
``end_step`` steps — the part of the update that undoes the old task's alignment."""
from __future__ import annotations

from pydantic import Field

import torch

from .base import Count, Method, MethodParams, Real, register
from ..models.weights import snapshot


@register
class TaskVector(Method):
    name = "task_vector"
    description = "Task Vector: after a task, subtract alpha x its early update (steps 0..end_step)."

    class Params(MethodParams):
        alpha: Real = Field(1.0, description="scale of the early update subtracted")
        end_step: Count = Field(150, ge=1, description="the early update: steps 0..end_step of a task")
        from_task: Count = Field(1, ge=0, description="first task it applies to")

    state_attributes = ("start", "early")

    def after_load(self, ctx) -> None:
        self.tracked = ctx.backbone.trainable_parameters()

    def before_stage(self, ctx) -> None:
        self.tracked = ctx.backbone.trainable_parameters()
        self.start = snapshot(self.tracked) if ctx.stage_index >= self.params.from_task else None
        self.early = None

    def after_step(self, ctx) -> None:
        if self.start is not None and ctx.step == self.params.end_step:
            self.early = snapshot(self.tracked)

    def after_stage(self, ctx) -> None:
        if self.start is None:
            return
        if self.early is None:
            ctx.log({"event": "task_vector", "skipped": f"task shorter than end_step={self.params.end_step}"})
            return
        with torch.no_grad():
            for n, p in self.tracked.items():
                p.sub_(self.params.alpha * (self.early[n] - self.start[n]))
        ctx.log({"event": "task_vector", "subtracted_steps": self.params.end_step, "alpha": self.params.alpha})
