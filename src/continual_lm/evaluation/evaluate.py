"""Evaluate a backbone on a task's test split: batched prediction, then the task's metric."""
from __future__ import annotations

from dataclasses import dataclass

from ..data.task import Task
from ..models.backbone import Backbone
from .scores import score


@dataclass
class Evaluation:
    score: float
    predictions: list[str]


def evaluate_task(backbone: Backbone, task: Task, batch_size: int = 64, max_examples: int | None = None) -> Evaluation:
    examples = task.test[:max_examples] if max_examples else task.test
    # Batches of similar length pad less; the predictions are put back in the examples' order.
    order = sorted(range(len(examples)), key=lambda i: len(examples[i].prompt))
    predictions: list[str] = [""] * len(examples)
    with backbone.inference():
        for start in range(0, len(order), batch_size):
            chunk = order[start:start + batch_size]
            for i, answer in zip(chunk, backbone.predict([examples[i] for i in chunk])):
                predictions[i] = answer
    return Evaluation(score(task.metric, predictions, [ex.answers for ex in examples], [ex.prompt for ex in examples]),
                      predictions)
