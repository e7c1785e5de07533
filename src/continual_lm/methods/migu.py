"""MIGU (Du et al., "Unlocking Continual Learning Abilities in Language Models", EMNLP 2024 Findings).

Rehearsal-free and task-label-free. During the forward pass each linear layer's output magnitude is
recorded per output unit, L1-normalised across units: s_j = Σ|y_j| / Σ_k Σ|y_k|. After backward only the
gradients of the units in the top ``ratio`` of s are kept (weight rows, bias entries; for LoRA layers the
rows of B) and the rest are zeroed, so each step updates the units the current input actually uses."""
from __future__ import annotations

import torch
from torch import nn
from transformers.pytorch_utils import Conv1D

from .base import Method, register
from .importance import top_fraction_masks


def unit_masks(magnitudes: dict[str, torch.Tensor], ratio: float) -> dict[str, torch.Tensor]:
    """Per layer: the output units in the top ``ratio`` of L1-normalised magnitude."""
    normalised = {n: m / m.sum().clamp(min=1e-12) for n, m in magnitudes.items()}
    return {n: top_fraction_masks({n: s}, ratio)[n] for n, s in normalised.items()}


def _linear_layers(model: nn.Module) -> dict[str, nn.Module]:
    """Layers whose output units we can mask: LoRA-wrapped layers (peft) or plain Linear/Conv1D with trainable weights."""
    found = {}
    for name, module in model.named_modules():
        if hasattr(module, "lora_B") and hasattr(module, "base_layer"):
            found[name] = module
        elif isinstance(module, (nn.Linear, Conv1D)) and module.weight.requires_grad and ".lora_" not in name:
            found[name] = module
    return found


@register
class MIGU(Method):
    name = "migu"
    description = "MIGU (Du et al., 2024): keep only gradients of the output units with the largest output magnitude."
    defaults = {"ratio": 0.5}
    bounds = {"ratio": "(0, 1]"}

    def setup(self, ctx) -> None:
        super().setup(ctx)
        self.magnitudes: dict[str, torch.Tensor] = {}
        self.layers = _linear_layers(ctx.backbone.model)
        for name, module in self.layers.items():
            module.register_forward_hook(self._recorder(name))

    def _recorder(self, name: str):
        def hook(module, inputs, output):
            if module.training and torch.is_grad_enabled():
                out = output[0] if isinstance(output, tuple) else output
                mag = out.detach().abs().reshape(-1, out.shape[-1]).sum(0)
                self.magnitudes[name] = self.magnitudes.get(name, 0) + mag
        return hook

    def after_backward(self, ctx) -> None:
        masks = unit_masks(self.magnitudes, self.ratio)
        self.magnitudes = {}
        for name, keep in masks.items():
            module = self.layers[name]
            for p, unit_dim in self._masked_params(module):
                if p.grad is not None:
                    shape = [1] * p.grad.dim()
                    shape[unit_dim] = -1
                    p.grad.mul_(keep.view(shape).to(p.grad.dtype))

    @staticmethod
    def _masked_params(module: nn.Module):
        """(parameter, dimension indexing the output units) pairs for one layer."""
        if hasattr(module, "lora_B"):
            return [(b.weight, 0) for b in module.lora_B.values() if b.weight.requires_grad]
        pairs = [(module.weight, 1 if isinstance(module, Conv1D) else 0)]
        if module.bias is not None:
            pairs.append((module.bias, 0))
        return pairs
