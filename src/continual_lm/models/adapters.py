"""Per-task LoRA adapters on one peft model (IncLoRA, O-LoRA): add one, keep the old ones active but frozen."""
from __future__ import annotations

import torch

from .backbone import Backbone


def adapter_names(backbone: Backbone) -> list[str]:
    return list(backbone.model.peft_config)


def add_task_adapter(backbone: Backbone, name: str) -> None:
    """A new adapter (LoRA B = 0, so the model's function is unchanged), trainable; earlier ones active, frozen."""
    model = backbone.model
    if name not in model.peft_config:
        model.add_adapter(name, model.peft_config["default"])
    names = adapter_names(backbone)
    model.base_model.set_adapter(names)  # every adapter takes part in the forward pass
    for n, p in model.named_parameters():
        p.requires_grad_(f".{name}." in n)
    model.to(backbone.device)


def lora_matrices(backbone: Backbone, adapter: str, which: str = "lora_A") -> dict[str, torch.nn.Parameter]:
    """{module name: weight} of one adapter's A (shape r × in) or B (out × r) matrices."""
    key = f".{which}.{adapter}.weight"
    return {n[: -len(key)]: p for n, p in backbone.model.named_parameters() if n.endswith(key)}
