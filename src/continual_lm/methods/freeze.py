"""Freeze the input embeddings and the bottom k layers from a given task on (Zheng et al., ICLR 2025, Sec. 5).

Spurious forgetting is mostly the undoing of task alignment in the bottom layers; keeping them fixed while
the top layers learn the new task preserves the old alignment. ``early_stop`` adds the paper's second fix:
from the same task on, the current task's score on a validation split is measured every ``eval_every`` steps
and training stops once it has not improved for ``patience`` checks. The split is held out of the training
data (``val_source: heldout``) or, for tasks that teach new facts and so cannot generalise to held-out
examples (Biography's Task 1), sampled from it (``val_source: train``)."""
from __future__ import annotations

import random

from ..data.task import Task
from ..errors import ConfigError
from ..evaluation.evaluate import evaluate_task
from .base import Method, Stage, register


@register
class Freeze(Method):
    name = "freeze"
    description = "Freeze input embeddings + bottom k layers from task 1 on (spurious-forgetting fix); optional early stop."
    defaults = {"layers": None, "from_task": 1, "embeddings": True,  # layers None: half of the layers
                "early_stop": False, "val_fraction": 0.1, "val_source": "heldout", "eval_every": 10, "patience": 2,
                "max_val_examples": 200}
    bounds = {"layers": "[0, inf) int", "from_task": "[0, inf)", "val_fraction": "(0, 1)", "eval_every": "[1, inf)",
              "patience": "[1, inf)", "max_val_examples": "[1, inf)"}
    choices = {"val_source": ("heldout", "train"), "embeddings": (True, False), "early_stop": (True, False)}

    def stages(self, tasks: list[Task]) -> list[Stage]:
        stages = super().stages(tasks)
        self.validation: dict[int, Task] = {}
        if not self.early_stop:
            return stages
        for i, stage in enumerate(stages):
            if i < self.from_task:
                continue
            rng = random.Random(f"freeze-val:{stage.name}")
            order = rng.sample(stage.examples, len(stage.examples))
            n_val = min(int(self.max_val_examples), max(1, round(self.val_fraction * len(order))))
            val = order[:n_val]
            if self.val_source == "heldout":
                if len(order) - n_val < 1:
                    raise ConfigError(f"task {stage.name}: too few training examples to hold out a validation split")
                held_out = set(val)
                stage.examples = [ex for ex in stage.examples if ex not in held_out]
            task = tasks[stage.task_indices[-1]]
            self.validation[i] = Task(f"{task.name}-val", [], val, task.metric, task.options)
        return stages

    def before_task(self, ctx) -> None:
        self.best, self.bad_checks = float("-inf"), 0
        if ctx.task_index < self.from_task:
            return
        blocks = ctx.backbone.transformer_layers()
        k = len(blocks) // 2 if self.layers is None else int(self.layers)
        modules = list(blocks[:k]) + ([ctx.backbone.input_embeddings()] if self.embeddings else [])
        for module in modules:
            for p in module.parameters():
                p.requires_grad_(False)
        ctx.log({"event": "freeze", "layers": k, "embeddings": self.embeddings})

    def after_step(self, ctx) -> None:
        val = self.validation.get(ctx.task_index)
        if val is None or ctx.step % int(self.eval_every):
            return
        score = evaluate_task(ctx.backbone, val, ctx.config.training.eval_batch_size).score
        if score > self.best:
            self.best, self.bad_checks = score, 0
        else:
            self.bad_checks += 1
        ctx.log({"event": "validation", "stage": ctx.task.name, "step": ctx.step, "score": score})
        if self.bad_checks >= int(self.patience):
            ctx.stop = True
