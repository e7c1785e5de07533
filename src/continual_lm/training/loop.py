"""The training loop, readable top to bottom: ``train_stage`` trains one stage (optimiser, schedule, batches,
accumulation, hooks, early stop); ``run_sequence`` runs a whole task sequence around it (initial evaluation,
accuracy rows, the spurious-forgetting curve, checkpoints, the result); ``finetune`` is plain training of a backbone
on some examples (pre-training, recovery). Methods hook into the loop; they never fork it."""
from __future__ import annotations

import math
import random
import sys
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
from ..evaluation.evaluate import Evaluation, evaluate_task, reference_scores, test_examples
from ..evaluation.metrics import op_interval, summarize
from ..methods import Method, Stage
from ..methods.context import TrainContext
from ..models.backbone import Backbone
from ..errors import Interrupted, NonFiniteError
from ..models.adapters import activate_adapters
from ..models.weights import assign_, save_checkpoint, tracked_parameters
from .resume import ResumeStore, random_state, restore_rng, rng_states, set_random_state


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
    device: str = ""                                                   # what trained it: "cpu", "cuda (<GPU name>)"
    la: float | None = None                                            # learning accuracy (metrics.py)
    f: float | None = None                                             # forgetting, max-based (metrics.py)
    ap: float | None = None                                            # average performance over stages
    task_metrics: dict[str, str] = field(default_factory=dict)         # how each task is scored
    n_test: list[int] = field(default_factory=list)                    # test examples scored per task
    intervals: list[list[dict | None]] = field(default_factory=list)   # per acc_matrix cell: n, se, 95% low/high
    op_ci95: list[float] | None = None                                 # OP's 95% interval (test-set sampling)
    chance: list[float | None] = field(default_factory=list)           # per task: a random option's score
    majority: list[float | None] = field(default_factory=list)         # per task: the majority answer's score
    timing: dict[str, float] = field(default_factory=dict)             # seconds: train, evaluation, curve

    def to_json(self) -> dict:
        return dict(self.__dict__)


def device_name(device: torch.device) -> str:
    """"cpu", or the accelerator's type and model ("cuda (NVIDIA H200)"): a run's numbers say where they were made."""
    if device.type == "cuda":
        return f"cuda ({torch.cuda.get_device_name(device)})"
    return device.type


def seed_everything(seed: int) -> None:
    random.seed(seed)
    torch.manual_seed(seed)


def make_accelerator(report_to: list[str] | tuple[str, ...] = (), project_dir: Path | None = None) -> Accelerator:
    """``report_to``: Accelerate's experiment trackers (tensorboard, wandb, …), writing under ``project_dir``."""
    # Frozen parameters (freeze, per-task adapters) leave DDP with unused parameters.
    return Accelerator(cpu=not torch.cuda.is_available(), log_with=list(report_to) or None,
                       project_dir=str(project_dir) if project_dir and report_to else None,
                       kwargs_handlers=[DistributedDataParallelKwargs(find_unused_parameters=True)])


GROUP = 50  # batches per length-sorted group (Hugging Face Trainer's group_by_length uses 50 too)


def batches(examples: list[Example], batch_size: int, seed: int, accelerator: Accelerator,
            group_by_length: bool = False) -> Iterator[list[Example]]:
    """Endless seeded epochs of shuffled batches; each process takes its slice of the global batch.

    ``group_by_length``: each epoch's shuffled order is cut into groups of 50 batches, each group sorted by length
    (prompt + target characters) and cut into batches, and the batches shuffled — batches of similar lengths pad
    less (pre-training on biographies: 99.7% real positions instead of 89.6%), every example still once an epoch."""
    world, rank = accelerator.num_processes, accelerator.process_index
    global_bs = batch_size * world
    epoch = 0
    while True:
        rng = random.Random(f"{seed}:{epoch}")
        order = list(range(len(examples)))
        rng.shuffle(order)
        chunks = [order[start:start + global_bs] for start in range(0, len(order) - world + 1, global_bs)]
        if group_by_length:
            size = lambda i: len(examples[i].prompt) + len(examples[i].target)  # noqa: E731
            grouped = [sorted(order[g:g + GROUP * global_bs], key=size, reverse=True)
                       for g in range(0, len(order), GROUP * global_bs)]
            chunks = [group[s:s + global_bs] for group in grouped for s in range(0, len(group) - world + 1, global_bs)]
            rng.shuffle(chunks)
        for chunk in chunks:
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
                 upto: int | None = None, max_examples: int | None = None) -> list[Evaluation | None]:
    """Every task's evaluation; with ``upto``, tasks after index ``upto`` are skipped (None); ``max_examples``
    replaces ``training.eval_max_examples``."""
    t = cfg.training
    return [evaluate_task(backbone, task, t.eval_batch_size, max_examples or t.eval_max_examples)
            if upto is None or i <= upto else None for i, task in enumerate(tasks)]


def scores_of(evaluations: list[Evaluation | None]) -> list[float | None]:
    return [None if e is None else e.score for e in evaluations]


def now() -> tuple[float, float]:
    """(wall seconds, this process's CPU seconds): on a loaded machine wall time measures the load, CPU time the work
    (one run recorded 1389 s of training wall time against 394 s of CPU)."""
    return time.perf_counter(), time.process_time()


@dataclass
class Seconds:
    wall: float = 0.0
    cpu: float = 0.0

    def add_since(self, start: tuple[float, float]) -> None:
        wall, cpu = now()
        self.wall += wall - start[0]
        self.cpu += cpu - start[1]


class Clock:
    """Seconds spent per phase (train, evaluation, curve), wall and CPU (``<phase>_cpu``), carried across a resume
    in the run's state."""

    def __init__(self, timing: dict[str, float]):
        self.timing = timing

    def add(self, phase: str, seconds: Seconds) -> None:
        for key, value in ((phase, seconds.wall), (f"{phase}_cpu", seconds.cpu)):
            self.timing[key] = round(self.timing.get(key, 0.0) + value, 3)

    def __call__(self, phase: str, fn, *args, **kwargs):
        spent, started = Seconds(), now()
        try:
            return fn(*args, **kwargs)
        finally:
            spent.add_since(started)
            self.add(phase, spent)


@dataclass
class StagePosition:
    """Where a stage resumes: its optimiser steps and micro-batches done, optimiser and scheduler state."""
    step: int
    consumed: int
    optimizer: dict
    scheduler: dict
    stop: bool = False


# Set by SIGINT/SIGTERM while a run that keeps resume points trains: the current step finishes, a point is written.
_STOP_REQUESTED: list[int] = []


def _request_stop(signum, frame) -> None:  # noqa: ARG001 - the signal module's handler signature
    _STOP_REQUESTED.append(signum)


def grad_norm(params: list[torch.nn.Parameter]) -> float:
    norms = [p.grad.detach().norm() for p in params if p.grad is not None]
    return float(torch.stack(norms).norm()) if norms else 0.0


def train_stage(ctx: TrainContext, method: Method, stage: Stage, settings: TrainSettings, seed: int,
                before_step: Callable[[int], None] = lambda step: None,
                save_point: Callable[[StagePosition], None] | None = None,
                resume: StagePosition | None = None) -> Seconds:
    """Train one stage; returns its training seconds, wall and CPU (``before_step``'s own time — checkpoints, curve
    points — and resume points excluded). ``ctx.stage_index`` and ``ctx.stage_task_indices`` are set by the caller.

    ``save_point(position)`` is called every ``training.save_every`` optimiser steps (and when a stop is requested by
    a signal); ``resume`` continues the stage from such a position, the method's state already restored."""
    accelerator, backbone = ctx.accelerator, ctx.backbone
    ctx.step, ctx.stop, ctx.settings = 0, False, settings
    if resume is None:
        method.before_stage(ctx)
    examples = method.stage_examples(ctx, stage)
    ctx.params = [p for p in backbone.model.parameters() if p.requires_grad]
    ctx.optimizer = accelerator.prepare(method.make_optimizer(ctx.params, method.learning_rate(settings.lr),
                                                              settings.weight_decay))
    ctx.total_steps = steps_for(settings, len(examples), accelerator.num_processes)
    scheduler = get_scheduler(settings.schedule, ctx.optimizer, num_warmup_steps=settings.warmup_for(ctx.total_steps),
                              num_training_steps=ctx.total_steps)
    data = batches(examples, settings.batch_size, seed, accelerator, settings.group_by_length)
    consumed = 0
    if resume is not None:
        ctx.optimizer.load_state_dict(resume.optimizer)
        scheduler.load_state_dict(resume.scheduler)
        ctx.step, ctx.stop = resume.step, resume.stop
        for _ in range(resume.consumed):
            next(data)
        consumed = resume.consumed
    backbone.model.train()
    started, outside = now(), Seconds()
    every = settings.save_every or 0
    last_finite: float | None = None
    # A progress bar on a terminal; written to a file (a grid in the background, CI, nohup) a bar is \r fragments
    # with no line ends, so there a plain line every tenth of the stage instead.
    label = f"[{ctx.stage_index + 1}] {stage.name}"
    interactive = sys.stderr.isatty()
    bar = tqdm(range(ctx.step, ctx.total_steps), desc=label, mininterval=1.0, leave=False,
               disable=not (accelerator.is_main_process and interactive))
    every_line = max(1, ctx.total_steps // 10) if accelerator.is_main_process and not interactive else 0
    for step in bar:
        if ctx.stop:
            break
        t0 = now()
        before_step(step)
        outside.add_since(t0)
        total = 0.0
        for _ in range(settings.grad_accum):
            loss = method.loss(ctx, next(data)) / settings.grad_accum
            consumed += 1
            accelerator.backward(loss)
            total += loss.item()
        method.after_backward(ctx)
        if not (math.isfinite(total) and math.isfinite(grad_norm(ctx.params))):
            where = (f"stage {stage.name!r}, step {step}, method {ctx.config.method.name!r}: non-finite "
                     f"{'loss' if not math.isfinite(total) else 'gradient'} (last finite loss: {last_finite})")
            ctx.log({"event": "non_finite", "stage": stage.name, "step": step, "last_finite_loss": last_finite,
                     "policy": settings.nan_policy})
            if settings.nan_policy == "stop":
                raise NonFiniteError(where)
            ctx.optimizer.zero_grad(set_to_none=True)  # skip_step: no update, the schedule moves on
            scheduler.step()
            ctx.step += 1
            continue
        last_finite = total
        ctx.optimizer_step()
        scheduler.step()
        ctx.step += 1
        method.after_step(ctx)
        if step % ctx.config.log_every == 0 or step == ctx.total_steps - 1:
            ctx.log({"event": "train", "stage": stage.name, "step": step, "loss": round(total, 5),
                     "lr": scheduler.get_last_lr()[0]})
            bar.set_postfix(loss=f"{total:.3f}")
        if every_line and (ctx.step % every_line == 0 or ctx.step == ctx.total_steps):
            print(f"{label}: step {ctx.step}/{ctx.total_steps}, loss {total:.3f}", file=sys.stderr, flush=True)
        if ctx.stop:
            ctx.log({"event": "early_stop", "stage": stage.name, "step": ctx.step})
            break
        if save_point is not None and ctx.step < ctx.total_steps and (
                _STOP_REQUESTED or (every and ctx.step % every == 0)):
            t0 = now()
            save_point(StagePosition(ctx.step, consumed, ctx.optimizer.state_dict(), scheduler.state_dict(), ctx.stop))
            outside.add_since(t0)
            if _STOP_REQUESTED:
                raise Interrupted(f"stage {stage.name!r}, step {ctx.step}")
    bar.close()
    method.after_stage(ctx)
    spent = Seconds()
    spent.add_since(started)
    return Seconds(spent.wall - outside.wall, spent.cpu - outside.cpu)


def run_sequence(cfg: ExperimentConfig, tasks: list[Task], backbone: Backbone, method: Method,
                 log: Callable[[dict], None] = lambda record: None, accelerator: Accelerator | None = None,
                 checkpoint_path: Callable[[str, int | str], Path] | None = None,
                 store: ResumeStore | None = None, resume: tuple[dict, dict] | None = None,
                 write_predictions: Callable[[str, str, list[dict]], None] | None = None) -> RunResult:
    """Train ``backbone`` on ``tasks`` in order with ``method``; evaluate every task after each stage.

    ``checkpoint_path(stage, step)``: where to save the trainable weights at ``cfg.checkpoint_steps`` and at each
    stage's end (``step`` = "end"); None saves nothing. ``store``: where resume points go (every
    ``training.save_every`` steps and at each stage's end; SIGINT/SIGTERM write one and stop). ``resume``: a resume
    point's (state, optimiser state) to continue from (the backbone freshly built as for the original run).
    ``write_predictions(stage, task, records)``: where each example's prediction goes, after the last stage
    (``training.predictions: final``) or every stage (``all``)."""
    started = time.time()
    seed_everything(cfg.seed)
    accelerator = accelerator or make_accelerator()
    ctx = TrainContext(cfg, backbone, accelerator, tasks, log, random.Random(f"{cfg.seed}:method"))
    method.setup(ctx)  # before the model is wrapped (DDP), so that the modules a method attaches train in sync
    main_process = accelerator.is_main_process
    stages = method.stages(tasks)
    run: dict = {"initial": None, "acc_matrix": [], "intervals": [], "curve": {}, "seen": -1, "elapsed": 0.0,
                 "timing": {}}
    position: StagePosition | None = None
    first_stage = 0
    if resume is not None:
        first_stage, position = restore(*resume, ctx, method, stages, run)
    backbone.forward_model = accelerator.prepare(backbone.model)
    here = device_name(accelerator.device)
    devices = run.setdefault("devices", [])  # where each part of a resumed run ran, in order
    if not devices or devices[-1] != here:
        devices.append(here)
    saving = checkpoint_path is not None and bool(cfg.checkpoint_steps) and main_process

    missing = len(run["acc_matrix"]) - len(run["intervals"])  # rows of a resume point written before intervals
    run["intervals"] = [[None] * len(tasks) for _ in range(missing)] + run["intervals"]
    clock = Clock(run.setdefault("timing", {}))
    if run["initial"] is None:
        run["initial"] = scores_of(clock("evaluation", evaluate_all, backbone, tasks, cfg))
        log({"event": "initial", "scores": dict(zip([t.name for t in tasks], run["initial"]))})
    handlers = _install_signal_handlers() if store is not None else None
    try:
        for stage_index in range(first_stage, len(stages)):
            stage = stages[stage_index]
            if not stage.examples:
                raise DataError(f"stage {stage.name!r}: no training examples")
            ctx.stage_index, ctx.stage_task_indices = stage_index, stage.task_indices
            # The "spurious forgetting curve": the first task's score at chosen steps of later stages.
            watch = stage_index > 0 and bool(cfg.curve_steps)
            points: dict[str, float] = run.pop("points", {}) if position is not None else {}

            def before_step(step: int, stage: Stage = stage, watch: bool = watch, points: dict = points) -> None:
                if saving and (step == 0 or step in cfg.checkpoint_steps):  # step 0: every analysis starts there
                    save_checkpoint(backbone, checkpoint_path(stage.name, step))  # type: ignore[misc]
                if watch and step in cfg.curve_steps:
                    points[str(step)] = clock("curve", evaluate_all, backbone, tasks[:1], cfg, None,
                                              cfg.curve_max_examples)[0].score
                    log({"event": "curve", "stage": stage.name, "step": step, "score": points[str(step)]})

            def save_mid_stage(at: StagePosition, points: dict = points) -> None:
                store.save(snapshot_state(ctx, method, {**run, "points": dict(points)}, started, stage_index, at),  # type: ignore[union-attr]
                           at.optimizer)
                log({"event": "resume_point", "stage": ctx.task.name, "stage_index": stage_index, "step": at.step})

            seconds = train_stage(ctx, method, stage, cfg.training.for_task(stage.name), cfg.seed * 1000 + stage_index,
                                  before_step, save_mid_stage if store is not None and main_process else None,
                                  position)
            position = None
            if saving:
                save_checkpoint(backbone, checkpoint_path(stage.name, "end"))  # type: ignore[misc]
            log({"event": "stage_end", "stage": stage.name, "steps": ctx.step, "train_seconds": round(seconds.wall, 3),
                 "train_cpu_seconds": round(seconds.cpu, 3)})
            run["seen"] = max(run["seen"], *stage.task_indices)
            clock.add("train", seconds)
            evaluations = clock("evaluation", evaluate_all, backbone, tasks, cfg,
                                run["seen"] + 1 if cfg.training.eval_tasks == "seen_and_next" else None)
            row = scores_of(evaluations)
            run["acc_matrix"].append(row)
            run["intervals"].append([None if e is None else e.interval for e in evaluations])
            wanted = cfg.training.predictions
            if write_predictions and main_process and (wanted == "all" or wanted == "final" and stage_index == len(stages) - 1):
                for task, evaluation in zip(tasks, evaluations):
                    if evaluation is not None:
                        write_predictions(stage.name, task.name, evaluation.records())
            if watch:
                run["curve"][stage.name] = {**points, "end": row[0]}
            log({"event": "eval", "stage": stage.name, "scores": dict(zip([t.name for t in tasks], row))})
            if main_process:
                tqdm.write(f"after {stage.name}: "
                           + "  ".join(f"{t.name}={s:.1f}" for t, s in zip(tasks, row) if s is not None))
            if store is not None and main_process and stage_index + 1 < len(stages):
                store.save(snapshot_state(ctx, method, run, started, stage_index + 1, None), None)
                log({"event": "resume_point", "stage": stage.name, "stage_index": stage_index + 1, "step": 0})
                if _STOP_REQUESTED:
                    raise Interrupted(f"the end of stage {stage.name!r}")
    finally:
        _restore_signal_handlers(handlers)

    references = [reference_scores(t, cfg.training.eval_max_examples) for t in tasks]
    final = run["intervals"][-1]
    op_ci = op_interval(final) if all(c is not None for c in final) else None
    return RunResult(tasks=[t.name for t in tasks], stages=[s.name for s in stages], acc_matrix=run["acc_matrix"],
                     initial=run["initial"], seconds=round(run["elapsed"] + time.time() - started, 2),
                     curve=run["curve"], task_metrics={t.name: t.metric for t in tasks},
                     method_report=method.report(), processes=accelerator.num_processes,
                     device=", then ".join(run["devices"]),
                     n_test=[len(test_examples(t, cfg.training.eval_max_examples)) for t in tasks],
                     intervals=run["intervals"], op_ci95=None if op_ci is None else [round(x, 2) for x in op_ci],
                     chance=[r["chance"] for r in references], majority=[r["majority"] for r in references],
                     timing=dict(run["timing"]), **summarize(run["acc_matrix"], run["initial"]))


def _install_signal_handlers():
    import signal
    import threading
    if threading.current_thread() is not threading.main_thread():
        return None
    _STOP_REQUESTED.clear()
    return {sig: signal.signal(sig, _request_stop) for sig in (signal.SIGINT, signal.SIGTERM)}


def _restore_signal_handlers(handlers) -> None:
    import signal
    for sig, handler in (handlers or {}).items():
        signal.signal(sig, handler)
    _STOP_REQUESTED.clear()


def snapshot_state(ctx: TrainContext, method: Method, run: dict, started: float, stage_index: int,
                   position: StagePosition | None) -> dict:
    """A resume point's state: the run so far, where it is, the model's changing part, the method, every RNG."""
    model = ctx.backbone.model
    weights = tracked_parameters(ctx.backbone)
    adapters = list(model.active_adapters) if hasattr(model, "active_adapters") and ctx.backbone.settings.finetune == "lora" else None
    return {"stage_index": stage_index, "run": {**run, "elapsed": run["elapsed"] + time.time() - started},
            "position": None if position is None else {"step": position.step, "consumed": position.consumed,
                                                       "scheduler": position.scheduler, "stop": position.stop},
            "weights": {n: p.detach() for n, p in weights.items()},
            "trainable": sorted(n for n, p in model.named_parameters() if p.requires_grad),
            "adapters": adapters, "method": method.state_dict(), "rng": rng_states(),
            "method_rng": random_state(ctx.rng)}


def restore(state: dict, optimizer: dict, ctx: TrainContext, method: Method, stages: list[Stage],
            run: dict) -> tuple[int, StagePosition | None]:
    """Put a resume point's state back (after ``method.setup``): the method, adapters, trainable flags, weights,
    the run so far and every RNG. Returns the stage to start from and, inside it, the position."""
    backbone = ctx.backbone
    method.load_state_dict(state["method"])
    if state["adapters"]:
        activate_adapters(backbone, state["adapters"])
    trainable = set(state["trainable"])
    for name, param in backbone.model.named_parameters():
        param.requires_grad_(name in trainable)
    params = tracked_parameters(backbone)
    missing = sorted(set(state["weights"]) - set(params))
    if missing:
        raise DataError(f"resume point: weights the model does not have (e.g. {missing[0]})")
    assign_(params, state["weights"])
    run.update(state["run"])
    ctx.stage_index = state["stage_index"]
    if ctx.stage_index < len(stages):
        ctx.stage_task_indices = stages[ctx.stage_index].task_indices
    method.after_load(ctx)
    restore_rng(state["rng"])
    set_random_state(ctx.rng, state["method_rng"])
    pos = state["position"]
    return state["stage_index"], (None if pos is None else StagePosition(pos["step"], pos["consumed"], optimizer,
                                                                          pos["scheduler"], pos["stop"]))


def finetune(cfg: ExperimentConfig, backbone: Backbone, examples: list[Example], settings: TrainSettings,
             log: Callable[[dict], None] = lambda record: None, accelerator: Accelerator | None = None,
             name: str = "finetune", store: ResumeStore | None = None) -> float:
    """Plain training of ``backbone`` on ``examples`` with ``settings`` (language-model pre-training, recovery), seeded
    by ``cfg.seed`` exactly as a run's first stage; returns the training seconds.

    ``store``: resume points every ``settings.save_every`` steps (and on SIGINT/SIGTERM, which then stop it with
    ``Interrupted``); a point already there is continued from, to the same weights as an uninterrupted training."""
    seed_everything(cfg.seed)
    accelerator = accelerator or make_accelerator()
    backbone.forward_model = accelerator.prepare(backbone.model)
    task = Task(name, examples, [])
    ctx = TrainContext(cfg, backbone, accelerator, [task], log, random.Random(f"{cfg.seed}:method"))
    ctx.stage_index, ctx.stage_task_indices = 0, [0]
    position = None
    if store is not None and store.exists():
        state, optimizer = store.load(accelerator.device)
        assign_(dict(backbone.model.named_parameters()), state["weights"])
        restore_rng(state["rng"])
        position = StagePosition(state["step"], state["consumed"], optimizer, state["scheduler"])
        log({"event": "resumed", "stage": name, "step": state["step"]})

    def save(at: StagePosition) -> None:
        store.save({"weights": {n: p.detach() for n, p in backbone.model.named_parameters()}, "step": at.step,  # type: ignore[union-attr]
                    "consumed": at.consumed, "scheduler": at.scheduler, "rng": rng_states()}, at.optimizer)
        log({"event": "resume_point", "stage": name, "step": at.step})
    handlers = _install_signal_handlers() if store is not None else None
    try:
        return train_stage(ctx, Method(), Stage(name, [0], examples), settings, cfg.seed * 1000,
                           save_point=save if store is not None and accelerator.is_main_process else None,
                           resume=position).wall
    finally:
        _restore_signal_handlers(handlers)
