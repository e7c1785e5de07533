"""O-LoRA (Wang et al., "Orthogonal Subspace Learning for Language Model Continual Learning", EMNLP 2023 Findings).

A new LoRA adapter per task (as IncLoRA), trained with

    L = L_task + λ1 Σ_layers Σ_{old tasks} ‖A_old · A_newᵀ‖²_F + λ2 Σ_{new adapter} ‖P‖₂

The first term pushes the new adapter's row space (A) orthogonal to every earlier task's; the authors' code
uses the L1 norm of A_old·A_newᵀ, we follow the squared Frobenius norm of the paper's description. The
second is the authors' L2 regularisation of the new adapter's A and B (norm, not squared), off by default
(λ2 = 0, as in their scripts)."""
from __future__ import annotations

import torch

from ..models.adapters import adapter_names, add_task_adapter, lora_matrices
from .base import Method, register


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
    defaults = {"lambda_orth": 0.5, "lambda_l2": 0.0}
    bounds = {"lambda_orth": "[0, inf)", "lambda_l2": "[0, inf)"}
    needs_lora = True

    def before_task(self, ctx) -> None:
        self.current = "default" if ctx.task_index == 0 else f"task{ctx.task_index}"
        if ctx.task_index > 0:
            add_task_adapter(ctx.backbone, self.current)
        self.old_a = [lora_matrices(ctx.backbone, a) for a in adapter_names(ctx.backbone) if a != self.current]
        self.new_a = lora_matrices(ctx.backbone, self.current)
        self.new_params = [p for p in ctx.backbone.model.parameters() if p.requires_grad]

    def loss(self, ctx, examples) -> torch.Tensor:
        loss = ctx.backbone.loss(examples)
        if self.old_a and self.lambda_orth:
            loss = loss + self.lambda_orth * orthogonality_loss(self.old_a, self.new_a)
        if self.lambda_l2:
            loss = loss + self.lambda_l2 * sum(p.norm(2) for p in self.new_params)
        return loss
