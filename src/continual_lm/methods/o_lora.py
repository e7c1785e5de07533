"""O-LoRA (Wang et al., "Orthogonal Subspace Learning for Language Model Continual Learning", EMNLP 2023 Findings).

A new LoRA adapter per task (as IncLoRA), trained with

    L = L_task + λ1 Σ_layers Σ_{old tasks} ‖A_old · A_newᵀ‖²_F + λ2 Σ_{new adapter} ‖P‖₂

The first term pushes the new adapter's row space (A) orthogonal to every earlier task's; the authors' code
uses the L1 norm of A_old·A_newᵀ, we follow the squared Frobenius norm of the paper's description. The
second is the authors' L2 regularisation of the new adapter's A and B (norm, not squared), off by default
(λ2 = 0, as in their scripts)."""
from __future__ import annotations

from pydantic import Field

import torch

from ..models.adapters import adapter_names, add_task_adapter, lora_matrices
from .base import Count, Method, MethodParams, Real, register


def orthogonality_loss(old: list[dict[str, torch.Tensor]], new: dict[str, torch.Tensor]) -> torch.Tensor:
    """Σ over layers and old adapters of ‖A_old · A_newᵀ‖²_F (A: r × in)."""
    total = torch.zeros((), device=next(iter(new.values())).device)
    for layer, a_new in new.items():
        for adapters in old:
            total = total + (adapters[layer].detach() @ a_new.T).pow(2).sum()
    return total


@register
class OLoRA(Method):
    name = "o_lora"
    description = "O-LoRA (Wang et al., 2023): per-task LoRA kept orthogonal to earlier tasks' LoRA subspaces."

    class Params(MethodParams):
        lambda_orth: Real = Field(0.5, ge=0, description="λ1, weight of the orthogonality loss")
        lambda_l2: Real = Field(0.0, ge=0, description="λ2, weight of the new adapter's L2 norm")
    needs_lora = True

    def before_stage(self, ctx) -> None:
        if ctx.stage_index > 0:
            add_task_adapter(ctx.backbone, f"task{ctx.stage_index}")
        self.after_load(ctx)

    def after_load(self, ctx) -> None:
        self.current = "default" if ctx.stage_index == 0 else f"task{ctx.stage_index}"
        self.old_a = [lora_matrices(ctx.backbone, a) for a in adapter_names(ctx.backbone) if a != self.current]
        self.new_a = lora_matrices(ctx.backbone, self.current)
        self.new_params = [p for p in ctx.backbone.model.parameters() if p.requires_grad]

    def loss(self, ctx, examples) -> torch.Tensor:
        loss = ctx.backbone.loss(examples)
        if self.old_a and self.params.lambda_orth:
            loss = loss + self.params.lambda_orth * orthogonality_loss(self.old_a, self.new_a)
        if self.params.lambda_l2:
            loss = loss + self.params.lambda_l2 * sum(p.norm(2) for p in self.new_params)
        return loss
