"""A run's folder, written and read in one place: config.yaml, log.jsonl, metrics.json (a ``RunRecord``), report.md,
acc_matrix.png, predictions/<stage>/<task>.jsonl and checkpoints/<stage>/step<N>.safetensors (or end.safetensors).

metrics.json is written last and atomically; a folder that holds one is a finished run and is never written into
again, so a crash in a later run cannot corrupt it."""
from __future__ import annotations

import json
import logging
import os
import tempfile
import time
from dataclasses import MISSING, asdict, dataclass, field, fields
from pathlib import Path

import yaml

from ..data.loaders import read_json
from ..errors import ConfigError, DataError

log = logging.getLogger(__name__)

CHECKPOINTS = "checkpoints"
PREDICTIONS = "predictions"


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


def checkpoint_path(folder: Path, stage: str, step: int | str) -> Path:
    """Where a stage's checkpoint lives: <run>/checkpoints/<stage>/step<N>.safetensors, or end.safetensors."""
    name = "end" if step == "end" else f"step{step}"
    return Path(folder) / CHECKPOINTS / stage / f"{name}.safetensors"


def checkpoint_steps(folder: Path, stage: str) -> list[int | str]:
    """The checkpointed steps of a stage, in order, "end" last."""
    root = Path(folder) / CHECKPOINTS / stage
    if not root.is_dir():
        raise DataError(f"{root}: no checkpoints for stage {stage!r}")
    steps: list[int | str] = sorted(int(p.stem[4:]) for p in root.glob("step*.safetensors"))
    return steps + (["end"] if (root / "end.safetensors").exists() else [])


@dataclass
class RunRecord:
    """metrics.json: what a finished run measured."""
    method: str
    tasks: list[str]
    acc_matrix: list[list[float | None]]
    op: float | None
    bwt: float | None
    fwt: float | None
    seconds: float
    stages: list[str] = field(default_factory=list)
    initial: list[float] = field(default_factory=list)
    name: str = ""
    la: float | None = None
    f: float | None = None
    ap: float | None = None
    curve: dict = field(default_factory=dict)
    method_report: dict = field(default_factory=dict)
    processes: int = 1
    device: str = ""                           # what trained it ("cpu", "cuda (NVIDIA H200)"; a run resumed
                                               # elsewhere: "cuda (NVIDIA H200), then cpu"); "" in older runs
    task_metrics: dict[str, str] = field(default_factory=dict)  # how each task is scored (evaluation/scores.py)
    forgetting: list[dict] | None = None       # the forgetting decomposition, when the run made one
    n_test: list[int] = field(default_factory=list)                   # test examples scored per task
    intervals: list[list[dict | None]] = field(default_factory=list)  # per cell: n, mean, se, 95% low/high
    op_ci95: list[float] | None = None
    chance: list[float | None] = field(default_factory=list)          # per task, without learning (evaluate.py)
    majority: list[float | None] = field(default_factory=list)
    timing: dict[str, float] = field(default_factory=dict)            # seconds per phase
    method_params: dict | None = None          # the method's parameters, defaults included, as the run used them

    def to_json(self) -> dict:
        data = asdict(self)
        if data["forgetting"] is None:
            del data["forgetting"]
        return data

    @classmethod
    def read(cls, folder: str | Path) -> "RunRecord":
        """The record of a finished run (a one-line DataError for an unfinished run or a malformed file)."""
        path = Path(folder) / "metrics.json"
        if not path.exists():
            raise DataError(f"{folder}: not a finished run (no metrics.json)")
        data = read_json(path)
        if not isinstance(data, dict):
            raise DataError(f"{path}: expected a JSON object")
        known = {f.name for f in fields(cls)}
        required = [f.name for f in fields(cls) if f.default is MISSING and f.default_factory is MISSING]
        for key in required:
            if key not in data:
                raise DataError(f"{path}: missing key {key!r}")
        return cls(**{k: v for k, v in data.items() if k in known})


def read_config(folder: str | Path) -> dict:
    """A run's config.yaml as a mapping (validate it with ``config.parse_config``)."""
    path = Path(folder) / "config.yaml"
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except OSError as e:
        raise DataError(f"{path}: cannot read the run's config ({e.strerror})") from None
    except yaml.YAMLError as e:
        raise DataError(f"{path}: malformed YAML: {str(e).splitlines()[0]}") from None
    if not isinstance(data, dict):
        raise DataError(f"{path}: expected a mapping")
    return data


def run_seed(folder: str | Path) -> int:
    data = read_config(folder)
    try:
        return int(data["seed"])
    except (KeyError, TypeError, ValueError) as e:
        raise DataError(f"{Path(folder) / 'config.yaml'}: cannot read the run's seed ({type(e).__name__}: {e})") from None


def run_method_params(folder: str | Path, record: RunRecord) -> dict:
    """The method parameters a run used: its metrics.json's, or, for runs made before those were recorded, what its
    config.yaml sets (``method_params`` of its method under ``method.params``; defaults not included)."""
    if record.method_params is not None:
        return record.method_params
    data = read_config(folder)
    method, shared = data.get("method") or {}, data.get("method_params") or {}
    params = [method.get("params") if isinstance(method, dict) else None, shared.get(record.method)
              if isinstance(shared, dict) else None]
    if not all(p is None or isinstance(p, dict) for p in params):
        raise DataError(f"{Path(folder) / 'config.yaml'}: method.params and method_params.{record.method} must be "
                        "mappings")
    return {**(params[1] or {}), **(params[0] or {})}


def is_unfinished(folder: Path) -> bool:
    """A run started in ``folder`` and did not finish (its config or log is there, its metrics.json is not)."""
    folder = Path(folder)
    return not (folder / "metrics.json").exists() and any((folder / n).exists() for n in ("config.yaml", "log.jsonl"))


RESUME = "resume"


def has_resume_point(folder: Path) -> bool:
    return (Path(folder) / RESUME / "state.json").exists()


def clear_run_files(folder: Path) -> None:
    """Remove what an unfinished run wrote into ``folder`` (nothing else that may be there)."""
    import shutil
    for name in ("config.yaml", "log.jsonl", "report.md", "acc_matrix.png"):
        (folder / name).unlink(missing_ok=True)
    for name in (CHECKPOINTS, PREDICTIONS, RESUME, "trackers"):
        shutil.rmtree(folder / name, ignore_errors=True)


class RunFolder:
    """The writer of a run's folder (only the main process writes: ``enabled`` is False on the others)."""

    def __init__(self, path: str | Path, enabled: bool = True, resume: bool = False):
        self.path = Path(path)
        self.enabled = enabled
        if not enabled:
            return
        if (self.path / "metrics.json").exists():
            raise ConfigError(f"--out {self.path}: holds a finished run (metrics.json); choose another folder")
        if not resume and is_unfinished(self.path):
            if has_resume_point(self.path):
                raise ConfigError(f"--out {self.path}: holds an unfinished run; continue it with `continual-lm run "
                                  f"--resume {self.path}`, or choose another folder")
            # it stopped before its first resume point: nothing in it can be continued, so it starts again here
            log.warning("--out %s: held a run that stopped before its first resume point; starting it again", self.path)
            clear_run_files(self.path)
        self.path.mkdir(parents=True, exist_ok=True)
        self._log = open(self.path / "log.jsonl", "a", encoding="utf-8")

    def log_offset(self) -> int:
        """The log's length now (a resume point records it: a resumed run drops what came after)."""
        self._log.flush()
        return self._log.tell()

    def truncate_log(self, offset: int) -> None:
        self._log.close()
        with open(self.path / "log.jsonl", "r+b") as f:
            f.truncate(offset)
        self._log = open(self.path / "log.jsonl", "a", encoding="utf-8")

    def write_text(self, name: str, text: str) -> None:
        if self.enabled:
            atomic_write_text(self.path / name, text)

    def log(self, record: dict) -> None:
        if self.enabled:
            self._log.write(json.dumps({"time": round(time.time(), 3), **record}) + "\n")
            self._log.flush()

    def checkpoint_path(self, stage: str, step: int | str) -> Path:
        return checkpoint_path(self.path, stage, step)

    def write_predictions(self, stage: str, task: str, records: list[dict]) -> None:
        """predictions/<stage>/<task>.jsonl, one example per line (written whole, then renamed into place)."""
        if not self.enabled:
            return
        folder = self.path / PREDICTIONS / stage
        folder.mkdir(parents=True, exist_ok=True)
        atomic_write_text(folder / f"{task}.jsonl", "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in records))

    def finish(self, record: RunRecord, report_md: str, plot) -> None:
        """Write report and plot, then metrics.json last: its presence marks the run finished."""
        if not self.enabled:
            return
        self.write_text("report.md", report_md)
        plot(self.path / "acc_matrix.png")
        write_json(self.path / "metrics.json", record.to_json())
        self._log.close()
