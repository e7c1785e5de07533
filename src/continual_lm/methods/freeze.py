"""Freeze the input embeddings and the bottom k layers from a given task on (Zheng et al., ICLR 2025, Sec. 5).

Spurious forgetting is mostly the undoing of task alignment in the bottom layers; keeping them fixed while
the top layers learn the new task preserves the old alignment."""
from __future__ import annotations

from .base import Method, register


@register
class Freeze(Method):
    name = "freeze"
    description = "Freeze input embeddings + bottom k layers from task 1 on (spurious-forgetting fix)."
    defaults = {"layers": None, "from_task": 1, "embeddings": True}  # layers None: half of the layers

    def before_task(self, ctx) -> None:
        if ctx.task_index < self.from_task:
            return
        blocks = ctx.backbone.transformer_layers()
        k = len(blocks) // 2 if self.layers is None else int(self.layers)
        modules = list(blocks[:k]) + ([ctx.backbone.input_embeddings()] if self.embeddings else [])
        for module in modules:
            for p in module.parameters():
                p.requires_grad_(False)
        ctx.log({"event": "freeze", "layers": k, "embeddings": self.embeddings})
