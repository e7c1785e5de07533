"""L2P (Wang et al., "Learning to Prompt for Continual Learning", CVPR 2022), for language models as O-LoRA and TRACE
run it: a frozen backbone and a pool of prompts chosen per input.

A pool of M prompts P_i (each L_p vectors of the embedding size) with learnable keys k_i. The query of an input x is
the frozen backbone's mean-pooled representation q(x) (without prompts); the N prompts whose keys are most
cosine-similar to q(x) are prepended to the input embeddings, and training minimises

    L = L_task(prompted input) + λ · Σ_{i ∈ chosen} (1 − cos(q(x), k_i))        (Eq. 5; summed over the chosen keys,
                                                                                  averaged over the batch)

Only prompts and keys train; the backbone (and any LoRA on it) stays frozen. Defaults are the paper's: M = 10,
L_p = 5, N = 5, λ = 0.5. Where our port differs: prompts are initialised from randomly drawn vocabulary embeddings
(prompt tuning's initialisation, so that a prompt starts on the scale of the embeddings of any backbone; the paper
draws uniform(−1, 1), sized for a ViT), keys uniform(−1, 1) as in the paper; the prompts and keys train at their own
learning rate ``lr`` (default ``PROMPT_LR``, swept on Biography, where the run's 1e-4 left them where they started);
no batch-wise prompt voting (the paper's option for task-incremental benchmarks) — every input picks its own
prompts, at training and test time."""
from __future__ import annotations

import torch
import torch.nn.functional as F
from pydantic import Field
from torch import nn

from .base import Count, Method, MethodParams, Real, prompt_learning_rate, register


def choose_prompts(query: torch.Tensor, keys: torch.Tensor, top_n: int) -> tuple[torch.Tensor, torch.Tensor]:
    """(indices [batch, N], cosine similarities [batch, N]) of the N keys closest to each query (ties: lower index)."""
    sims = F.normalize(query, dim=-1) @ F.normalize(keys, dim=-1).T
    chosen = sims.topk(top_n, dim=-1)
    return chosen.indices, chosen.values


def key_loss(similarities: torch.Tensor) -> torch.Tensor:
    """Σ over the chosen keys of (1 − cos), averaged over the batch."""
    return (1 - similarities).sum(-1).mean()


class PromptPool(nn.Module):
    """The pool: ``forward(input_ids, mask)`` → the chosen prompts of each input, [batch, N · L_p, hidden]; the
    similarities of the chosen keys are kept in ``matched`` for the key loss."""

    def __init__(self, backbone, pool_size: int, length: int, top_n: int, generator: torch.Generator):
        super().__init__()
        embeddings = backbone.input_embeddings().weight.detach()
        drawn = torch.randint(0, embeddings.shape[0], (pool_size * length,), generator=generator)
        self.prompts = nn.Parameter(embeddings[drawn].clone().reshape(pool_size, length, -1))
        self.keys = nn.Parameter(torch.rand(pool_size, embeddings.shape[1], generator=generator) * 2 - 1)
        self.top_n, self.length = top_n, top_n * length
        self._backbone = backbone                      # not a submodule: the backbone owns this pool
        self.matched: torch.Tensor | None = None

    def forward(self, input_ids: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        query = self._backbone.represent(input_ids, mask)
        indices, self.matched = choose_prompts(query, self.keys, self.top_n)
        return self.prompts[indices].flatten(1, 2)


@register
class L2P(Method):
    name = "l2p"
    description = "L2P (Wang et al., 2022): a frozen backbone and a pool of prompts, chosen per input by key matching."

    class Params(MethodParams):
        pool_size: Count = Field(10, ge=1, description="M, prompts in the pool")
        prompt_length: Count = Field(5, ge=1, description="L_p, vectors per prompt")
        top_n: Count = Field(5, ge=1, description="N, prompts prepended to each input")
        lambda_key: Real = Field(0.5, ge=0, description="λ, weight of the key-matching loss")
        lr: Real | None = prompt_learning_rate()

    def setup(self, ctx) -> None:
        super().setup(ctx)
        p = self.params
        if p.top_n > p.pool_size:
            from ..errors import ConfigError
            raise ConfigError(f"method.params.top_n: {p.top_n} prompts cannot be chosen from a pool of {p.pool_size}")
        for param in ctx.backbone.model.parameters():
            param.requires_grad_(False)
        generator = torch.Generator().manual_seed(ctx.config.seed)
        self.pool = PromptPool(ctx.backbone, p.pool_size, p.prompt_length, p.top_n, generator)
        ctx.backbone.attach_prompt(self.pool)

    def loss(self, ctx, examples) -> torch.Tensor:
        task = ctx.backbone.loss(examples)
        return task + self.params.lambda_key * key_loss(self.pool.matched)

    def report(self) -> dict:
        return {"prompt_parameters": sum(p.numel() for p in self.pool.parameters())}
