"""Open a finished run folder: its config, tasks, a backbone, its metrics and checkpoints."""
from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import yaml

from ..config import ExperimentConfig, parse_config
from ..data.task import Task
from ..errors import DataError
from ..experiments.runner import build_tasks, prepare_backbone
from ..models.backbone import Backbone
from ..models.weights import load_checkpoint
from ..training.loop import checkpoint_path, make_accelerator


@dataclass
class LoadedRun:
    folder: Path
    cfg: ExperimentConfig
    tasks: list[Task]
    backbone: Backbone
    metrics: dict

    @property
    def checkpoint_root(self) -> Path:
        return self.folder / "checkpoints"

    def checkpoint(self, stage: str, step: int | str) -> Path:
        path = checkpoint_path(self.checkpoint_root, stage, step)
        if not path.exists():
            raise DataError(f"{path}: checkpoint not found (set checkpoint_steps in the run's config)")
        return path

    def steps(self, stage: str) -> list[int | str]:
        """Checkpointed steps of a stage, in order, "end" last."""
        folder = self.checkpoint_root / stage
        if not folder.is_dir():
            raise DataError(f"{folder}: no checkpoints for stage {stage!r}")
        steps: list[int | str] = sorted(int(p.stem[4:]) for p in folder.glob("step*.safetensors"))
        return steps + (["end"] if (folder / "end.safetensors").exists() else [])

    def load(self, stage: str, step: int | str) -> None:
        load_checkpoint(self.backbone, self.checkpoint(stage, step))

    def task(self, name: str) -> Task:
        for t in self.tasks:
            if t.name == name:
                return t
        raise DataError(f"{self.folder}: no task {name!r}; tasks: {[t.name for t in self.tasks]}")


def load_run(folder: str | Path) -> LoadedRun:
    folder = Path(folder)
    cfg_path, metrics_path = folder / "config.yaml", folder / "metrics.json"
    if not metrics_path.exists():
        raise DataError(f"{folder}: not a finished run (no metrics.json)")
    cfg = parse_config(yaml.safe_load(cfg_path.read_text(encoding="utf-8")), str(cfg_path))
    tasks, world = build_tasks(cfg)
    backbone = prepare_backbone(cfg, tasks, world, make_accelerator())
    return LoadedRun(folder, cfg, tasks, backbone, json.loads(metrics_path.read_text(encoding="utf-8")))
