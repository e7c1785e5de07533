"""LFPT5 (Qin & Joty, "LFPT5: A Unified Framework for Lifelong Few-shot Language Learning Based on Prompt Tuning of
T5", ICLR 2022).

Prompt tuning: the backbone (and any LoRA on it) is frozen and a soft prompt of ``prompt_length`` vectors, prepended
to every input's embeddings, is all that trains. The same prompt also learns to *generate* the task's examples: each
training example (x, y) is also the generation example "__gen__ <task>" → "x y" (weight ``lm_weight``). Before each
new task the model samples pseudo-examples of every old task from itself ("__gen__ <old task>"), labels them with its
own prediction (label distillation), and trains on them with the new data — γ pseudo-examples per real example in
each batch — with, on the pseudo-examples, the word-level distillation

    KD = T² · KL( p_old(· | x̃, prompt_old) ‖ p(· | x̃, prompt) )    at the answer positions (weight ``kd_weight``)

from the prompt as it was before the task. Generative backbones only (causal or seq2seq).

Where our port differs: the paper's T5-large prompt is 300 tokens long; the default here is 20 (a CPU's budget:
``prompt_length`` sets it); the prompt is initialised from randomly drawn vocabulary embeddings, as in the paper; it
trains with AdamW at its own learning rate ``lr`` (default ``PROMPT_LR``, swept on Biography) where the paper uses
Adafactor at prompt tuning's large rate — Biography's fine-tuning rate (1e-4) left the prompt where it started."""
from __future__ import annotations

import math

import torch
from pydantic import Field
from torch import nn

from ..data.task import Example
from ..errors import ConfigError
from ..models.weights import snapshot
from .base import Count, Method, MethodParams, Real, prompt_learning_rate, register
from .distill import distillation_kl, teacher_logits
from .pseudo import generation_example, pseudo_examples, sample_texts, task_start


class SoftPrompt(nn.Module):
    """One prompt for every input: ``forward(input_ids, mask)`` → [batch, length, hidden]."""

    def __init__(self, backbone, length: int, generator: torch.Generator):
        super().__init__()
        embeddings = backbone.input_embeddings().weight.detach()
        drawn = torch.randint(0, embeddings.shape[0], (length,), generator=generator)
        self.prompt = nn.Parameter(embeddings[drawn].clone())
        self.length = length

    def forward(self, input_ids: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        return self.prompt.unsqueeze(0).expand(input_ids.shape[0], -1, -1)


def generative_only(ctx, name: str) -> None:
    if ctx.backbone.kind not in ("causal", "seq2seq"):
        raise ConfigError(f"method {name!r} generates pseudo-examples: it needs model.kind causal or seq2seq, "
                          f"not {ctx.backbone.kind!r}")


@register
class LFPT5(Method):
    name = "lfpt5"
    description = "LFPT5 (Qin & Joty, 2022): prompt tuning that generates and distils pseudo-examples of old tasks."

    class Params(MethodParams):
        prompt_length: Count = Field(20, ge=1, description="soft prompt vectors (the paper: 300)")
        gamma: Real = Field(0.2, ge=0, description="pseudo-examples per real example, over all old tasks")
        lm_weight: Real = Field(0.25, ge=0, description="weight of the generation loss")
        kd_weight: Real = Field(1.0, ge=0, description="weight of the distillation on pseudo-examples")
        temperature: Real = Field(2.0, gt=0, description="T of the distillation")
        max_new_tokens: Count = Field(48, ge=1, description="length of a generated pseudo-example")
        top_k: Count = Field(20, ge=1, description="top-k sampling of pseudo-examples")
        generation_batch_size: Count = Field(64, ge=1, description="pseudo-examples generated at once")
        lr: Real | None = prompt_learning_rate()

    state_attributes = ("teacher", "pseudo", "counts")

    def after_load(self, ctx) -> None:
        self.tracked = {"prompt": self.prompt.prompt}

    def setup(self, ctx) -> None:
        super().setup(ctx)
        generative_only(ctx, self.name)
        for param in ctx.backbone.model.parameters():
            param.requires_grad_(False)
        self.prompt = SoftPrompt(ctx.backbone, self.params.prompt_length,
                                 torch.Generator().manual_seed(ctx.config.seed))
        ctx.backbone.attach_prompt(self.prompt)
        self.pseudo: list[Example] = []
        self.counts: dict[str, dict[str, int]] = {}

    def before_stage(self, ctx) -> None:
        self.tracked = {"prompt": self.prompt.prompt}
        self.teacher = snapshot(self.tracked)
        old = ctx.tasks[: ctx.stage_task_indices[0]]
        self.pseudo = []
        if not old:
            return
        p = self.params
        per_task = math.ceil(p.gamma * len(ctx.task.train) / len(old))
        for i, task in enumerate(old):
            samples = sample_texts(ctx.backbone, task_start(task.name), per_task, p.max_new_tokens, p.top_k,
                                   p.generation_batch_size, ctx.config.seed * 1000 + ctx.stage_index * 100 + i)
            parsed = pseudo_examples(samples, task.name)
            with ctx.backbone.inference():  # label distillation: the answers the model gives before the new task
                answers = ctx.backbone.predict(parsed) if parsed else []
            answers = [a.strip().split("\n")[0] for a in answers]  # an answer is one line
            self.pseudo += [Example(ex.prompt, a, ex.task) for ex, a in zip(parsed, answers) if a.strip()]
            self.counts.setdefault(ctx.task.name, {})[task.name] = len(parsed)
        ctx.log({"event": "lfpt5_pseudo", "stage": ctx.task.name, "parsed": self.counts[ctx.task.name],
                 "kept": len(self.pseudo)})

    def loss(self, ctx, examples: list[Example]) -> torch.Tensor:
        p = self.params
        pseudo = []
        if self.pseudo:
            pseudo = [self.pseudo[ctx.rng.randrange(len(self.pseudo))] for _ in range(math.ceil(p.gamma * len(examples)))]
        kd = None
        if pseudo and p.kd_weight:  # the teacher first: it swaps the prompt in place
            old = teacher_logits(ctx.backbone, self.tracked, self.teacher, pseudo)
            new, mask = ctx.backbone.output_logits(pseudo)
            kd = distillation_kl(new, old, mask, p.temperature)
        batch = examples + pseudo
        loss = ctx.backbone.loss(batch)
        if p.lm_weight:
            loss = loss + p.lm_weight * ctx.backbone.loss([generation_example(ex, task_start(ex.task)) for ex in batch])
        return loss if kd is None else loss + p.kd_weight * kd

    def report(self) -> dict:
        return {"pseudo_examples_parsed": self.counts} if self.counts else {}
