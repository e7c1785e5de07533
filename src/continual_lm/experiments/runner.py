"""From a config to a finished run folder: tasks and backbone (``setup.py``), the loop, the outputs."""
from __future__ import annotations

from pathlib import Path

import torch

from ..config import ExperimentConfig, dump_config
from ..errors import ConfigError
from ..evaluation.metrics import decompose_forgetting
from ..methods import METHODS, Method, create_method
from ..reporting.report import plot_matrix, run_report
from ..reporting.run_folder import RunFolder, RunRecord, default_run_dir
from ..training.loop import make_accelerator, run_sequence
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


def run_experiment(cfg: ExperimentConfig, out_dir: str | Path | None = None) -> tuple[RunRecord, Path]:
    """Run one configured experiment and write its run folder. Returns its record (metrics.json) and the folder."""
    if cfg.training.num_threads:
        torch.set_num_threads(cfg.training.num_threads)
    accelerator = make_accelerator()
    folder = RunFolder(out_dir or default_run_dir(cfg.name), enabled=accelerator.is_main_process)
    folder.write_text("config.yaml", dump_config(cfg))
    method = configured_method(cfg)
    tasks, world = build_tasks(cfg)
    backbone = prepare_backbone(cfg, tasks, world, accelerator, folder.log)
    result = run_sequence(cfg, tasks, backbone, method, folder.log, accelerator, folder.checkpoint_path)
    record = RunRecord(name=cfg.name, method=cfg.method.name, **result.to_json())
    if cfg.forgetting_decomposition is not None and len(result.acc_matrix) > 1:
        recovered = {j: recovered_score(backbone, tasks[j], cfg, cfg.forgetting_decomposition)
                     for j in range(len(tasks) - 1)}
        record.forgetting = decompose_forgetting(result.acc_matrix, recovered)
        folder.log({"event": "forgetting", "rows": record.forgetting})
    title = f"{cfg.name} / {cfg.method.name}: OP {result.op:.1f}"
    folder.finish(record, run_report(record),
                  lambda p: plot_matrix(p, result.tasks, result.stages, result.acc_matrix, title))
    return record, folder.path
