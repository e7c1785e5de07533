"""SAPT (Zhao et al., "SAPT: A Shared Attentive Framework for Parameter-Efficient Continual Learning of Large
Language Models", ACL 2024).

Per-task PET blocks (a LoRA adapter per task, as IncLoRA: earlier ones frozen) combined by one shared attentive
learning & selection module (ALSM): the query of an input is a projection of the mean of its token embeddings,
q = W·mean(e(x)) (the embeddings are the frozen backbone's), each task t has a learnable key k_t, and every LoRA layer
outputs

    y = W₀x + Σ_t a_t · B_t A_t x,     a = softmax(q · K_{0..T}ᵀ / √d)   (over the tasks seen so far)

Attentive reflection (ARM): the ALSM is shared and keeps training, so it could forget which block old inputs need.
Before each new task the model samples pseudo-examples of every old task from itself ("__gen__ <task>"; each block
also learns to generate its task's examples, weight ``lm_weight``), records the ALSM's attention for them, and while
the new task trains the ALSM is pulled back to those recordings on a batch of pseudo-examples per step:

    L = L_task + λ_lm · L_gen + λ_r · CE(a_recorded ⊕ 0, a(x̃))

Generative backbones with LoRA only (causal or seq2seq). Where our port differs: SAPT trains separate generative
blocks for the pseudo-samples; here the same mixture learns both (as LAMOL does), which keeps one model; the
attention is per sequence as in the paper, computed where the input enters the model (the encoder for T5)."""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from pydantic import Field
from torch import nn

from ..data.task import Example
from ..models.adapters import mix_lora_layers
from .base import Count, Method, MethodParams, Real, register
from .lfpt5 import generative_only
from .pseudo import generation_example, pseudo_examples, sample_texts, task_start


def attention_over_tasks(query: torch.Tensor, keys: torch.Tensor) -> torch.Tensor:
    """softmax(q · Kᵀ / √d): [batch, tasks]."""
    return F.softmax(query @ keys.T / math.sqrt(keys.shape[-1]), dim=-1)


class ALSM(nn.Module):
    """The shared attentive learning & selection module: a projection of the input and one key per task."""

    def __init__(self, embeddings: nn.Module, key_dim: int, generator: torch.Generator):
        super().__init__()
        self.proj = nn.Linear(embeddings.embedding_dim, key_dim)
        self.keys = nn.ParameterList()
        self.key_dim, self._generator = key_dim, generator
        self._embeddings = [embeddings]            # the backbone's (frozen); a list keeps it out of this module
        self.current: torch.Tensor | None = None   # the attention of the batch now in the model, [batch, 1, tasks]

    def add_task(self) -> None:
        key = torch.randn(self.key_dim, generator=self._generator) / math.sqrt(self.key_dim)
        self.keys.append(nn.Parameter(key.to(self.proj.weight.device)))

    def attention(self, input_ids: torch.Tensor | None, mask: torch.Tensor | None,
                  embeds: torch.Tensor | None = None) -> torch.Tensor:
        if embeds is None:
            embeds = self._embeddings[0](input_ids)
        embeds = embeds.detach()
        mask = torch.ones(embeds.shape[:2], device=embeds.device) if mask is None else mask
        pooled = (embeds * mask.unsqueeze(-1)).sum(1) / mask.sum(1, keepdim=True).clamp(min=1)
        return attention_over_tasks(self.proj(pooled), torch.stack(list(self.keys)))

    def hook(self, module, args, kwargs):
        """Forward pre-hook where the input enters the model: the attention of a new batch (not of a decoding step,
        which continues the batch whose attention is already set)."""
        ids, embeds = kwargs.get("input_ids", args[0] if args else None), kwargs.get("inputs_embeds")
        cache = kwargs.get("past_key_values")
        continuing = cache is not None and (cache.get_seq_length() if hasattr(cache, "get_seq_length") else len(cache)) > 0
        if (ids is not None or embeds is not None) and not continuing:
            self.current = self.attention(ids, kwargs.get("attention_mask"), embeds).unsqueeze(1)


@register
class SAPT(Method):
    name = "sapt"
    description = "SAPT (Zhao et al., 2024): per-task LoRA blocks mixed by a shared attention over tasks, with reflection."
    needs_lora = True

    class Params(MethodParams):
        key_dim: Count = Field(64, ge=1, description="d, size of the ALSM's queries and keys")
        gamma: Real = Field(0.2, ge=0, description="pseudo-examples per real example, over all old tasks")
        lm_weight: Real = Field(0.25, ge=0, description="weight of the generation loss")
        reflection_weight: Real = Field(1.0, ge=0, description="λ_r, weight of the attentive reflection")
        max_new_tokens: Count = Field(48, ge=1, description="length of a generated pseudo-example")
        top_k: Count = Field(20, ge=1, description="top-k sampling of pseudo-examples")
        generation_batch_size: Count = Field(64, ge=1, description="pseudo-examples generated at once")

    state_attributes = ("reflection", "counts")

    def state_dict(self) -> dict:
        return {**super().state_dict(), "blocks_in_use": len(next(iter(self.mixtures.values())).adapters)}

    def load_state_dict(self, state: dict) -> None:
        super().load_state_dict(state)
        for mixture in self.mixtures.values():
            mixture.adapters = self.blocks[: state["blocks_in_use"]]
        while len(self.alsm.keys) < state["blocks_in_use"]:  # grown before the weights (cl_sapt.keys.N) load
            self.alsm.add_task()

    def setup(self, ctx) -> None:
        super().setup(ctx)
        generative_only(ctx, self.name)
        backbone = ctx.backbone
        self.alsm = backbone.attach("sapt", ALSM(backbone.input_embeddings(), self.params.key_dim,
                                                 torch.Generator().manual_seed(ctx.config.seed)))
        model = backbone.base_model
        entry = model.get_encoder() if backbone.kind == "seq2seq" else model
        entry.register_forward_pre_hook(self.alsm.hook, with_kwargs=True)
        self.alsm.add_task()  # task 0's key: the initial evaluation already goes through the mixture
        # Every task's block is created now (peft cannot inject adapters into layers once they are mixed); a block
        # joins the mixture when its task starts, and only the current one trains.
        self.blocks = ["default", *(f"task{i}" for i in range(1, len(ctx.tasks)))]
        self.mixtures = mix_lora_layers(backbone, self.blocks, lambda name, layer: (lambda x: self.alsm.current))
        for mixture in self.mixtures.values():
            mixture.adapters = self.blocks[:1]
        self.reflection: list[tuple[Example, torch.Tensor]] = []
        self.counts: dict[str, int] = {}

    def before_stage(self, ctx) -> None:
        t = ctx.stage_index
        old = ctx.tasks[: ctx.stage_task_indices[0]]
        self.reflection = self.reflect(ctx, old) if old else []
        if t > 0:
            for mixture in self.mixtures.values():
                mixture.adapters = self.blocks[: t + 1]
            self.alsm.add_task()
        current = f".{self.blocks[t]}."
        for name, param in ctx.backbone.model.named_parameters():  # the current block and the ALSM train
            param.requires_grad_(current in name or name.startswith("cl_sapt.") or ".cl_sapt." in name)

    def reflect(self, ctx, old) -> list[tuple[Example, torch.Tensor]]:
        """Pseudo-examples of the old tasks, each with the ALSM's attention over the old blocks now."""
        p, backbone = self.params, ctx.backbone
        per_task = math.ceil(p.gamma * len(ctx.task.train) / len(old))
        pseudo: list[Example] = []
        for i, task in enumerate(old):
            samples = sample_texts(backbone, task_start(task.name), per_task, p.max_new_tokens, p.top_k,
                                   p.generation_batch_size, ctx.config.seed * 1000 + ctx.stage_index * 100 + i)
            pseudo += pseudo_examples(samples, task.name)
        self.counts[ctx.task.name] = len(pseudo)
        ctx.log({"event": "sapt_reflection", "stage": ctx.task.name, "pseudo_examples": len(pseudo)})
        if not pseudo:
            return []
        with torch.no_grad():
            ids, mask = backbone.encode_prompts(pseudo)
            recorded = self.alsm.attention(ids, mask)
        return list(zip(pseudo, recorded))

    def loss(self, ctx, examples: list[Example]) -> torch.Tensor:
        p = self.params
        loss = ctx.backbone.loss(examples)
        if p.lm_weight:
            loss = loss + p.lm_weight * ctx.backbone.loss([generation_example(ex, task_start(ex.task)) for ex in examples])
        if self.reflection and p.reflection_weight:
            k = max(1, math.ceil(p.gamma * len(examples)))
            chosen = [self.reflection[ctx.rng.randrange(len(self.reflection))] for _ in range(k)]
            ids, mask = ctx.backbone.encode_prompts([ex for ex, _ in chosen])
            now = self.alsm.attention(ids, mask)
            target = torch.stack([F.pad(a, (0, now.shape[1] - a.shape[0])) for _, a in chosen])
            loss = loss + p.reflection_weight * -(target * now.clamp(min=1e-12).log()).sum(-1).mean()
        return loss

    def report(self) -> dict:
        return {"reflection_pseudo_examples": self.counts} if self.counts else {}
