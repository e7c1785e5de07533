"""MIGU (Du et al., "Unlocking Continual Learning Abilities in Language Models", EMNLP 2024 Findings).

Rehearsal-free and task-label-free. During the forward pass the output magnitude of each linear layer is recorded
per output unit, summed over the tokens of the optimiser step's batches: s_j = Σ|y_j| (the paper L1-normalises it,
which changes no ranking). After backward only the gradients of the units with the largest magnitude are kept (the
weight rows of those units) and the rest are zeroed, so each step updates the units the current input uses.

Two variants (``variant``):

- ``paper_code`` (default), as the authors' code (wenyudu/MIGU: ``uie_trainer_lora.py``, ``accelerate_local.py``,
  ``scripts/standard_benchmark_lora.sh``): the first task is trained unmasked (``--is_first_task True`` registers no
  hook); under LoRA the outputs of both LoRA A and LoRA B are hooked, and A's rows (rank units) are masked by A's
  output magnitude, B's rows (output units) by B's; a unit is kept when its magnitude is at least the
  ``1 − ratio`` quantile (``activation >= torch.quantile(activation, ini_threshold)``), ratio 0.3 (their
  ``ini_threshold=0.7``); under full fine-tuning the Linear layers' weight rows are masked (not the biases).
- ``ours``: our first reading of the paper: masks from the first task on, computed from the whole layer's output
  (frozen base + LoRA) and applied to LoRA B's rows only (and to weight rows and biases under full fine-tuning);
  the top ``ratio`` units by count. It asks the question the paper poses — which of the *layer's* output units does
  this input use — rather than which of the adapter's; kept to compare the two readings.

Where both differ from the code: GPT-2's Conv1D layers are treated as Linear (output units on dim 1); the code's
public LoRA backward (``backward_lora_tuning``) names the masking method differently from its run scripts, so we
follow the full-tuning backward's rule (``backward_full_tuning``) on the LoRA modules the LoRA trainer hooks.
"""
from __future__ import annotations

from typing import Literal

from pydantic import Field

import torch
from torch import nn
from transformers.pytorch_utils import Conv1D

from .base import Count, Method, MethodParams, Real, register
from .importance import at_least_quantile, top_fraction_masks


def unit_masks(magnitudes: dict[str, torch.Tensor], ratio: float) -> dict[str, torch.Tensor]:
    """ours: per layer, the output units in the top ``ratio`` (by count) of L1-normalised magnitude."""
    normalised = {n: m / m.sum().clamp(min=1e-12) for n, m in magnitudes.items()}
    return {n: top_fraction_masks({n: s}, ratio)[n] for n, s in normalised.items()}


def code_unit_masks(magnitudes: dict[str, torch.Tensor], ratio: float) -> dict[str, torch.Tensor]:
    """paper_code: per layer, the units whose magnitude is at least its (1 − ratio) quantile."""
    return {n: at_least_quantile(m, 1 - ratio) for n, m in magnitudes.items()}


def _masked_layers(model: nn.Module, variant: str) -> dict[str, list[tuple[nn.Module, nn.Parameter, int]]]:
    """{hooked module name: [(module whose output is measured, parameter to mask, its output-unit dim), ...]}."""
    found: dict[str, list] = {}
    for name, module in model.named_modules():
        if hasattr(module, "lora_B") and hasattr(module, "base_layer"):
            for adapter, b in module.lora_B.items():
                if not b.weight.requires_grad:
                    continue
                if variant == "paper_code":
                    a = module.lora_A[adapter]
                    found[f"{name}.lora_A.{adapter}"] = [(a, a.weight, 0)]
                    found[f"{name}.lora_B.{adapter}"] = [(b, b.weight, 0)]
                else:
                    found.setdefault(name, []).append((module, b.weight, 0))
        elif isinstance(module, (nn.Linear, Conv1D)) and module.weight.requires_grad and ".lora_" not in name:
            unit_dim = 1 if isinstance(module, Conv1D) else 0
            found[name] = [(module, module.weight, unit_dim)]
            if variant == "ours" and module.bias is not None:
                found[name].append((module, module.bias, 0))
    return found


@register
class MIGU(Method):
    name = "migu"
    description = "MIGU (Du et al., 2024): keep only gradients of the output units with the largest output magnitude."

    class Params(MethodParams):
        variant: Literal["paper_code", "ours"] = Field("paper_code", description="see the module doc")
        ratio: Real = Field(0.3, gt=0, le=1, description="share of units whose gradients are kept")

    state_attributes = ("masking",)

    def setup(self, ctx) -> None:
        super().setup(ctx)
        self.magnitudes: dict[str, torch.Tensor] = {}
        self.masking = False
        self.layers = _masked_layers(ctx.backbone.model, self.params.variant)
        for name, entries in self.layers.items():
            entries[0][0].register_forward_hook(self._recorder(name))

    def before_stage(self, ctx) -> None:
        self.masking = self.params.variant == "ours" or ctx.stage_index > 0  # the code trains the first task unmasked

    def _recorder(self, name: str):
        def hook(module, inputs, output):
            if self.masking and module.training and torch.is_grad_enabled():
                out = output[0] if isinstance(output, tuple) else output
                mag = out.detach().abs().reshape(-1, out.shape[-1]).sum(0)
                self.magnitudes[name] = self.magnitudes.get(name, 0) + mag
        return hook

    def masks(self) -> dict[str, torch.Tensor]:
        rule = code_unit_masks if self.params.variant == "paper_code" else unit_masks
        return rule(self.magnitudes, self.params.ratio)

    def after_backward(self, ctx) -> None:
        if not self.masking:
            return
        masks = self.masks()
        self.magnitudes = {}
        for name, keep in masks.items():
            for _, p, unit_dim in self.layers[name]:
                if p.grad is not None:
                    shape = [1] * p.grad.dim()
                    shape[unit_dim] = -1
                    p.grad.mul_(keep.view(shape).to(p.grad.dtype))
