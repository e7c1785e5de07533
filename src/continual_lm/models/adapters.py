"""Per-task LoRA adapters on one peft model (IncLoRA, O-LoRA): add one, keep the old ones active but frozen."""
from __future__ import annotations

from collections.abc import Iterable

import torch

from .backbone import Backbone


def adapter_names(backbone: Backbone) -> list[str]:
    return list(backbone.model.peft_config)


def adapter_of(parameter_name: str) -> str | None:
    """The adapter a LoRA parameter belongs to ("...lora_A.task1.weight" → "task1"); None for other parameters."""
    parts = parameter_name.split(".")
    for i, part in enumerate(parts[:-1]):
        if part.startswith("lora_"):
            return parts[i + 1]
    return None


def activate_adapters(backbone: Backbone, names: Iterable[str]) -> None:
    """Make exactly ``names`` the adapters of the forward pass, adding (with the first adapter's config) any the
    model lacks: a checkpoint of a per-task-adapter run names adapters a freshly built backbone does not have."""
    model, names = backbone.model, list(names)
    for name in names:
        if name not in model.peft_config:
            model.add_adapter(name, model.peft_config["default"])
    model.base_model.set_adapter(names)
    model.to(backbone.device)


def add_task_adapter(backbone: Backbone, name: str) -> None:
    """A new adapter (LoRA B = 0, so the model's function is unchanged), trainable; earlier ones active, frozen."""
    activate_adapters(backbone, [*(n for n in adapter_names(backbone) if n != name), name])
    for n, p in backbone.model.named_parameters():
        p.requires_grad_(f".{name}." in n)


def lora_matrices(backbone: Backbone, adapter: str, which: str = "lora_A") -> dict[str, torch.nn.Parameter]:
    """{module name: weight} of one adapter's A (shape r × in) or B (out × r) matrices."""
    key = f".{which}.{adapter}.weight"
    return {n[: -len(key)]: p for n, p in backbone.model.named_parameters() if n.endswith(key)}
