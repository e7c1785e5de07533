"""A run's ingredients from its config: the tasks, and the backbone (pre-trained and cached first if asked).

Shared by ``run_experiment`` and by whatever re-opens a finished run (``analysis/run_loader.py``) or builds a
backbone the way a run does (benchmarks)."""
from __future__ import annotations

import hashlib
import json
import os
import shutil
from pathlib import Path

from accelerate import Accelerator

from ..config import ExperimentConfig
from ..data.benchmarks import load_benchmark
from ..data.biography import BiographyWorld, build_world
from ..data.task import Example, Task
from ..errors import ConfigError
from ..models.backbone import Backbone, EncoderBackbone, build_backbone
from ..models.named import cache_root
from ..training.loop import finetune, make_accelerator
from ..training.resume import ResumeStore

# Bump when pre-training code changes what a cached checkpoint holds. 2: biographies trained whole (format 1 cut
# each to its first 48 tokens), batches grouped by length.
PRETRAIN_FORMAT = 2
# Settings of the pre-training schedule that do not change the checkpoint: not part of its cache key.
NOT_IN_KEY = {"eval_batch_size", "eval_max_examples", "eval_tasks", "predictions", "report_to", "num_threads",
              "save_every", "keep_resume", "nan_policy", "per_task"}


def build_tasks(cfg: ExperimentConfig) -> tuple[list[Task], BiographyWorld | None]:
    d = cfg.data
    world = build_world(d.biography) if d.benchmark == "biography" else None
    tasks = world.tasks() if world else load_benchmark(d.benchmark, d.data_dir or "", d.order, d.n_train, d.n_test,
                                                       cfg.seed, d.tasks)
    names = [t.name for t in tasks]
    unknown = sorted(set(d.metrics) - set(names))
    if unknown:
        raise ConfigError(f"data.metrics: no task {unknown} in this run; its tasks: {names}")
    for task in tasks:
        task.metric = d.metrics.get(task.name, task.metric)
    return tasks, world


def corpus_of(tasks: list[Task]) -> list[str]:
    return [f"{ex.prompt} {' '.join(ex.answers)} {' '.join(ex.options or ())}" for t in tasks for ex in t.train + t.test]


def pretrain_key(cfg: ExperimentConfig, world: BiographyWorld) -> str:
    spec = {"format": PRETRAIN_FORMAT, "tiny": cfg.model.tiny.model_dump() if cfg.model.tiny else None,
            "max_length": cfg.model.max_length, "world": world.settings.model_dump(),
            "pretrain": cfg.pretrain.model_dump(exclude=NOT_IN_KEY) if cfg.pretrain else None, "seed": cfg.seed}
    return hashlib.sha256(json.dumps(spec, sort_keys=True).encode()).hexdigest()[:16]


def pretrained_checkpoint(cfg: ExperimentConfig, world: BiographyWorld, accelerator: Accelerator, log) -> Path:
    """Pre-train the tiny model on the biographies (full fine-tuning), or reuse the cached checkpoint."""
    assert cfg.pretrain is not None
    path = cache_root() / f"biography-{pretrain_key(cfg, world)}"
    if (path / "config.json").exists():
        log({"event": "pretrain", "cached": str(path)})
        return path
    settings = cfg.model.model_copy(update={"finetune": "full"})
    backbone = build_backbone(settings, world.vocabulary_corpus(), cfg.seed, accelerator.device)
    corpus = [Example("", bio, "pretrain") for bio in world.pretrain_corpus]
    # resume points beside the cache entry: an interrupted pre-training continues where it stopped, in any run
    store = ResumeStore(path.with_name(path.name + ".resume"))
    seconds = finetune(cfg, backbone, corpus, cfg.pretrain, log, accelerator, name="pretrain",
                       store=store if cfg.pretrain.save_every is not None else None)
    if accelerator.is_main_process:  # write to a temporary folder, then rename: never a half-written cache
        tmp = path.with_name(path.name + f".tmp{os.getpid()}")
        backbone.model.save_pretrained(tmp)
        backbone.tokenizer.save_pretrained(tmp)
        shutil.rmtree(path, ignore_errors=True)
        os.replace(tmp, path)
        store.clear()
    accelerator.wait_for_everyone()
    log({"event": "pretrain", "saved": str(path), "seconds": round(seconds, 2)})
    return path


def ensure_pretrained(cfg: ExperimentConfig) -> float | None:
    """Pre-train ``cfg``'s model into the cache unless it is there: the seconds it took (0 when cached), or None when
    ``cfg`` has no pre-training. Lets processes that share one checkpoint start from the cache together."""
    if cfg.pretrain is None or cfg.data.benchmark != "biography":
        return None
    records: list[dict] = []
    pretrained_checkpoint(cfg, build_world(cfg.data.biography), make_accelerator(), records.append)
    return sum(r.get("seconds", 0.0) for r in records if r["event"] == "pretrain")


def prepare_backbone(cfg: ExperimentConfig, tasks: list[Task], world: BiographyWorld | None,
                     accelerator: Accelerator, log=lambda r: None) -> Backbone:
    settings = cfg.model
    if cfg.pretrain is not None and world is not None:
        path = pretrained_checkpoint(cfg, world, accelerator, log)
        settings = settings.model_copy(update={"path": str(path), "tiny": None})
    backbone = build_backbone(settings, corpus_of(tasks), cfg.seed, accelerator.device)
    if settings.label_space == "all" and isinstance(backbone, EncoderBackbone):
        backbone.label_space = run_labels(tasks)
    if settings.max_new_tokens is None and tasks and all(t.options for t in tasks):
        # the longest label and the end token: generating more cannot change an exact match of a label
        eos = backbone.tokenizer.eos_token_id
        backbone.max_new_tokens = max(len(backbone.shaper.answer_ids(o, eos)) for t in tasks for o in t.options or ())
    return backbone


def run_labels(tasks: list[Task]) -> tuple[str, ...]:
    """Every label of every task, sorted: the candidates of ``model.label_space: all``."""
    missing = [t.name for t in tasks if not t.options]
    if missing:
        raise ConfigError(f"model.label_space: all needs classification tasks with labels; {missing} have none")
    return tuple(sorted({label for t in tasks for label in t.options or ()}))
