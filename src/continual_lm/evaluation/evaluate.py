"""Evaluate a backbone on a task's test split: batched prediction, then the task's metric."""
from __future__ import annotations

from dataclasses import dataclass

import torch

from ..data.task import Task
from ..models.backbone import Backbone
from .metrics import score


@dataclass
class Evaluation:
    score: float
    predictions: list[str]


def evaluate_task(backbone: Backbone, task: Task, batch_size: int = 64, max_examples: int | None = None) -> Evaluation:
    examples = task.test[:max_examples] if max_examples else task.test
    was_training = backbone.model.training
    backbone.model.eval()
    predictions: list[str] = []
    with torch.no_grad():
        for start in range(0, len(examples), batch_size):
            predictions.extend(backbone.predict(examples[start:start + batch_size]))
    backbone.model.train(was_training)
    return Evaluation(score(task.metric, predictions, [ex.answers for ex in examples]), predictions)
