"""Freeze the input embeddings and the bottom k layers from a given task on (Zheng et al., ICLR 2025, Sec. 5).

Spurious forgetting is mostly the undoing of task alignment in the bottom layers; keeping them fixed while
the top layers learn the new task preserves the old alignment. The authors' code zeroes the gradients of
``embed_in`` and the bottom k layers and reports k = 7-8 of 12 as best; ``layers: null`` (the default) freezes half of
the layers (2 of our 4-layer Biography GPT, 3 of MiniLM's 6, 6 of a 12-layer model). On Biography k trades Task 0
against Task 1 (seed 0, benchmarks/results/spurious_sweeps.md): k = 1 keeps Task 0 at 32.7 and Task 1 at 88.7, k = 2
at 40.8 / 66.8, k = 3 at 45.0 / 23.0 (seq: 18.8 / 96.5) — a 4-layer model has too few layers to freeze most of them
and still learn new facts. ``early_stop`` adds the paper's second fix:
from the same task on, the current task's score on a validation split is measured every ``eval_every`` steps
and training stops once it has not improved for ``patience`` checks. The split is held out of the training
data (``val_source: heldout``) or, for tasks that teach new facts and so cannot generalise to held-out
examples (Biography's Task 1), sampled from it (``val_source: train``)."""
from __future__ import annotations

from typing import Literal

from pydantic import Field

import random

from ..data.task import Task
from ..errors import ConfigError
from ..evaluation.evaluate import evaluate_task
from .base import Count, Method, MethodParams, Real, Stage, register


@register
class Freeze(Method):
    name = "freeze"
    description = "Freeze input embeddings + bottom k layers from task 1 on (spurious-forgetting fix); optional early stop."

    class Params(MethodParams):
        layers: Count | None = Field(None, ge=0, description="bottom layers frozen (None: half of them)")
        from_task: Count = Field(1, ge=0, description="first task trained frozen")
        embeddings: bool = Field(True, description="freeze the input embeddings too")
        early_stop: bool = Field(False, description="stop a task once its validation score stops improving")
        val_fraction: Real = Field(0.1, gt=0, lt=1, description="early stop: share of the task held out")
        val_source: Literal["heldout", "train"] = Field("heldout", description="early stop: validation from where")
        eval_every: Count = Field(10, ge=1, description="early stop: steps between validations")
        patience: Count = Field(2, ge=1, description="early stop: validations without improvement")
        max_val_examples: Count = Field(200, ge=1, description="early stop: validation examples at most")

    state_attributes = ("best", "bad_checks")

    def stages(self, tasks: list[Task]) -> list[Stage]:
        stages = super().stages(tasks)
        self.validation: dict[int, Task] = {}
        if not self.params.early_stop:
            return stages
        for i, stage in enumerate(stages):
            if i < self.params.from_task:
                continue
            rng = random.Random(f"freeze-val:{stage.name}")
            order = rng.sample(stage.examples, len(stage.examples))
            n_val = min(self.params.max_val_examples, max(1, round(self.params.val_fraction * len(order))))
            val = order[:n_val]
            if self.params.val_source == "heldout":
                if len(order) - n_val < 1:
                    raise ConfigError(f"task {stage.name}: too few training examples to hold out a validation split")
                held_out = set(val)
                stage.examples = [ex for ex in stage.examples if ex not in held_out]
            task = tasks[stage.task_indices[-1]]
            self.validation[i] = Task(f"{task.name}-val", [], val, task.metric, task.options)
        return stages

    def before_stage(self, ctx) -> None:
        self.best, self.bad_checks = float("-inf"), 0
        if ctx.stage_index < self.params.from_task:
            return
        blocks = ctx.backbone.transformer_layers()
        k = len(blocks) // 2 if self.params.layers is None else self.params.layers
        modules = list(blocks[:k]) + ([ctx.backbone.input_embeddings()] if self.params.embeddings else [])
        for module in modules:
            for p in module.parameters():
                p.requires_grad_(False)
        ctx.log({"event": "freeze", "layers": k, "embeddings": self.params.embeddings})

    def after_step(self, ctx) -> None:
        val = self.validation.get(ctx.stage_index)
        if val is None or ctx.step % self.params.eval_every:
            return
        score = evaluate_task(ctx.backbone, val, ctx.config.training.eval_batch_size).score
        if score > self.best:
            self.best, self.bad_checks = score, 0
        else:
            self.bad_checks += 1
        ctx.log({"event": "validation", "stage": ctx.task.name, "step": ctx.step, "score": score})
        if self.bad_checks >= self.params.patience:
            ctx.stop = True
