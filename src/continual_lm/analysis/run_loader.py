"""Open a finished run folder: its config, tasks, a backbone built as the run built it, its record, its checkpoints."""
from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property
from pathlib import Path

from ..config import ExperimentConfig, parse_config
from ..data.biography import BiographyWorld
from ..data.task import Task
from ..errors import DataError
from ..experiments.setup import build_tasks, prepare_backbone
from ..models.backbone import Backbone
from ..models.weights import load_checkpoint
from ..reporting.run_folder import RunRecord, checkpoint_path, checkpoint_steps, read_config
from ..training.loop import make_accelerator


@dataclass
class LoadedRun:
    folder: Path
    cfg: ExperimentConfig
    tasks: list[Task]
    world: BiographyWorld | None
    record: RunRecord

    @cached_property
    def backbone(self) -> Backbone:
        """Built as the run built it, on first use (the answers analysis reads predictions only)."""
        return prepare_backbone(self.cfg, self.tasks, self.world, make_accelerator())

    def task_labels(self) -> dict[str, tuple[str, ...] | None]:
        """Each task's labels (None for a task with open answers)."""
        return {t.name: t.options for t in self.tasks}

    def checkpoint(self, stage: str, step: int | str) -> Path:
        path = checkpoint_path(self.folder, stage, step)
        if not path.exists():
            raise DataError(f"{path}: checkpoint not found (set checkpoint_steps in the run's config)")
        return path

    def steps(self, stage: str) -> list[int | str]:
        """Checkpointed steps of a stage, in order, "end" last."""
        return checkpoint_steps(self.folder, stage)

    def load(self, stage: str, step: int | str) -> None:
        load_checkpoint(self.backbone, self.checkpoint(stage, step))

    def task(self, name: str) -> Task:
        for t in self.tasks:
            if t.name == name:
                return t
        raise DataError(f"{self.folder}: no task {name!r}; tasks: {[t.name for t in self.tasks]}")


def load_run(folder: str | Path) -> LoadedRun:
    folder = Path(folder)
    record = RunRecord.read(folder)
    cfg = parse_config(read_config(folder), str(folder / "config.yaml"))
    tasks, world = build_tasks(cfg)
    return LoadedRun(folder, cfg, tasks, world, record)
