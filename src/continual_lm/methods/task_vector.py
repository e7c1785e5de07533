"""Task Vector (Zheng et al., ICLR 2025, Sec. 5): after a task, subtract α × the update of its first
``end_step`` steps — the part of the update that undoes the old task's alignment."""
from __future__ import annotations

import torch

from .base import Method, register
from ..models.weights import snapshot


@register
class TaskVector(Method):
    name = "task_vector"
    description = "Task Vector: after a task, subtract alpha x its early update (steps 0..end_step)."
    defaults = {"alpha": 1.0, "end_step": 150, "from_task": 1}
    bounds = {"end_step": "[1, inf)", "from_task": "[0, inf)"}

    def before_task(self, ctx) -> None:
        self.params = ctx.backbone.trainable_parameters()
        self.start = snapshot(self.params) if ctx.task_index >= self.from_task else None
        self.early = None

    def after_step(self, ctx) -> None:
        if self.start is not None and ctx.step == int(self.end_step):
            self.early = snapshot(self.params)

    def after_task(self, ctx) -> None:
        if self.start is None:
            return
        if self.early is None:
            ctx.log({"event": "task_vector", "skipped": f"task shorter than end_step={self.end_step}"})
            return
        with torch.no_grad():
            for n, p in self.params.items():
                p.sub_(self.alpha * (self.early[n] - self.start[n]))
        ctx.log({"event": "task_vector", "subtracted_steps": int(self.end_step), "alpha": self.alpha})
