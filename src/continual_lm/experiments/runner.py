"""From a config to a finished run folder: tasks, backbone (pre-trained and cached if asked), loop, outputs."""
from __future__ import annotations

import hashlib
import json
import os
import shutil
from pathlib import Path

import torch
from accelerate import Accelerator

from ..config import ExperimentConfig, dump_config
from ..data.benchmarks import load_benchmark
from ..data.biography import BiographyWorld, build_world
from ..data.task import Example, Task
from ..errors import ConfigError
from ..methods import METHODS, Method, create_method
from ..methods.seq import Sequential
from ..models.backbone import Backbone, EncoderBackbone, build_backbone
from ..reporting.report import plot_matrix, run_report
from ..reporting.run_folder import RunFolder, default_run_dir
from ..training.loop import RunResult, make_accelerator, train_sequence

PRETRAIN_FORMAT = 1  # bump when pre-training code changes what a cached checkpoint holds


def cache_root() -> Path:
    return Path(os.environ.get("CONTINUAL_LM_CACHE", Path.home() / ".cache" / "continual_lm"))


def build_tasks(cfg: ExperimentConfig) -> tuple[list[Task], BiographyWorld | None]:
    d = cfg.data
    if d.benchmark == "biography":
        world = build_world(d.biography)
        return world.tasks(), world
    return load_benchmark(d.benchmark, d.data_dir or "", d.order, d.n_train, d.n_test, cfg.seed, d.tasks), None


def corpus_of(tasks: list[Task]) -> list[str]:
    return [f"{ex.prompt} {' '.join(ex.answers)} {' '.join(ex.options or ())}" for t in tasks for ex in t.train + t.test]


def pretrain_key(cfg: ExperimentConfig, world: BiographyWorld) -> str:
    spec = {"format": PRETRAIN_FORMAT, "tiny": cfg.model.tiny.model_dump() if cfg.model.tiny else None,
            "max_length": cfg.model.max_length, "world": world.settings.model_dump(),
            "pretrain": cfg.pretrain.model_dump() if cfg.pretrain else None, "seed": cfg.seed}
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
    corpus = Task("pretrain", [Example("", bio, "pretrain") for bio in world.pretrain_corpus], [])
    pre_cfg = cfg.model_copy(update={"training": cfg.pretrain, "curve_steps": []})
    result = train_sequence(pre_cfg, [corpus], backbone, Sequential(), log, accelerator, evaluate=False)
    if accelerator.is_main_process:  # write to a temporary folder, then rename: never a half-written cache
        tmp = path.with_name(path.name + f".tmp{os.getpid()}")
        backbone.model.save_pretrained(tmp)
        backbone.tokenizer.save_pretrained(tmp)
        shutil.rmtree(path, ignore_errors=True)
        os.replace(tmp, path)
    accelerator.wait_for_everyone()
    log({"event": "pretrain", "saved": str(path), "seconds": result.seconds})
    return path


def prepare_backbone(cfg: ExperimentConfig, tasks: list[Task], world: BiographyWorld | None,
                     accelerator: Accelerator, log=lambda r: None) -> Backbone:
    settings = cfg.model
    if cfg.pretrain is not None and world is not None:
        path = pretrained_checkpoint(cfg, world, accelerator, log)
        settings = settings.model_copy(update={"path": str(path), "tiny": None})
    backbone = build_backbone(settings, corpus_of(tasks), cfg.seed, accelerator.device)
    if settings.label_space == "all" and isinstance(backbone, EncoderBackbone):
        backbone.label_space = run_labels(tasks)
    return backbone


def run_labels(tasks: list[Task]) -> tuple[str, ...]:
    """Every label of every task, sorted: the candidates of ``model.label_space: all``."""
    missing = [t.name for t in tasks if not t.options]
    if missing:
        raise ConfigError(f"model.label_space: all needs classification tasks with labels; {missing} have none")
    return tuple(sorted({label for t in tasks for label in t.options or ()}))


def check_method_names(cfg: ExperimentConfig) -> None:
    unknown = sorted(set(cfg.method_params) - set(METHODS))
    if unknown:
        raise ConfigError(f"method_params: unknown method(s) {unknown}; known: {sorted(METHODS)}")


def configured_method(cfg: ExperimentConfig) -> Method:
    """The run's method, built from the config: a bad method name, ``method_params`` key or parameter value is a
    ConfigError here, before any data or model is loaded."""
    check_method_names(cfg)
    return create_method(cfg.method.name, cfg.resolved_method_params())


def run_experiment(cfg: ExperimentConfig, out_dir: str | Path | None = None) -> tuple[RunResult, Path]:
    """Run one configured experiment and write its run folder. Returns the result and the folder."""
    if cfg.training.num_threads:
        torch.set_num_threads(cfg.training.num_threads)
    accelerator = make_accelerator()
    folder = RunFolder(out_dir or default_run_dir(cfg.name), enabled=accelerator.is_main_process)
    folder.write_text("config.yaml", dump_config(cfg))
    method = configured_method(cfg)
    tasks, world = build_tasks(cfg)
    backbone = prepare_backbone(cfg, tasks, world, accelerator, folder.log)
    checkpoints = folder.path / "checkpoints" if cfg.checkpoint_steps else None
    result = train_sequence(cfg, tasks, backbone, method, folder.log, accelerator, checkpoint_dir=checkpoints)
    metrics = {"name": cfg.name, "method": cfg.method.name, **result.to_json()}
    if cfg.forgetting_decomposition is not None and len(result.acc_matrix) > 1:
        from ..analysis.recovery import decompose_forgetting, recovered_score
        recovered = {j: recovered_score(backbone, tasks[j], cfg, cfg.forgetting_decomposition)
                     for j in range(len(tasks) - 1)}
        metrics["forgetting"] = decompose_forgetting(result.acc_matrix, recovered)
        folder.log({"event": "forgetting", "rows": metrics["forgetting"]})
    title = f"{cfg.name} / {cfg.method.name}: OP {result.op:.1f}"
    folder.finish(metrics, run_report(cfg.name, cfg.method.name, metrics),
                  lambda p: plot_matrix(p, result.tasks, result.stages, result.acc_matrix, title))
    return result, folder.path
