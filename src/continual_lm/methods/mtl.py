"""Multi-task learning: one joint stage on every task's training data (the upper bound).

There is a single stage, so the accuracy matrix has one row; BWT and FWT are reported as null."""
from __future__ import annotations

import random

from ..data.task import Task
from .base import Method, Stage, register


@register
class MultiTask(Method):
    name = "mtl"
    description = "Multi-task learning: joint training on all tasks at once (upper bound; OP only)."

    def stages(self, tasks: list[Task]) -> list[Stage]:
        examples = [ex for t in tasks for ex in t.train]
        random.Random("mtl").shuffle(examples)  # the loop reshuffles per epoch with the run's seed
        return [Stage("mtl", list(range(len(tasks))), examples)]
