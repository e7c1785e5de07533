"""A run's folder: config.yaml, log.jsonl, metrics.json, report.md, acc_matrix.png.

metrics.json is written last and atomically; a folder that holds one is a finished run and is never
written into again, so a crash in a later run cannot corrupt it."""
from __future__ import annotations

import json
import os
import tempfile
import time
from pathlib import Path

from ..errors import ConfigError


def atomic_write_text(path: Path, text: str) -> None:
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(text)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def write_json(path: Path, data) -> None:
    atomic_write_text(path, json.dumps(data, indent=2) + "\n")


def default_run_dir(name: str, root: str | Path = "runs") -> Path:
    return Path(root) / f"{name}-{time.strftime('%Y%m%d-%H%M%S')}"


class RunFolder:
    def __init__(self, path: str | Path, enabled: bool = True):
        self.path = Path(path)
        self.enabled = enabled  # False on non-main processes: only one process writes
        if not enabled:
            return
        if (self.path / "metrics.json").exists():
            raise ConfigError(f"--out {self.path}: holds a finished run (metrics.json); choose another folder")
        self.path.mkdir(parents=True, exist_ok=True)
        self._log = open(self.path / "log.jsonl", "a", encoding="utf-8")

    def write_text(self, name: str, text: str) -> None:
        if self.enabled:
            atomic_write_text(self.path / name, text)

    def log(self, record: dict) -> None:
        if self.enabled:
            self._log.write(json.dumps({"time": round(time.time(), 3), **record}) + "\n")
            self._log.flush()

    def finish(self, metrics: dict, report_md: str, plot) -> None:
        """Write report and plot, then metrics.json last: its presence marks the run finished."""
        if not self.enabled:
            return
        self.write_text("report.md", report_md)
        plot(self.path / "acc_matrix.png")
        write_json(self.path / "metrics.json", metrics)
        self._log.close()
