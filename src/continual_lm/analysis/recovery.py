"""The recovery curve: from each checkpoint of a stage, an old task's score before and after a short recovery
fine-tuning (``training/recovery.py``)."""
from __future__ import annotations

from ..config import RecoverySettings
from ..evaluation.evaluate import evaluate_task
from ..training.recovery import recovered_score


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
