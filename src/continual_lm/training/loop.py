"""The training loop: one per run, readable top to bottom. Methods hook into it; they never fork it."""
from __future__ import annotations

import math
import random
import time
from collections.abc import Iterator
from pathlib import Path
from dataclasses import dataclass, field

import torch
from accelerate import Accelerator
from accelerate.utils import DistributedDataParallelKwargs
from tqdm.auto import tqdm
from transformers import get_scheduler

from ..config import ExperimentConfig, TrainSettings
from ..data.task import Example, Task
from ..errors import DataError
from ..evaluation.evaluate import evaluate_task
from ..evaluation.metrics import summarize
from ..methods import Method, create_method
from ..models.backbone import Backbone
from ..models.weights import save_checkpoint
from .context import TrainContext


@dataclass
class RunResult:
    tasks: list[str]
    stages: list[str]
    acc_matrix: list[list[float | None]]  # None: not evaluated (eval_tasks: seen_and_next)
    initial: list[float]
    op: float | None
    bwt: float | None
    fwt: float | None
    seconds: float
    curve: dict[str, dict[str, float]] = field(default_factory=dict)  # stage -> {step: score on task 0}
    method_report: dict = field(default_factory=dict)                  # what the method reports of itself
    processes: int = 1                                                 # data-parallel processes that trained
    la: float | None = None                                            # learning accuracy (metrics.py)
    f: float | None = None                                             # forgetting, max-based (metrics.py)
    ap: float | None = None                                            # average performance over stages

    def to_json(self) -> dict:
        return dict(self.__dict__)


def checkpoint_path(root: Path, stage: str, step: int | str) -> Path:
    """Where a stage's checkpoint lives: <root>/<stage>/step<N>.safetensors, or end.safetensors."""
    name = "end" if step == "end" else f"step{step}"
    return Path(root) / stage / f"{name}.safetensors"


def seed_everything(seed: int) -> None:
    random.seed(seed)
    torch.manual_seed(seed)


def make_accelerator() -> Accelerator:
    # Frozen parameters (freeze, per-task adapters) leave DDP with unused parameters.
    return Accelerator(cpu=not torch.cuda.is_available(),
                       kwargs_handlers=[DistributedDataParallelKwargs(find_unused_parameters=True)])


def batches(examples: list[Example], batch_size: int, seed: int, accelerator: Accelerator) -> Iterator[list[Example]]:
    """Endless seeded epochs of shuffled batches; each process takes its slice of the global batch."""
    world, rank = accelerator.num_processes, accelerator.process_index
    global_bs = batch_size * world
    epoch = 0
    while True:
        order = list(range(len(examples)))
        random.Random(f"{seed}:{epoch}").shuffle(order)
        for start in range(0, len(order) - world + 1, global_bs):
            chunk = order[start:start + global_bs]
            yield [examples[i] for i in chunk[rank::world]]
        epoch += 1


def steps_for(t: TrainSettings, n_examples: int, world: int) -> int:
    """Optimiser steps for ``t.epochs`` passes over the data, counting the batches ``batches`` yields per epoch
    (the last one partial), so that every example is seen once per epoch."""
    if t.max_steps is not None:
        return t.max_steps
    per_epoch = len(range(0, n_examples - world + 1, t.batch_size * world))
    return max(1, math.ceil(t.epochs * per_epoch / t.grad_accum))


def evaluate_all(backbone: Backbone, tasks: list[Task], cfg: ExperimentConfig,
                 upto: int | None = None) -> list[float | None]:
    """Scores of every task; with ``upto``, tasks after index ``upto`` are skipped (None)."""
    t = cfg.training
    return [evaluate_task(backbone, task, t.eval_batch_size, t.eval_max_examples).score
            if upto is None or i <= upto else None for i, task in enumerate(tasks)]


def train_sequence(cfg: ExperimentConfig, tasks: list[Task], backbone: Backbone, method: Method | None = None,
                   log=lambda record: None, accelerator: Accelerator | None = None,
                   evaluate: bool = True, checkpoint_dir: Path | None = None) -> RunResult:
    """Train ``backbone`` on ``tasks`` in order with ``method``; evaluate every task after each stage.

    ``evaluate=False`` (language-model pre-training) skips every evaluation and returns no metrics.
    ``checkpoint_dir``: where to save the trainable weights at ``cfg.checkpoint_steps`` and each stage's end."""
    started = time.time()
    seed_everything(cfg.seed)
    accelerator = accelerator or make_accelerator()
    method = method or create_method(cfg.method.name, cfg.resolved_method_params())
    backbone.forward_model = accelerator.prepare(backbone.model)
    ctx = TrainContext(cfg, backbone, accelerator, tasks, log, random.Random(f"{cfg.seed}:method"))
    method.setup(ctx)
    show = accelerator.is_main_process

    initial = evaluate_all(backbone, tasks, cfg) if evaluate else []
    log({"event": "initial", "scores": dict(zip([t.name for t in tasks], initial))})
    acc_matrix: list[list[float | None]] = []
    seen = -1  # the highest task index trained so far
    curve: dict[str, dict[str, float]] = {}
    stages = method.stages(tasks)
    for stage_index, stage in enumerate(stages):
        if not stage.examples:
            raise DataError(f"stage {stage.name!r}: no training examples")
        ctx.task_index, ctx.stage_task_indices, ctx.step, ctx.stop = stage_index, stage.task_indices, 0, False
        method.before_task(ctx)
        examples = method.stage_examples(ctx, stage)
        train = cfg.training.for_task(stage.name)
        params = [p for p in backbone.model.parameters() if p.requires_grad]
        optimizer = torch.optim.AdamW(params, lr=train.lr, weight_decay=train.weight_decay)
        ctx.optimizer = accelerator.prepare(optimizer)
        ctx.total_steps = steps_for(train, len(examples), accelerator.num_processes)
        scheduler = get_scheduler(train.schedule, ctx.optimizer, num_warmup_steps=train.warmup_for(ctx.total_steps),
                                  num_training_steps=ctx.total_steps)
        data = batches(examples, train.batch_size, cfg.seed * 1000 + stage_index, accelerator)
        # The "spurious forgetting curve": the first task's score at chosen steps of later stages.
        watch = evaluate and stage_index > 0 and bool(cfg.curve_steps)
        points: dict[str, float] = {}
        backbone.model.train()
        stage_started, eval_seconds = time.time(), 0.0
        bar = tqdm(range(ctx.total_steps), desc=f"[{stage_index + 1}/{len(stages)}] {stage.name}", disable=not show,
                   mininterval=1.0, leave=False)
        for step in bar:
            if checkpoint_dir and step in cfg.checkpoint_steps and show:
                save_checkpoint(backbone, checkpoint_path(checkpoint_dir, stage.name, step))
            if watch and step in cfg.curve_steps:
                t0 = time.time()
                points[str(step)] = evaluate_all(backbone, tasks[:1], cfg)[0]
                eval_seconds += time.time() - t0
            total = 0.0
            for _ in range(train.grad_accum):
                loss = method.loss(ctx, next(data)) / train.grad_accum
                accelerator.backward(loss)
                total += loss.item()
            method.after_backward(ctx)
            if train.max_grad_norm:
                accelerator.clip_grad_norm_(params, train.max_grad_norm)
            ctx.optimizer.step()
            scheduler.step()
            ctx.optimizer.zero_grad(set_to_none=True)
            ctx.step += 1
            ctx.global_step += 1
            method.after_step(ctx)
            if step % cfg.log_every == 0 or step == ctx.total_steps - 1:
                log({"event": "train", "stage": stage.name, "step": step, "loss": round(total, 5)})
                bar.set_postfix(loss=f"{total:.3f}")
            if ctx.stop:
                log({"event": "early_stop", "stage": stage.name, "step": ctx.step})
                break
        bar.close()
        method.after_task(ctx)
        if checkpoint_dir and cfg.checkpoint_steps and show:
            save_checkpoint(backbone, checkpoint_path(checkpoint_dir, stage.name, "end"))
        log({"event": "stage_end", "stage": stage.name, "steps": ctx.step,
             "train_seconds": round(time.time() - stage_started - eval_seconds, 3)})
        if not evaluate:
            continue
        seen = max(seen, *stage.task_indices)
        row = evaluate_all(backbone, tasks, cfg, seen + 1 if cfg.training.eval_tasks == "seen_and_next" else None)
        acc_matrix.append(row)
        if watch:
            curve[stage.name] = {**points, "end": row[0]}
        log({"event": "eval", "stage": stage.name, "scores": dict(zip([t.name for t in tasks], row))})
        if show:
            tqdm.write(f"after {stage.name}: "
                       + "  ".join(f"{t.name}={s:.1f}" for t, s in zip(tasks, row) if s is not None))

    metrics = summarize(acc_matrix, initial) if evaluate else dict.fromkeys(("op", "bwt", "fwt", "la", "f", "ap"))
    return RunResult(tasks=[t.name for t in tasks], stages=[s.name for s in stages], acc_matrix=acc_matrix,
                     initial=initial, seconds=round(time.time() - started, 2), curve=curve,
                     method_report=method.report(), processes=accelerator.num_processes, **metrics)

