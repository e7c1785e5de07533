"""From a config to a finished run folder: tasks and backbone (``setup.py``), the loop, the outputs."""
from __future__ import annotations

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
    accelerator = make_accelerator()
    folder = RunFolder(out_dir or default_run_dir(cfg.name), enabled=accelerator.is_main_process, resume=resume)
    store = ResumeStore(folder.path / RESUME, extra=lambda: {"log_offset": folder.log_offset()})
    point = None
    if resume:
        if not store.exists():
            raise ConfigError(f"{folder.path}: no resume point to continue from (it was interrupted before its first)")
        point = store.load(accelerator.device)
        folder.truncate_log(point[0]["log_offset"])
        folder.log({"event": "resumed", "stage_index": point[0]["stage_index"],
                    "step": (point[0]["position"] or {}).get("step", 0)})
    else:
        folder.write_text("config.yaml", dump_config(cfg))
    try:
        method = configured_method(cfg)
        tasks, world = build_tasks(cfg)
        backbone = prepare_backbone(cfg, tasks, world, accelerator, folder.log)
        result = run_sequence(cfg, tasks, backbone, method, folder.log, accelerator, folder.checkpoint_path,
                              store if cfg.training.save_every is not None else None, point)
    except Interrupted as e:
        folder.log({"event": "interrupted", "at": str(e)})
        raise Interrupted(f"interrupted at {e}; a resume point is in {store.folder}: continue with "
                          f"`continual-lm run --resume {folder.path}`") from None
    except BaseException as e:
        folder.log({"event": "error", "type": type(e).__name__, "message": str(e).splitlines()[0] if str(e) else ""})
        raise
    record = RunRecord(name=cfg.name, method=cfg.method.name, **result.to_json())
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


def resume_experiment(folder: str | Path) -> tuple[RunRecord, Path]:
    """Continue the run in ``folder`` from its last resume point, with the config it recorded."""
    folder = Path(folder)
    if (folder / "metrics.json").exists():
        raise ConfigError(f"{folder}: the run is finished (metrics.json); there is nothing to resume")
    if not (folder / "config.yaml").exists():
        raise ConfigError(f"{folder}: not a run folder (no config.yaml)")
    return run_experiment(load_config(folder / "config.yaml"), folder, resume=True)
