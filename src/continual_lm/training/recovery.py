"""Recovery: is an old task forgotten, or only misaligned? Fine-tune briefly on a few of its *training* examples
(disjoint from its test set) and evaluate again; the weights are restored afterwards."""
from __future__ import annotations

import random

from ..config import ExperimentConfig, RecoverySettings
from ..data.task import Task
from ..evaluation.evaluate import evaluate_task
from ..models.backbone import Backbone
from ..models.weights import assign_, flat_weights, trainable_as, tracked_parameters
from .loop import finetune


def recovered_score(backbone: Backbone, task: Task, cfg: ExperimentConfig, settings: RecoverySettings) -> float:
    snapshot = flat_weights(backbone)
    sample = random.Random(f"{cfg.seed}:recovery:{task.name}").sample(task.train, min(settings.n_examples, len(task.train)))
    train = cfg.training.model_copy(update={"max_steps": settings.steps, "batch_size": settings.batch_size,
                                            "lr": settings.lr or cfg.training.lr, "per_task": {}, "schedule": "constant",
                                            "warmup_ratio": 0.0, "warmup_steps": None, "grad_accum": 1})
    try:
        with trainable_as(backbone, tracked_parameters(backbone)):
            finetune(cfg, backbone, sample, train, name=task.name)
        return evaluate_task(backbone, task, cfg.training.eval_batch_size, cfg.training.eval_max_examples).score
    finally:
        assign_(tracked_parameters(backbone), snapshot)
