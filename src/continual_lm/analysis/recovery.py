"""Recovery: is an old task forgotten, or only misaligned? Fine-tune briefly on a few of its *training* examples
(disjoint from its test set) and evaluate again; the weights are restored afterwards."""
from __future__ import annotations

import random

from ..config import ExperimentConfig, RecoverySettings
from ..data.task import Task
from ..evaluation.evaluate import evaluate_task
from ..methods.seq import Sequential
from ..models.backbone import Backbone
from ..models.weights import flat_weights, tracked_parameters
from ..training.loop import train_sequence


def recovered_score(backbone: Backbone, task: Task, cfg: ExperimentConfig, settings: RecoverySettings) -> float:
    snapshot = flat_weights(backbone)
    trainable = {n: p.requires_grad for n, p in backbone.model.named_parameters()}
    sample = random.Random(f"{cfg.seed}:recovery:{task.name}").sample(task.train, min(settings.n_examples, len(task.train)))
    probe = Task(task.name, sample, task.test, task.metric, task.options)
    train = cfg.training.model_copy(update={"max_steps": settings.steps, "batch_size": settings.batch_size,
                                            "lr": settings.lr or cfg.training.lr, "per_task": {}, "schedule": "constant",
                                            "warmup_ratio": 0.0, "grad_accum": 1})
    probe_cfg = cfg.model_copy(update={"training": train, "curve_steps": [], "checkpoint_steps": []})
    try:
        for n, p in tracked_parameters(backbone).items():
            p.requires_grad_(True)
        train_sequence(probe_cfg, [probe], backbone, Sequential(), evaluate=False)
        return evaluate_task(backbone, task, cfg.training.eval_batch_size, cfg.training.eval_max_examples).score
    finally:
        params = tracked_parameters(backbone)
        for n, p in params.items():
            p.data.copy_(snapshot[n])
        for n, p in backbone.model.named_parameters():
            p.requires_grad_(trainable[n])


def decompose_forgetting(acc_matrix: list[list[float]], recovered: dict[int, float]) -> list[dict]:
    """For each old task j: drop = a[j][j] − a[K−1][j]; recoverable = recovered − a[K−1][j];
    spurious share = recoverable / drop (None when nothing was forgotten)."""
    last = acc_matrix[-1]
    rows = []
    for j, score in sorted(recovered.items()):
        drop = acc_matrix[j][j] - last[j]
        recoverable = score - last[j]
        rows.append({"task_index": j, "after_own_training": acc_matrix[j][j], "final": last[j], "recovered": score,
                     "drop": drop, "recoverable": recoverable,
                     "spurious_share": (recoverable / drop) if drop > 0 else None})
    return rows


def recovery_curve(run, stage: str, old_task: str, settings: RecoverySettings) -> list[dict]:
    """From each checkpoint of ``stage``: the old task's score before and after a short recovery."""
    task = run.task(old_task)
    out = []
    for step in run.steps(stage):
        run.load(stage, step)
        before = evaluate_task(run.backbone, task, run.cfg.training.eval_batch_size).score
        after = recovered_score(run.backbone, task, run.cfg, settings)
        out.append({"step": step, "before": before, "after_recovery": after})
    return out
