"""Per-task LoRA adapters on one peft model (IncLoRA, O-LoRA): add one, keep the old ones active but frozen."""
from __future__ import annotations

from collections.abc import Callable, Iterable

import torch
from torch import nn

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


class LoRAMixture(nn.Module):
    """A peft LoRA layer whose adapters are mixed with per-input weights (MoELoRA's experts, SAPT's task blocks):

        y = base(x) + Σ_k w_k(x) · s_k · B_k A_k dropout_k(x)

    ``weights(x)`` gives w with a last dimension of one entry per name in ``adapters`` (per token, [..., K], or per
    sequence, [batch, 1, K]). peft's own forward would add every active adapter unweighted; this one reuses its
    matrices, dropout and scaling and only weighs them. With one adapter and w = 1 it is the LoRA layer exactly."""

    def __init__(self, layer: nn.Module, adapters: list[str], weights: Callable[[torch.Tensor], torch.Tensor]):
        super().__init__()
        self.layer, self.adapters = layer, list(adapters)
        if isinstance(weights, nn.Module):
            self.cl_gate = weights  # a method's module: trained, and checkpointed with the adapters (".cl_")
        else:
            self._weights = weights

    def forward(self, x: torch.Tensor, *args, **kwargs) -> torch.Tensor:
        out = self.layer.base_layer(x, *args, **kwargs)
        w = self.cl_gate(x) if hasattr(self, "cl_gate") else self._weights(x)
        for k, name in enumerate(self.adapters):
            layer = self.layer
            update = layer.lora_B[name](layer.lora_A[name](layer.lora_dropout[name](x))) * layer.scaling[name]
            out = out + w[..., k:k + 1] * update
        return out


def lora_layers(backbone: Backbone) -> dict[str, nn.Module]:
    """{module name: peft LoRA layer} of the model (the layers LoRA was applied to)."""
    return {n: m for n, m in backbone.model.named_modules() if hasattr(m, "lora_A") and hasattr(m, "base_layer")}


def mix_lora_layers(backbone: Backbone, adapters: list[str],
                    make_weights: Callable[[str, nn.Module], Callable[[torch.Tensor], torch.Tensor]]) -> dict[str, LoRAMixture]:
    """Replace every peft LoRA layer by a ``LoRAMixture`` of ``adapters`` (each added, if missing, with the first
    adapter's config, and made active — so trainable and checkpointed), weighted by ``make_weights(name, layer)``."""
    activate_adapters(backbone, adapters)
    mixtures = {}
    for name, layer in lora_layers(backbone).items():
        parent_name, _, child = name.rpartition(".")
        parent = backbone.model.get_submodule(parent_name) if parent_name else backbone.model
        mixtures[name] = LoRAMixture(layer, adapters, make_weights(name, layer))
        setattr(parent, child, mixtures[name])
    return mixtures
