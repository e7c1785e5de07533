"""O-LoRA (Wang et al., "Orthogonal Subspace Learning for Language Model Continual Learning", EMNLP 2023 Findings).

A new LoRA adapter per task (as IncLoRA), trained with

    L = L_task + λ1 Σ_layers Σ_{old tasks} O(A_old · A_newᵀ) + λ2 Σ_{new adapter} ‖P‖₂

The first term pushes the new adapter's row space (A) orthogonal to every earlier task's. ``penalty`` chooses O:

- ``l1`` (default): Σ |A_old·A_newᵀ|, the authors' code (cmnfriend/O-LoRA, ``src/uie_trainer_lora.py``, the
  regularisation in ``training_step``: ``torch.abs(torch.mm(lora_A, loranew_A.T)).sum()``, λ1 = 0.5 in their
  scripts). Their ``lora_A`` holds every old task's rows stacked, so the sum over old tasks here is the same number.
  In their logs this term dominates the training loss early on (10–23 against 0.2–0.6).
- ``frobenius``: ‖A_old·A_newᵀ‖²_F, the paper's text (Eq. 5 names the inner products' squares).

The second is the authors' L2 regularisation of the new adapter's A and B (norm, not squared), off by default
(λ2 = 0, as in their scripts). Where we differ: the authors add the penalty once per optimiser step, after dividing
the task loss by the gradient-accumulation steps; we add it per micro-batch and divide the sum (the same with
``grad_accum: 1``, the setting of every config here)."""
from __future__ import annotations

from typing import Literal

from pydantic import Field

import torch

from ..models.adapters import adapter_names, add_task_adapter, lora_matrices
from .base import Method, MethodParams, Real, register


def orthogonality_loss(old: list[dict[str, torch.Tensor]], new: dict[str, torch.Tensor],
                       penalty: str = "l1") -> torch.Tensor:
    """Σ over layers and old adapters of Σ|A_old · A_newᵀ| (``l1``) or ‖A_old · A_newᵀ‖²_F (``frobenius``);
    A: r × in."""
    total = torch.zeros((), device=next(iter(new.values())).device)
    for layer, a_new in new.items():
        for adapters in old:
            product = adapters[layer].detach() @ a_new.T
            total = total + (product.abs().sum() if penalty == "l1" else product.pow(2).sum())
    return total


@register
class OLoRA(Method):
    name = "o_lora"
    description = "O-LoRA (Wang et al., 2023): per-task LoRA kept orthogonal to earlier tasks' LoRA subspaces."

    class Params(MethodParams):
        lambda_orth: Real = Field(0.5, ge=0, description="λ1, weight of the orthogonality loss")
        penalty: Literal["l1", "frobenius"] = Field(
            "l1", description="Σ|A_old·A_newᵀ| (the authors' code) or its squared Frobenius norm (the paper's text)")
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
            loss = loss + self.params.lambda_orth * orthogonality_loss(self.old_a, self.new_a, self.params.penalty)
        if self.params.lambda_l2:
            loss = loss + self.params.lambda_l2 * sum(p.norm(2) for p in self.new_params)
        return loss
