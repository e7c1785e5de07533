"""MoELoRA (Luo et al., "MoELoRA: Contrastive Learning Guided Mixture of Experts on Parameter-Efficient Fine-Tuning
for Large Language Models", 2024; the MoELoRA baseline of the Recurrent-KIF paper).

Every LoRA target module holds K LoRA experts (B_k A_k, rank r each, peft's initialisation: B = 0) and a router
(a linear map of the module's input to K logits); the module's output is

    y = W x + Σ_k g_k · s · B_k A_k x,    g = softmax(router(x))   (top-k: the k largest kept and renormalised)

per token (``gate: token``) or per sequence (``gate: sequence``: the router reads the mean of the sequence's inputs).
In continual learning the experts and routers are shared by every task and trained on each in turn — there are no
task-specific experts and no task identity at test time; what protects old tasks is only that the router can send
new inputs to other experts.

Where our port differs: the paper's contrastive loss between experts' outputs is not ported (the Recurrent-KIF
comparison uses MoELoRA as a mixture baseline); the sequence gate averages over padding positions too (a layer does
not see the attention mask); expert 0 is the adapter peft created, so with one expert this is plain LoRA exactly."""
from __future__ import annotations

from typing import Literal

import torch
import torch.nn.functional as F
from pydantic import Field
from torch import nn

from ..models.adapters import mix_lora_layers
from .base import Count, Method, MethodParams, register


class Router(nn.Module):
    """Softmax gate over K experts from a module's input: per token, or per sequence (mean of the inputs)."""

    def __init__(self, in_features: int, experts: int, top_k: int | None, per_sequence: bool):
        super().__init__()
        self.linear = nn.Linear(in_features, experts)
        nn.init.zeros_(self.linear.weight)  # uniform gates at the start: no expert is favoured before training
        nn.init.zeros_(self.linear.bias)
        self.top_k, self.per_sequence = top_k, per_sequence

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        source = x.mean(dim=-2, keepdim=True) if self.per_sequence and x.dim() > 2 else x
        gate = F.softmax(self.linear(source), dim=-1)
        if self.top_k is not None and self.top_k < gate.shape[-1]:
            kept = gate.topk(self.top_k, dim=-1)
            gate = torch.zeros_like(gate).scatter(-1, kept.indices, kept.values)
            gate = gate / gate.sum(-1, keepdim=True)
        return gate


@register
class MoELoRA(Method):
    name = "moe_lora"
    description = "MoELoRA (Luo et al., 2024): K LoRA experts per module mixed by a learned router, shared by all tasks."
    needs_lora = True

    class Params(MethodParams):
        experts: Count = Field(4, ge=1, description="LoRA experts per target module (rank model.lora.r each)")
        top_k: Count | None = Field(None, ge=1, description="experts kept per token (None: all, a dense mixture)")
        gate: Literal["token", "sequence"] = Field("token", description="what the router weighs")

    def setup(self, ctx) -> None:
        super().setup(ctx)
        p = self.params
        names = ["default", *(f"expert{k}" for k in range(1, p.experts))]

        def router(name: str, layer: nn.Module) -> Router:
            return Router(layer.in_features, p.experts, p.top_k, p.gate == "sequence").to(ctx.backbone.device)
        self.mixtures = mix_lora_layers(ctx.backbone, names, router)
        ctx.log({"event": "moe_lora", "layers": len(self.mixtures), "experts": p.experts})
