"""Gradient projection (Zheng et al., ICLR 2025, Sec. 5): record the directions of a task's early update (per weight
matrix, the top singular subspace U of ΔW over the first ``end_step`` steps — the "alignment-undoing"
direction) and project every later gradient onto its orthogonal complement: G ← G − U·Uᵀ·G (in the output space).

Applies to the 2-D trainable weights of linear layers (under LoRA, to the B matrices, whose column space is that
of ΔW = B·A), in attention layers only (``scope: attention``) or all layers."""
from __future__ import annotations

from typing import Literal

from pydantic import Field

import torch
from torch import nn
from transformers.pytorch_utils import Conv1D

from ..models.weights import top_subspace
from .base import Count, Method, MethodParams, Real, register

ATTENTION_KEYS = ("attn", "attention", "q_proj", "k_proj", "v_proj", "o_proj", "query", "key", "value")


def output_dims(model: nn.Module) -> dict[str, int]:
    """Parameter name -> the dimension that indexes output units, for the weights of linear layers."""
    dims = {}
    for mname, module in model.named_modules():
        if isinstance(module, (nn.Linear, Conv1D)):
            dims[f"{mname}.weight" if mname else "weight"] = 1 if isinstance(module, Conv1D) else 0
    return dims


def project_out(grad: torch.Tensor, basis: torch.Tensor, out_dim: int) -> torch.Tensor:
    """Remove from ``grad`` its component in span(basis) along the output dimension."""
    if out_dim == 0:
        return grad - basis @ (basis.T @ grad)
    return grad - (grad @ basis) @ basis.T


@register
class GradProjection(Method):
    name = "grad_projection"
    description = "Gradient projection: project later gradients away from the task's early-update subspace."

    class Params(MethodParams):
        end_step: Count = Field(150, ge=1, description="the early update: steps 0..end_step of a task")
        scope: Literal["attention", "all"] = Field("attention", description="which layers' gradients are projected")
        energy: Real = Field(0.99, gt=0, le=1, description="spectral energy kept in the recorded subspace")
        from_task: Count = Field(1, ge=0, description="first task it applies to")

    state_attributes = ("bases", "start")

    def before_stage(self, ctx) -> None:
        self.bases: dict[str, torch.Tensor] = {}
        self.start = None
        if ctx.stage_index < self.params.from_task:
            return
        self.after_load(ctx)
        self.start = {n: p.detach().clone() for n, (p, _) in self.targets.items()}

    def after_load(self, ctx) -> None:
        """The weights whose gradients are projected (the 2-D weights of linear layers, attention only by default)."""
        dims = output_dims(ctx.backbone.model)
        self.targets = {n: (p, dims[n]) for n, p in ctx.backbone.trainable_parameters().items()
                        if n in dims and ".lora_A." not in n
                        and (self.params.scope == "all" or any(k in n for k in ATTENTION_KEYS))}

    def after_step(self, ctx) -> None:
        if self.start is not None and ctx.step == self.params.end_step:
            for n, (p, out_dim) in self.targets.items():
                delta = (p.detach() - self.start[n]).double()
                basis = top_subspace(delta if out_dim == 0 else delta.T, self.params.energy)
                if basis.shape[1]:
                    self.bases[n] = basis.to(p.dtype)
            ctx.log({"event": "grad_projection", "matrices": len(self.bases),
                     "mean_rank": sum(b.shape[1] for b in self.bases.values()) / max(len(self.bases), 1)})

    def after_backward(self, ctx) -> None:
        for n, basis in self.bases.items():
            p, out_dim = self.targets[n]
            if p.grad is not None:
                p.grad.copy_(project_out(p.grad, basis, out_dim))
