"""The training loop, readable top to bottom: ``train_stage`` trains one stage (optimiser, schedule, batches,
accumulation, hooks, early stop); ``run_sequence`` runs a whole task sequence around it (initial evaluation,
accuracy rows, the spurious-forgetting curve, checkpoints, the result); ``finetune`` is plain training of a backbone
on some examples (pre-training, recovery). Methods hook into the loop; they never fork it."""
from __future__ import annotations

import math
import random
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

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
from ..methods import Method, Stage
from ..methods.context import TrainContext
from ..models.backbone import Backbone
from ..models.weights import save_checkpoint


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
    task_metrics: dict[str, str] = field(default_factory=dict)         # how each task is scored

    def to_json(self) -> dict:
        return dict(self.__dict__)


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


def train_stage(ctx: TrainContext, method: Method, stage: Stage, settings: TrainSettings, seed: int,
                before_step: Callable[[int], None] = lambda step: None) -> float:
    """Train one stage; returns its training seconds (``before_step``'s own time — checkpoints, curve points —
    excluded). ``ctx.stage_index`` and ``ctx.stage_task_indices`` are set by the caller."""
    accelerator, backbone = ctx.accelerator, ctx.backbone
    ctx.step, ctx.stop, ctx.settings = 0, False, settings
    method.before_stage(ctx)
    examples = method.stage_examples(ctx, stage)
    ctx.params = [p for p in backbone.model.parameters() if p.requires_grad]
    ctx.optimizer = accelerator.prepare(torch.optim.AdamW(ctx.params, lr=settings.lr, weight_decay=settings.weight_decay))
    ctx.total_steps = steps_for(settings, len(examples), accelerator.num_processes)
    scheduler = get_scheduler(settings.schedule, ctx.optimizer, num_warmup_steps=settings.warmup_for(ctx.total_steps),
                              num_training_steps=ctx.total_steps)
    data = batches(examples, settings.batch_size, seed, accelerator)
    backbone.model.train()
    started, outside = time.time(), 0.0
    bar = tqdm(range(ctx.total_steps), desc=f"[{ctx.stage_index + 1}] {stage.name}", mininterval=1.0, leave=False,
               disable=not accelerator.is_main_process)
    for step in bar:
        t0 = time.time()
        before_step(step)
        outside += time.time() - t0
        total = 0.0
        for _ in range(settings.grad_accum):
            loss = method.loss(ctx, next(data)) / settings.grad_accum
            accelerator.backward(loss)
            total += loss.item()
        method.after_backward(ctx)
        ctx.optimizer_step()
        scheduler.step()
        ctx.step += 1
        method.after_step(ctx)
        if step % ctx.config.log_every == 0 or step == ctx.total_steps - 1:
            ctx.log({"event": "train", "stage": stage.name, "step": step, "loss": round(total, 5)})
            bar.set_postfix(loss=f"{total:.3f}")
        if ctx.stop:
            ctx.log({"event": "early_stop", "stage": stage.name, "step": ctx.step})
            break
    bar.close()
    method.after_stage(ctx)
    return time.time() - started - outside


def run_sequence(cfg: ExperimentConfig, tasks: list[Task], backbone: Backbone, method: Method,
                 log: Callable[[dict], None] = lambda record: None, accelerator: Accelerator | None = None,
                 checkpoint_path: Callable[[str, int | str], Path] | None = None) -> RunResult:
    """Train ``backbone`` on ``tasks`` in order with ``method``; evaluate every task after each stage.

    ``checkpoint_path(stage, step)``: where to save the trainable weights at ``cfg.checkpoint_steps`` and at each
    stage's end (``step`` = "end"); None saves nothing."""
    started = time.time()
    seed_everything(cfg.seed)
    accelerator = accelerator or make_accelerator()
    ctx = TrainContext(cfg, backbone, accelerator, tasks, log, random.Random(f"{cfg.seed}:method"))
    method.setup(ctx)  # before the model is wrapped (DDP), so that the modules a method attaches train in sync
    backbone.forward_model = accelerator.prepare(backbone.model)
    main_process = accelerator.is_main_process
    saving = checkpoint_path is not None and bool(cfg.checkpoint_steps) and main_process

    initial = evaluate_all(backbone, tasks, cfg)
    log({"event": "initial", "scores": dict(zip([t.name for t in tasks], initial))})
    acc_matrix: list[list[float | None]] = []
    seen = -1  # the highest task index trained so far
    curve: dict[str, dict[str, float]] = {}
    stages = method.stages(tasks)
    for stage_index, stage in enumerate(stages):
        if not stage.examples:
            raise DataError(f"stage {stage.name!r}: no training examples")
        ctx.stage_index, ctx.stage_task_indices = stage_index, stage.task_indices
        # The "spurious forgetting curve": the first task's score at chosen steps of later stages.
        watch = stage_index > 0 and bool(cfg.curve_steps)
        points: dict[str, float] = {}

        def before_step(step: int, stage: Stage = stage, watch: bool = watch, points: dict = points) -> None:
            if saving and step in cfg.checkpoint_steps:
                save_checkpoint(backbone, checkpoint_path(stage.name, step))  # type: ignore[misc]
            if watch and step in cfg.curve_steps:
                points[str(step)] = evaluate_all(backbone, tasks[:1], cfg)[0]

        seconds = train_stage(ctx, method, stage, cfg.training.for_task(stage.name), cfg.seed * 1000 + stage_index,
                              before_step)
        if saving:
            save_checkpoint(backbone, checkpoint_path(stage.name, "end"))  # type: ignore[misc]
        log({"event": "stage_end", "stage": stage.name, "steps": ctx.step, "train_seconds": round(seconds, 3)})
        seen = max(seen, *stage.task_indices)
        row = evaluate_all(backbone, tasks, cfg, seen + 1 if cfg.training.eval_tasks == "seen_and_next" else None)
        acc_matrix.append(row)
        if watch:
            curve[stage.name] = {**points, "end": row[0]}
        log({"event": "eval", "stage": stage.name, "scores": dict(zip([t.name for t in tasks], row))})
        if main_process:
            tqdm.write(f"after {stage.name}: "
                       + "  ".join(f"{t.name}={s:.1f}" for t, s in zip(tasks, row) if s is not None))

    return RunResult(tasks=[t.name for t in tasks], stages=[s.name for s in stages], acc_matrix=acc_matrix,
                     initial=initial, seconds=round(time.time() - started, 2), curve=curve,
                     task_metrics={t.name: t.metric for t in tasks},
                     method_report=method.report(), processes=accelerator.num_processes,
                     **summarize(acc_matrix, initial))


def finetune(cfg: ExperimentConfig, backbone: Backbone, examples: list[Example], settings: TrainSettings,
             log: Callable[[dict], None] = lambda record: None, accelerator: Accelerator | None = None,
             name: str = "finetune") -> float:
    """Plain training of ``backbone`` on ``examples`` with ``settings`` (language-model pre-training, recovery), seeded
    by ``cfg.seed`` exactly as a run's first stage; returns the training seconds."""
    seed_everything(cfg.seed)
    accelerator = accelerator or make_accelerator()
    backbone.forward_model = accelerator.prepare(backbone.model)
    task = Task(name, examples, [])
    ctx = TrainContext(cfg, backbone, accelerator, [task], log, random.Random(f"{cfg.seed}:method"))
    ctx.stage_index, ctx.stage_task_indices = 0, [0]
    return train_stage(ctx, Method(), Stage(name, [0], examples), settings, cfg.seed * 1000)
