"""From a config to a finished run folder: tasks and backbone (``setup.py``), the loop, the outputs."""
from __future__ import annotations

import json
from pathlib import Path

import torch

from ..config import ExperimentConfig, dump_config, load_config
from ..errors import ConfigError, Interrupted
from ..evaluation.metrics import decompose_forgetting
from ..methods import METHODS, Method, create_method
from ..reporting.report import plot_matrix, run_report
from ..reporting.run_folder import RESUME, RunFolder, RunRecord, default_run_dir
from ..training.loop import make_accelerator, run_sequence
from ..training.resume import ResumeStore
from ..training.recovery import recovered_score
from .setup import build_tasks, prepare_backbone


def check_method_names(cfg: ExperimentConfig) -> None:
    unknown = sorted(set(cfg.method_params) - set(METHODS))
    if unknown:
        raise ConfigError(f"method_params: unknown method(s) {unknown}; known: {sorted(METHODS)}")


def configured_method(cfg: ExperimentConfig) -> Method:
    """The run's method, built from the config: a bad method name, ``method_params`` key or parameter value is a
    ConfigError here, before any data or model is loaded."""
    check_method_names(cfg)
    return create_method(cfg.method.name, cfg.resolved_method_params())


def run_experiment(cfg: ExperimentConfig, out_dir: str | Path | None = None,
                   resume: bool = False) -> tuple[RunRecord, Path]:
    """Run one configured experiment and write its run folder. Returns its record (metrics.json) and the folder.

    Resume points go to <run>/resume (``training.save_every``); ``resume`` continues the run in ``out_dir`` from its
    last one. SIGINT/SIGTERM write a point and stop with an ``Interrupted`` error; any error is logged first."""
    if cfg.training.num_threads:
        torch.set_num_threads(cfg.training.num_threads)
    out = Path(out_dir or default_run_dir(cfg.name))
    accelerator = make_accelerator(cfg.training.report_to, out / "trackers")
    folder = RunFolder(out, enabled=accelerator.is_main_process, resume=resume)
    store = ResumeStore(folder.path / RESUME, extra=lambda: {"log_offset": folder.log_offset()})
    point = None
    if resume:
        if not store.exists():
            raise ConfigError(f"{folder.path}: no resume point to continue from (it stopped before its first); run the "
                              f"same command without --resume to start it again in this folder")
        point = store.load(accelerator.device)
        folder.truncate_log(point[0]["log_offset"])
        folder.log({"event": "resumed", "stage_index": point[0]["stage_index"],
                    "step": (point[0]["position"] or {}).get("step", 0)})
    else:  # fully resolved: absolute paths (a resume from anywhere reads the same data), the method's parameters
        folder.write_text("config.yaml", dump_config(recorded_config(cfg)))
    log = folder.log
    if cfg.training.report_to:
        accelerator.init_trackers(cfg.name, config=tracker_config(cfg))
        log = tracker_log(folder.log, accelerator, steps_done(folder.path) if resume else 0)
    try:
        method = configured_method(cfg)
        tasks, world = build_tasks(cfg)
        pretrain: dict = {}

        def setup_log(record: dict) -> None:  # the pre-training's seconds join the run's timing
            if record.get("event") == "pretrain":
                pretrain["pretrain"] = record.get("seconds", 0.0)
            log(record)
        backbone = prepare_backbone(cfg, tasks, world, accelerator, setup_log)
        result = run_sequence(cfg, tasks, backbone, method, log, accelerator, folder.checkpoint_path,
                              store if cfg.training.save_every is not None else None, point,
                              folder.write_predictions if cfg.training.predictions != "none" else None)
    except Interrupted as e:
        folder.log({"event": "interrupted", "at": str(e)})
        if not store.exists():  # stopped in pre-training: its point is in the cache, and the same command goes on
            raise Interrupted(f"interrupted at {e}; pre-training continues from there when you run the same command "
                              "again") from None
        raise Interrupted(f"interrupted at {e}; a resume point is in {store.folder}: continue with "
                          f"`continual-lm run --resume {folder.path}`") from None
    except BaseException as e:
        folder.log({"event": "error", "type": type(e).__name__, "message": str(e).splitlines()[0] if str(e) else ""})
        raise
    finally:
        if cfg.training.report_to:
            accelerator.end_training()
    record = RunRecord(name=cfg.name, method=cfg.method.name, **result.to_json(),
                       method_params=method.params.model_dump(mode="json"))
    record.timing = {**pretrain, **record.timing}
    if cfg.forgetting_decomposition is not None and len(result.acc_matrix) > 1:
        recovered = {j: recovered_score(backbone, tasks[j], cfg, cfg.forgetting_decomposition)
                     for j in range(len(tasks) - 1)}
        record.forgetting = decompose_forgetting(result.acc_matrix, recovered)
        folder.log({"event": "forgetting", "rows": record.forgetting})
    title = f"{cfg.name} / {cfg.method.name}: OP {result.op:.1f}"
    folder.finish(record, run_report(record),
                  lambda p: plot_matrix(p, result.tasks, result.stages, result.acc_matrix, title))
    if not cfg.training.keep_resume and accelerator.is_main_process:
        store.clear()
    return record, folder.path


def recorded_config(cfg: ExperimentConfig) -> ExperimentConfig:
    """``cfg`` as a run folder records it: local paths made absolute, and ``method.params`` the method's parameters
    with their defaults (as metrics.json has them)."""
    method = configured_method(cfg)
    params = {k: v for k, v in method.params.model_dump(mode="json").items()}
    return absolute_paths(cfg).model_copy(update={"method": cfg.method.model_copy(update={"params": params})})


def absolute_paths(cfg: ExperimentConfig) -> ExperimentConfig:
    """``data.data_dir``, a local ``model.path`` and ``model.gguf_file`` as absolute paths (hub ids and named models
    stay as they are)."""
    def local(path: str | None) -> str | None:
        return str(Path(path).expanduser().resolve()) if path and Path(path).expanduser().exists() else path
    data_dir = str(Path(cfg.data.data_dir).expanduser().resolve()) if cfg.data.data_dir else None
    return cfg.model_copy(update={
        "data": cfg.data.model_copy(update={"data_dir": data_dir}),
        "model": cfg.model.model_copy(update={"path": local(cfg.model.path), "gguf_file": local(cfg.model.gguf_file)})})


def tracker_config(cfg: ExperimentConfig) -> dict:
    """The config flattened to the scalars trackers accept (``training.lr``: 0.001, lists as text)."""
    flat: dict = {}

    def walk(prefix: str, value) -> None:
        if isinstance(value, dict):
            for k, v in value.items():
                walk(f"{prefix}.{k}" if prefix else str(k), v)
        elif isinstance(value, (bool, int, float, str)):
            flat[prefix] = value
        elif value is not None:
            flat[prefix] = str(value)
    walk("", cfg.model_dump())
    return flat


def steps_done(folder: Path) -> int:
    """Optimiser steps of the stages a run's log says ended (where a resumed run's tracker steps continue)."""
    path = folder / "log.jsonl"
    if not path.exists():
        return 0
    records = (json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip())
    return sum(r.get("steps", 0) for r in records if r.get("event") == "stage_end")


def tracker_log(log, accelerator, offset: int = 0):
    """``log`` that also sends the numbers to Accelerate's trackers: train loss and lr at the run's global step
    (steps of earlier stages added), each evaluation's scores and the curve points."""
    done = [offset]

    def tee(record: dict) -> None:
        log(record)
        event = record.get("event")
        if event == "train":
            accelerator.log({"train/loss": record["loss"], "train/lr": record["lr"]}, step=done[0] + record["step"])
        elif event == "curve":
            accelerator.log({"curve/task0": record["score"]}, step=done[0] + record["step"])
        elif event in ("initial", "eval"):
            accelerator.log({f"eval/{t}": s for t, s in record["scores"].items() if s is not None}, step=done[0])
        elif event == "stage_end":
            done[0] += record["steps"]
    return tee


def resume_experiment(folder: str | Path) -> tuple[RunRecord, Path]:
    """Continue the run in ``folder`` from its last resume point, with the config it recorded."""
    folder = Path(folder)
    if (folder / "metrics.json").exists():
        raise ConfigError(f"{folder}: the run is finished (metrics.json); there is nothing to resume")
    if not (folder / "config.yaml").exists():
        raise ConfigError(f"{folder}: not a run folder (no config.yaml)")
    return run_experiment(load_config(folder / "config.yaml"), folder, resume=True)
