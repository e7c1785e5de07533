"""IncLoRA: a new LoRA adapter per task; earlier adapters stay frozen and active, so inference uses all of them
(the incremental-LoRA baseline of O-LoRA, Wang et al., 2023)."""
from __future__ import annotations

from ..models.adapters import add_task_adapter
from .base import Method, register


@register
class IncLoRA(Method):
    name = "inc_lora"
    description = "IncLoRA: a new LoRA adapter per task; earlier adapters frozen but active."
    needs_lora = True

    def before_stage(self, ctx) -> None:
        # Task 0 trains the adapter peft created ("default"); each later task gets its own.
        if ctx.stage_index > 0:
            add_task_adapter(ctx.backbone, f"task{ctx.stage_index}")
