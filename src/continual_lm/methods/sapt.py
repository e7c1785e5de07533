"""SAPT (Zhao et al., "SAPT: A Shared Attentive Framework for Parameter-Efficient Continual Learning of Large
Language Models", ACL 2024), as its authors' code runs it (circle-hit/SAPT, ``src/t5_prompt.py``, ``src/run_t5.py``).

Per-task PET blocks (a LoRA adapter per task, as IncLoRA: earlier ones frozen) combined by one shared attentive
learning & selection module (ALSM). The query of an input is its token embeddings (the frozen backbone's) max-pooled
over the positions and passed through a small MLP, x = LayerNorm(SiLU(W₂W₁·maxpool(e(x)))) (W₁: d → 100, W₂: 100 → d,
no biases: the code's ``trans_input``); each task t has a key k_t ∈ R^d (uniform in [−1, 1]; an old task's key is
frozen once its task ends), and every LoRA layer outputs

    y = W₀x + Σ_t a_t · B_t A_t x,     a = softmax(K_{0..T} · x / √d)   (over the tasks seen so far; d = d_model)

Attentive reflection (ARM): the query MLP is shared and keeps training, so it could forget which block old inputs
need. At the end of each task the ALSM's mean attention over that task's training inputs is recorded (fixed from
then on: the code's replay labels). Before each new task the model samples pseudo-examples of every old task from
itself ("__gen__ <task>"; each block also learns to generate its task's examples, weight ``lm_weight``), and while
the new task trains, a batch of pseudo-examples per step pulls the attention back to its task's record, zero-padded
for the keys added since:

    L = L_task + λ_lm · L_gen + λ_r · KL( ā_task ⊕ 0 ‖ a(x̃) )      (batch mean; the code's ``memory_replay``)

Generative backbones with LoRA only (causal or seq2seq). Where our port differs, and why: SAPT trains separate
generative blocks for the pseudo-samples; here the same mixture learns both (as LAMOL does), which keeps one model;
the max-pool skips padding (the code pools the pad tokens' embeddings too, which makes a query depend on the batch);
the attention is computed where the input enters the model (the encoder for T5; for a causal model, over the whole
prompt + answer in training, as the code's encoder sees the whole input).

Measured limitation: the router can only separate tasks whose inputs differ. On Biography LoRA (both tasks are
questions about persons, one prompt format) the reflection's few parsed pseudo-examples pull every input to Task 0's
block: after Task 1 its inputs went there with weight 0.99988 and Task 1 reached 3.7% (issue 28's re-run). A run's
``method_report.routing`` shows it: after each stage, each seen task's inputs' mean attention over the blocks.
On Standard CL (distinct instructions) it collapses too: SmolLM2's max-pooled embeddings of the four tasks' inputs have
mean cosine 0.987 within a task and 0.981 across (``benchmarks/sapt_routing_probe.py``), so every input starts with
the same mixture and only the reflection, on its few pseudo-examples, asks the router to separate them."""
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
from .pseudo import first_sample, generation_example, pseudo_examples, sample_texts, task_start


def max_pool(embeds: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
    """[batch, positions, d] → [batch, d]: each dimension's largest value over the input's positions (padding never
    wins the max)."""
    if mask is not None:
        embeds = embeds.masked_fill(~mask.bool().unsqueeze(-1), torch.finfo(embeds.dtype).min)
    return embeds.max(dim=1).values


def attention_over_tasks(query: torch.Tensor, keys: torch.Tensor) -> torch.Tensor:
    """softmax(q · Kᵀ / √d): [batch, tasks] (d: the queries' and keys' size, the model's width)."""
    return F.softmax(query @ keys.T / math.sqrt(keys.shape[-1]), dim=-1)


class ALSM(nn.Module):
    """The shared attentive learning & selection module: the query MLP and one key per task."""

    def __init__(self, embeddings: nn.Module, hidden: int, generator: torch.Generator):
        super().__init__()
        width = embeddings.embedding_dim
        self.query = nn.Sequential(nn.Linear(width, hidden, bias=False), nn.Linear(hidden, width, bias=False),
                                   nn.SiLU(), nn.LayerNorm(width))
        self.keys = nn.ParameterList()
        self.width, self._generator = width, generator
        self._embeddings = [embeddings]            # the backbone's (frozen); a list keeps it out of this module
        self.current: torch.Tensor | None = None   # the attention of the batch now in the model, [batch, 1, tasks]

    def add_task(self) -> None:
        key = torch.rand(self.width, generator=self._generator) * 2 - 1  # uniform in [−1, 1], as the code's
        self.keys.append(nn.Parameter(key.to(self.query[0].weight.device)))

    def attention(self, input_ids: torch.Tensor | None, mask: torch.Tensor | None,
                  embeds: torch.Tensor | None = None) -> torch.Tensor:
        if embeds is None:
            embeds = self._embeddings[0](input_ids)
        return attention_over_tasks(self.query(max_pool(embeds.detach(), mask)), torch.stack(list(self.keys)))

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
    extra_work = ('the generation task: a second forward-backward per batch on generation examples (the whole '
                  "example as the target), sampling pseudo-examples before each task, and the reflection's query on"
                  ' a pseudo-example batch')
    description = "SAPT (Zhao et al., 2024): per-task LoRA blocks mixed by a shared attention over tasks, with reflection."
    needs_lora = True

    class Params(MethodParams):
        query_hidden: Count = Field(100, ge=1, description="width of the query MLP's bottleneck (the code: 100)")
        gamma: Real = Field(0.2, ge=0, description="pseudo-examples per real example, over all old tasks")
        lm_weight: Real = Field(0.25, ge=0, description="weight of the generation loss")
        reflection_weight: Real = Field(1.0, ge=0, description="λ_r, weight of the attentive reflection")
        record_examples: Count = Field(64, ge=1, description="a task's inputs its mean attention is recorded on")
        max_new_tokens: Count | None = Field(None, ge=1, description="length of a generated pseudo-example (None: model.max_length)")
        top_k: Count = Field(20, ge=1, description="top-k sampling of pseudo-examples")
        generation_batch_size: Count = Field(64, ge=1, description="pseudo-examples generated at once")

    state_attributes = ("reflection", "records", "counts", "routing")

    def state_dict(self) -> dict:
        return {**super().state_dict(), "blocks_in_use": len(next(iter(self.mixtures.values())).adapters)}

    def load_state_dict(self, state: dict) -> None:
        super().load_state_dict({"routing": {}, **state})  # points written before the routing report have none
        for mixture in self.mixtures.values():
            mixture.adapters = self.blocks[: state["blocks_in_use"]]
        while len(self.alsm.keys) < state["blocks_in_use"]:  # grown before the weights (cl_sapt.keys.N) load
            self.alsm.add_task()

    def setup(self, ctx) -> None:
        super().setup(ctx)
        generative_only(ctx, self.name)
        backbone = ctx.backbone
        self.alsm = backbone.attach("sapt", ALSM(backbone.input_embeddings(), self.params.query_hidden,
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
        self.reflection: list[Example] = []
        self.records: dict[str, torch.Tensor] = {}  # task → its mean attention at its end (fixed)
        self.counts: dict[str, int] = {}
        self.routing: dict[str, dict[str, list[float]]] = {}  # after stage → {seen task: mean attention over blocks}

    def before_stage(self, ctx) -> None:
        t = ctx.stage_index
        old = ctx.tasks[: ctx.stage_task_indices[0]]
        self.reflection = self.reflect(ctx, old) if old else []
        if t > 0:
            for mixture in self.mixtures.values():
                mixture.adapters = self.blocks[: t + 1]
            self.alsm.add_task()
        # the current block, the query MLP and the current task's key train; old blocks and old keys are frozen
        for name, param in ctx.backbone.model.named_parameters():
            param.requires_grad_(f".{self.blocks[t]}." in name or "cl_sapt.query." in name
                                 or name.endswith(f"cl_sapt.keys.{t}"))

    def after_stage(self, ctx) -> None:
        """The task's mean attention over its training inputs, kept fixed as its reflection target; and every seen
        task's, for the routing report (where the router sends old inputs now: reflection at work, or not)."""
        seen = ctx.tasks[: ctx.stage_task_indices[-1] + 1]
        with torch.no_grad():
            attention = {}
            for task in seen:
                ids, mask = ctx.backbone.encode_prompts(task.train[: self.params.record_examples])
                attention[task.name] = self.alsm.attention(ids, mask).mean(0)
        self.records[ctx.task.name] = attention[ctx.task.name]
        self.routing[ctx.task.name] = {name: [round(float(a), 4) for a in att] for name, att in attention.items()}

    def reflect(self, ctx, old) -> list[Example]:
        """Pseudo-examples of the old tasks (each is pulled towards its task's recorded attention)."""
        p, backbone = self.params, ctx.backbone
        per_task = math.ceil(p.gamma * len(ctx.task.train) / len(old))
        pseudo: list[Example] = []
        samples_of = {}
        for i, task in enumerate(old):
            samples = sample_texts(backbone, task_start(task.name), per_task, p.max_new_tokens, p.top_k,
                                   p.generation_batch_size, ctx.config.seed * 1000 + ctx.stage_index * 100 + i)
            parsed = pseudo_examples(samples, task.name)
            pseudo += parsed
            # one sample shown: when few parse, it says why (cut short, no "Answer:", free text)
            samples_of[task.name] = {"sampled": len(samples), "parsed": len(parsed),
                                     "first_sample": first_sample(samples)}
        self.counts[ctx.task.name] = len(pseudo)
        ctx.log({"event": "sapt_reflection", "stage": ctx.task.name, "pseudo_examples": len(pseudo),
                "per_task": samples_of})
        return pseudo

    def loss(self, ctx, examples: list[Example]) -> torch.Tensor:
        p = self.params
        loss = ctx.backbone.loss(examples)
        if p.lm_weight:
            generation = [generation_example(ex, task_start(ex.task), ctx.backbone) for ex in examples]
            loss = loss + p.lm_weight * ctx.backbone.loss(generation)
        if self.reflection and p.reflection_weight:
            k = max(1, math.ceil(p.gamma * len(examples)))
            chosen = [self.reflection[ctx.rng.randrange(len(self.reflection))] for _ in range(k)]
            ids, mask = ctx.backbone.encode_prompts(chosen)
            now = self.alsm.attention(ids, mask)
            loss = loss + p.reflection_weight * reflection_loss(now, [self.records[ex.task] for ex in chosen])
        return loss

    def report(self) -> dict:
        return {**({"reflection_pseudo_examples": self.counts} if self.counts else {}), "routing": self.routing}


def reflection_loss(attention: torch.Tensor, records: list[torch.Tensor]) -> torch.Tensor:
    """KL(record ⊕ 0 ‖ attention), batch mean: each record zero-padded for the keys added since (0·log 0 = 0)."""
    target = torch.stack([F.pad(r, (0, attention.shape[1] - r.shape[0])) for r in records])
    return F.kl_div(attention.clamp(min=1e-12).log(), target, reduction="batchmean")
