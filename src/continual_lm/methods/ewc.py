"""EWC (Kirkpatrick et al., "Overcoming catastrophic forgetting in neural networks", PNAS 2017), online form.

After each task: the diagonal empirical Fisher F = E[(∂L/∂θ)²] over the task's training batches, accumulated
across tasks (F ← γ·F + F_task; γ = 1 sums them), and the anchor θ* = the weights at the task's end.
During later tasks the loss gets the penalty  λ/2 · Σ F ⊙ (θ − θ*)²,  whose gradient is λ·F ⊙ (θ − θ*).

The Fisher's scale depends on the backbone, the loss and the number of trainable parameters, so a λ tuned on one
model means little on another (the spurious-forgetting paper uses λ in 1e6–1e7 on its own model). ``fisher_norm:
mean`` divides each task's Fisher by its mean over all parameters before accumulating it: λ is then the penalty's
weight on a parameter of average importance, comparable across backbones. Default ``none`` (the paper's form).

Cost: the Fisher takes ``fisher_batches`` (16) forward-backward passes at each task's end, one batch each — 13% of a
125-step stage (Standard CL, 1000 examples), 80% of benchmarks/method_cost.py's 20-step stages — and the penalty a
pass over the LoRA weights per step."""
from __future__ import annotations

from typing import Literal

import torch
from pydantic import Field

from .base import Count, MethodParams, Real, Method, register
from .importance import diagonal_fisher
from ..models.weights import snapshot


def ewc_penalty(params: dict[str, torch.Tensor], fisher: dict[str, torch.Tensor], anchor: dict[str, torch.Tensor],
                lam: float) -> torch.Tensor:
    return 0.5 * lam * sum((fisher[n] * (p - anchor[n]).pow(2)).sum() for n, p in params.items() if n in fisher)


@register
class EWC(Method):
    name = "ewc"
    extra_work = ("the Fisher of each finished task: fisher_batches (16) forward-backward passes at the task's end, "
                  "heavy against short stages")
    description = "EWC (Kirkpatrick et al., 2017): online diagonal-Fisher penalty λ/2 Σ F (θ − θ*)²."

    class Params(MethodParams):
        lambda_ewc: Real = Field(1000.0, ge=0, description="penalty weight λ")
        gamma: Real = Field(1.0, ge=0, le=1, description="online decay of the accumulated Fisher (1: sum)")
        fisher_batches: Count = Field(16, ge=1, description="training batches per task for the Fisher")
        fisher_norm: Literal["none", "mean"] = Field("none", description="divide each task's Fisher by its mean")

    state_attributes = ("fisher", "anchor")

    def setup(self, ctx) -> None:
        super().setup(ctx)
        self.fisher: dict[str, torch.Tensor] = {}
        self.anchor: dict[str, torch.Tensor] = {}

    def loss(self, ctx, examples) -> torch.Tensor:
        loss = ctx.backbone.loss(examples)
        if self.fisher:
            loss = loss + ewc_penalty(ctx.backbone.trainable_parameters(), self.fisher, self.anchor, self.params.lambda_ewc)
        return loss

    def after_stage(self, ctx) -> None:
        params = ctx.backbone.trainable_parameters()
        examples, bs = ctx.task.train, ctx.config.training.batch_size
        starts = list(range(0, len(examples), bs))[: self.params.fisher_batches]
        task_fisher = diagonal_fisher(params, (lambda s=s: ctx.backbone.loss(examples[s:s + bs]) for s in starts))
        if self.params.fisher_norm == "mean":
            mean = sum(float(f.sum()) for f in task_fisher.values()) / sum(f.numel() for f in task_fisher.values())
            task_fisher = {n: f / mean if mean > 0 else f for n, f in task_fisher.items()}
        for n, f in task_fisher.items():
            self.fisher[n] = self.params.gamma * self.fisher[n] + f if n in self.fisher else f
        self.anchor = snapshot(params)
