"""LAMOL (Sun et al., "LAMOL: LAnguage MOdeling for Lifelong Language Learning", ICLR 2020).

The model also learns to *generate* its tasks' examples: every training example is also a language-modelling
target "<eos> prompt answer" (weight ``lm_weight``). Before each new task it samples γ × n pseudo-examples of the
earlier tasks from itself (starting from <eos>), and trains on them together with the new data (γ pseudo per
real example in each batch). The quality of the samples is reported in the paper's categories: valid format,
after de-duplication, question matches a real one, question and answer both correct. Causal LMs only."""
from __future__ import annotations

from pydantic import Field

import math

import torch

from ..data.task import Example
from ..errors import ConfigError
from .pseudo import generation_example, pseudo_examples, sample_quality, sample_texts
from .base import Count, Method, MethodParams, Real, register

@register
class LAMOL(Method):
    name = "lamol"
    extra_work = ('the generation task: a second forward-backward per batch on generation examples (the whole '
                  'example as the target), and sampling pseudo-examples before each task')
    description = "LAMOL (Sun et al., 2020): the LM generates pseudo-examples of old tasks to rehearse them."

    class Params(MethodParams):
        gamma: Real = Field(0.2, ge=0, description="pseudo-examples per real example")
        lm_weight: Real = Field(0.25, ge=0, description="weight of the generation (LM) loss")
        max_new_tokens: Count | None = Field(None, ge=1, description="length of a generated pseudo-example (None: model.max_length)")
        top_k: Count = Field(20, ge=1, description="top-k sampling of pseudo-examples")
        generation_batch_size: Count = Field(64, ge=1, description="pseudo-examples generated at once")

    state_attributes = ("pseudo", "quality")

    def setup(self, ctx) -> None:
        super().setup(ctx)
        if ctx.backbone.kind != "causal":
            raise ConfigError(f"method 'lamol' needs a causal LM (model.kind: causal), not {ctx.backbone.kind!r}")
        self.start = ctx.backbone.tokenizer.eos_token
        self.pseudo: list[Example] = []
        self.quality: dict[str, dict] = {}

    def before_stage(self, ctx) -> None:
        if ctx.stage_index == 0:
            return
        n = math.ceil(self.params.gamma * len(ctx.task.train))
        samples = self.generate(ctx, n)
        old = [ex for t in ctx.tasks[: ctx.stage_index] for ex in t.train]
        self.quality[ctx.task.name] = sample_quality(samples, old)
        ctx.log({"event": "lamol_samples", "task": ctx.task.name, **self.quality[ctx.task.name]})
        self.pseudo = pseudo_examples(samples, "pseudo")

    def generate(self, ctx, n: int) -> list[str]:
        p = self.params
        return sample_texts(ctx.backbone, self.start, n, p.max_new_tokens, p.top_k, p.generation_batch_size,
                            ctx.config.seed + ctx.stage_index)

    def loss(self, ctx, examples: list[Example]) -> torch.Tensor:
        if self.pseudo:
            k = math.ceil(self.params.gamma * len(examples))
            examples = examples + [self.pseudo[ctx.rng.randrange(len(self.pseudo))] for _ in range(k)]
        qa = ctx.backbone.loss(examples)
        lm = ctx.backbone.loss([generation_example(ex, self.start, ctx.backbone) for ex in examples])
        return qa + self.params.lm_weight * lm

    def report(self) -> dict:
        return {"pseudo_sample_quality": self.quality} if self.quality else {}
