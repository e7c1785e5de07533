"""LwF (Li & Hoiem, "Learning without Forgetting", ECCV 2016 / TPAMI 2017), for language models.

Before each new task the model's outputs on the new task's inputs are the targets that keep the old tasks' behaviour
(the "old heads"): for an encoder, its scores of the old tasks' labels; for a generative model, its next-token
distributions at the answer positions. The new task is learnt with

    L = L_task + λ · KL( softmax(z_old / T) ‖ softmax(z_new / T) )        (λ = 1, T = 2 as in the paper)

as in the paper (Li & Hoiem, Eq. 2–3: the distillation loss weighted by λ_o = 1, no T² factor). ``t_squared: true``
multiplies the term by T² (Hinton et al.'s scaling, which our port used before: at T = 2 a weight of 4).

Where our port differs: the paper records the old network's responses once, before the task; we compute them per
batch from a copy of the weights at the task's start (the same numbers: same inputs, same weights, evaluation mode),
because a generative model's token distributions over a whole vocabulary are too large to store. The first task has
no old model and trains plainly.

Cost: one no-grad forward of the teacher per batch (the weights swapped in place: under LoRA only the adapters are
copied) on top of the student's one forward, whose answer logits give both the task loss and the distillation; a
generative model's head runs on the answer positions only (models/backbone.py)."""
from __future__ import annotations

import torch
from pydantic import Field

from ..data.task import Example
from ..models.weights import snapshot
from .base import Method, MethodParams, Real, register
from .distill import distillation_kl, teacher_logits


@register
class LwF(Method):
    name = "lwf"
    description = "LwF (Li & Hoiem, 2016): distil the model before the task into it on the new task's inputs."

    class Params(MethodParams):
        lambda_kd: Real = Field(1.0, ge=0, description="λ, weight of the distillation term")
        temperature: Real = Field(2.0, gt=0, description="T, softmax temperature of both distributions")
        t_squared: bool = Field(False, description="multiply the term by T² (Hinton et al.); the paper does not")

    state_attributes = ("teacher", "old_labels")

    def after_load(self, ctx) -> None:
        self.tracked = ctx.backbone.trainable_parameters()

    def before_stage(self, ctx) -> None:
        self.tracked = ctx.backbone.trainable_parameters()
        self.teacher = snapshot(self.tracked) if ctx.stage_index > 0 else None
        # An encoder's old heads: the labels of the tasks trained so far.
        old = ctx.tasks[: ctx.stage_task_indices[0]]
        self.old_labels = sorted({o for t in old for o in t.options or ()}) or None

    def loss(self, ctx, examples: list[Example]) -> torch.Tensor:
        if self.teacher is None or not self.params.lambda_kd:
            return ctx.backbone.loss(examples)
        # The teacher first: it swaps weights in place, which a graph built before it could not survive.
        labels = self.old_labels if ctx.backbone.kind == "encoder" else None
        old = teacher_logits(ctx.backbone, self.tracked, self.teacher, examples, labels)
        loss, new, mask = ctx.backbone.loss_and_logits(examples, labels)  # one forward for both terms
        kd = distillation_kl(new, old, mask, self.params.temperature, self.params.t_squared)
        return loss + self.params.lambda_kd * kd
