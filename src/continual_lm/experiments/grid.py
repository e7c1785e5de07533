"""Grids of runs — one config, the axes {method, order, seed} and overrides — and their summaries.

Every comparison of the toolkit is a grid: the default experiment (methods, one seed), the Biography benchmarks
(methods × seeds), Standard CL and Long Sequence (methods × orders × seeds). A grid

- runs each cell into an ordinary run folder (``--runs DIR``), and rewrites its results file after every run, so an
  interrupted grid keeps what it finished;
- resumes (``resume=True``): the cells the results file already holds are skipped;
- merges: results files of grids run apart (other orders, seeds or methods, in parallel processes) pool into one,
  when their settings agree — an (order, seed) cell that lacks a method is left out, so every method is averaged over
  the same cells;
- summarises: per method mean ± std of OP / BWT / FWT / LA / F / AP, each method's difference from ``seq`` on the same
  cell (mean ± standard error), and for two-task runs with a curve (Biography) Task 0 / Task 1 and the curve.

A method entry is a registered name or NAME:VARIANT (``recurrent_kif:reference_code``); the entry labels its runs.
"""
from __future__ import annotations

import json
import os
import platform
import shutil
import statistics
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import get_args

import torch
from pydantic import BaseModel
from pydantic_core import to_jsonable_python

from ..config import ExperimentConfig, apply_override, parse_config
from ..errors import ConfigError, ContinualLMError, DataError
from ..methods import split_method_spec
from ..reporting.report import (PAIRED_KEYS, aggregate_by_method, markdown_table, method_table, paired_differences,
                                paired_table, plot_curves, plot_methods, summary_row)
from ..reporting.run_folder import RESUME, RunRecord, atomic_write_text, is_unfinished, read_config, write_json
from .runner import absolute_paths, configured_method, run_experiment

# Not part of a grid's pooled setting: the axes, the run name, the threads, where the data lives on this machine, and
# the methods' parameters — those belong to a method's label: each row records its method's, and runs pool only where
# one label means one set of parameters.
NOT_POOLED = ("name", "seed", "method", "method_params", "data.order", "data.data_dir", "training.num_threads")


@dataclass
class Grid:
    base: dict                       # the config, as a mapping
    source: str                      # where it came from (a file name), for the results' setting
    methods: list[str]
    seeds: list[int]
    orders: list[int] | None = None  # None: the config's own task order (no order axis)
    overrides: list[str] = field(default_factory=list)
    threads: int | None = None

    def cells(self) -> list[tuple[int | None, int, str]]:
        return [(o, s, m) for o in (self.orders or [None]) for s in self.seeds for m in self.methods]

    def config(self, order: int | None, seed: int, method: str) -> ExperimentConfig:
        data = json.loads(json.dumps(self.base))
        name, params = split_method_spec(method)
        items = [*self.overrides, f"seed={seed}", f"method.name={name}"]
        if name != (self.base.get("method") or {}).get("name", "seq"):
            items.append("method.params={}")  # the config's method.params belong to its own method
        items += [f"method.params.{k}={json.dumps(v)}" for k, v in params.items()]
        if order is not None:
            items.append(f"data.order={order}")
        if self.threads:
            items.append(f"training.num_threads={self.threads}")
        for item in items:
            apply_override(data, item)
        data["name"] = f"{self.base.get('name', 'grid')}-{label(order, seed, method)}"
        return parse_config(data, self.source)

    def setting(self) -> dict:
        """What must agree for results to pool: the config a cell resolves to, less the axes."""
        resolved = self.config(*self.cells()[0]).model_dump(mode="json")
        for key in NOT_POOLED:
            node, *rest = key.split(".")
            if rest:
                resolved.get(node, {}).pop(rest[0], None)
            else:
                resolved.pop(node, None)
        return {"config": Path(self.source).name, "overrides": list(self.overrides), "resolved": resolved}


def folder_safe(method: str) -> str:
    """A method entry as a folder name: ``recurrent_kif:reference_code`` → recurrent_kif-reference_code,
    ``task_vector(alpha=0.2)`` → task_vector-alpha0.2."""
    return "".join(c for c in method.replace(":", "-").replace("(", "-").replace(",", "-") if c not in ")= ")


def label(order: int | None, seed: int, method: str) -> str:
    return ("" if order is None else f"order{order}-") + f"seed{seed}-{folder_safe(method)}"


def cell_key(row: dict) -> tuple:
    return row.get("order"), row["seed"], row["method"]


def grid_from_file(path: str | Path, methods: list[str], seeds: list[int], orders: list[int] | None = None,
                   overrides: list[str] | None = None, threads: int | None = None) -> Grid:
    import yaml
    path = Path(path)
    try:
        base = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except FileNotFoundError:
        raise ConfigError(f"{path}: config file not found") from None
    except yaml.YAMLError as e:
        raise ConfigError(f"{path}: malformed YAML: {str(e).splitlines()[0]}") from None
    return Grid(base, str(path), methods, seeds, orders, list(overrides or []), threads)


def grid_from_config(cfg: ExperimentConfig, methods: list[str], seeds: list[int] | None = None, **kw) -> Grid:
    return Grid(cfg.model_dump(mode="json"), cfg.name, methods, seeds or [cfg.seed], **kw)


def environment() -> dict:
    return {"torch": torch.__version__, "threads": torch.get_num_threads(),
            "cpu": platform.processor() or platform.machine(), "cuda": torch.cuda.is_available(),
            "date": time.strftime("%Y-%m-%d %H:%M")}


# ---------------------------------------------------------------------------- results files

def with_defaults(values: dict, model: type[BaseModel] = ExperimentConfig) -> dict:
    """A stored setting read through today's config model: a key added since it was written takes its default."""
    out = dict(values)
    for key, spec in model.model_fields.items():
        sub = next((t for t in (spec.annotation, *get_args(spec.annotation))
                    if isinstance(t, type) and issubclass(t, BaseModel)), None)
        if key not in out:
            if not spec.is_required() and sub is None:
                out[key] = to_jsonable_python(spec.get_default(call_default_factory=True))
        elif sub is not None and isinstance(out[key], dict):
            out[key] = with_defaults(out[key], sub)
    return out


def read_results(path: Path, setting: dict | None = None) -> tuple[dict, list[dict]]:
    """(setting, runs) of a results file; with ``setting``, one that differs (once keys added since either was
    written take their defaults) is refused (one line)."""
    try:
        data = json.loads(Path(path).read_text(encoding="utf-8"))
        theirs, runs = data["setting"], data["runs"]
    except (OSError, ValueError, KeyError, TypeError) as e:
        raise DataError(f"{path}: not a grid results file ({type(e).__name__}: {e})") from None
    theirs.get("resolved", {}).pop("method_params", None)  # files written when method_params were pooled settings
    if setting is not None:
        mine, other = (with_defaults(x.get("resolved") or {}) for x in (setting, theirs))
        if mine != other:
            differ = sorted(k for k in set(mine) | set(other) if mine.get(k) != other.get(k))
            raise DataError(f"{path}: its runs were made with another setting (config keys {differ} differ); "
                            "results with different settings cannot be pooled")
    return theirs, runs


def merge_runs(files: list[Path], echo: Callable[[str], None] = print) -> tuple[dict, list[dict]]:
    """The runs of ``files`` (same setting), pooled; (order, seed) cells lacking a method are left out."""
    setting, rows = None, {}
    for path in files:
        theirs, runs = read_results(path, setting)
        setting = setting or theirs
        for row in runs:
            if cell_key(row) in rows:
                raise DataError(f"{path}: run {label(*cell_key(row))} is also in an earlier file")
            rows[cell_key(row)] = row
    params: dict[str, dict] = {}
    for row in rows.values():
        if "method_params" in row and params.setdefault(row["method"], row["method_params"]) != row["method_params"]:
            raise DataError(f"runs labelled {row['method']!r} were made with different method parameters "
                            f"({params[row['method']]} and {row['method_params']}); give them different labels")
    methods = {m for _, _, m in rows}
    cells: dict[tuple, set] = {}
    for order, seed, method in rows:
        cells.setdefault((order, seed), set()).add(method)
    for (order, seed), present in sorted(cells.items(), key=lambda kv: (kv[0][0] or 0, kv[0][1])):
        if present != methods:
            echo(f"left out {label(order, seed, '').rstrip('-')}: no run of {', '.join(sorted(methods - present))}")
    assert setting is not None
    return setting, [r for k, r in rows.items() if cells[k[:2]] == methods]


def sort_rows(rows: list[dict], methods: list[str]) -> list[dict]:
    rank = {m: i for i, m in enumerate(methods)}
    return sorted(rows, key=lambda r: (r.get("order") or 0, r["seed"], rank.get(r["method"], len(rank)), r["method"]))


def task_columns(rows: list[dict]) -> dict | None:
    """Two-task runs (Biography): per method mean ± std of Task 0 after Task 0, Task 0 and Task 1 final, the curve."""
    if not rows or any(len(r["tasks"]) != 2 or len(r["acc_matrix"]) != 2 for r in rows):
        return None
    out: dict[str, dict] = {}
    for method in dict.fromkeys(r["method"] for r in rows):
        mine = [r for r in rows if r["method"] == method]
        curves = [next(iter(r.get("curve", {}).values()), {}) for r in mine]
        out[method] = {key: mean_std([pick(r["acc_matrix"]) for r in mine]) for key, pick in (
            ("task0_after_task0", lambda a: a[0][0]), ("task0_final", lambda a: a[1][0]), ("task1_final", lambda a: a[1][1]))}
        # A run that stopped early (freeze's early stop) has no points after its last step.
        steps = list(dict.fromkeys(s for c in curves for s in c))
        out[method]["curve"] = {s: mean_std([c[s] for c in curves if s in c]) for s in steps}
    return out


PHASES = ("pretrain", "train", "evaluation", "curve")
CPU_PHASES = ("train_cpu", "evaluation_cpu")  # process CPU seconds (wall time on a loaded machine measures the load)


def timing_by_method(rows: list[dict]) -> dict[str, dict[str, float]]:
    """Per method, the mean seconds per phase of its runs (``RunRecord.timing``; "other": the rest of a run's wall
    time, which includes its pre-training — model building, checkpoints, resume points, the forgetting
    decomposition). Runs without timing (made before runs recorded it) are left out; "runs" counts the rest."""
    out: dict[str, dict[str, float]] = {}
    for method in dict.fromkeys(r["method"] for r in rows):
        timed = [r for r in rows if r["method"] == method and r.get("timing")]
        if not timed:
            continue
        phases = {k: statistics.fmean(r["timing"].get(k, 0.0) for r in timed) for k in PHASES}
        total = statistics.fmean(r["seconds"] for r in timed)
        out[method] = {k: round(v, 1) for k, v in {**phases, "other": total - sum(phases.values()), "total": total}.items()}
        out[method]["runs"] = len(timed)
        cpu = [r for r in timed if "train_cpu" in r["timing"]]  # runs that recorded CPU seconds too
        if cpu:
            out[method] |= {k: round(statistics.fmean(r["timing"].get(k, 0.0) for r in cpu), 1) for k in CPU_PHASES}
    return out


def timing_table(timing: dict[str, dict[str, float]]) -> str:
    keys = [*PHASES, "other", "total"] + [k for k in CPU_PHASES if any(k in t for t in timing.values())]
    return markdown_table(["method", "timed runs", *keys],
                          [[m, str(t["runs"]), *(f"{t[k]:.1f}" if k in t else "–" for k in keys)]
                           for m, t in timing.items()])


def mean_std(values: list[float]) -> dict:
    return {"mean": round(statistics.fmean(values), 2),
            "std": round(statistics.pstdev(values), 2) if len(values) > 1 else 0.0, "n": len(values)}


def task_table(columns: dict) -> str:
    steps = list(dict.fromkeys(s for c in columns.values() for s in c["curve"]))
    steps = [s for s in steps if s != "end"] + (["end"] if "end" in steps else [])

    def cell(x: dict | None) -> str:
        return "–" if x is None else f"{x['mean']:.1f}" + (f" ± {x['std']:.1f}" if x["n"] > 1 else "")
    return markdown_table(["method", "Task 0 after Task 0", "Task 0 final", "Task 1 final", *(f"T0 @ {s}" for s in steps)],
                          [[name, *(cell(c[k]) for k in ("task0_after_task0", "task0_final", "task1_final")),
                            *(cell(c["curve"].get(s)) for s in steps)] for name, c in columns.items()])


# the paper's claims are made against these two: SeqLoRA (what a method adds) and LoRAReplay (the cheap strong baseline)
PAIRED_BASELINES = ("seq", "replay")


def summarise(rows: list[dict], setting: dict, out: Path, discussion: str = "", echo=print,
              checks: Callable[[dict], dict] | None = None) -> dict:
    """Write ``out`` (JSON: setting, per-method summaries, paired differences, every run) and ``out`` .md;
    ``checks(tasks)`` adds named pass/fail targets on the Task 0 / Task 1 columns."""
    per_method = aggregate_by_method(rows)
    columns = task_columns(rows)
    paired = {base: paired_differences(rows, base, PAIRED_KEYS) for base in PAIRED_BASELINES if base in per_method}
    summary = {"setting": {**setting, "methods": list(per_method), "seeds": sorted({r["seed"] for r in rows}),
                           "orders": sorted({r["order"] for r in rows if r.get("order") is not None}),
                           "total_run_seconds": round(sum(r["seconds"] for r in rows))},
               "methods": per_method, **{f"paired_vs_{base}": diffs for base, diffs in paired.items()},
               "runs": rows, "environment": environment()}
    timing = timing_by_method(rows)
    if timing:
        summary["timing"] = timing
    if columns:
        summary["tasks"] = columns
        if checks:
            summary["targets"] = checks(columns)
    text = [f"# {setting['config']}", "", f"Overrides: {setting['overrides'] or 'none'}. Cells: "
            f"{len({(r.get('order'), r['seed']) for r in rows})}; runs: {len(rows)}.", "",
            "Mean ± std over the cells (scores in %; LA: learning accuracy; F: forgetting from the best score; AP: "
            "average over stages; `–` where a method has one joint stage).", "", method_table(per_method)]
    for base, diffs in paired.items():
        if diffs:
            text += ["", f"Difference from `{base}` on the same (order, seed) cell, mean ± standard error over the "
                     "cells (beyond about 2 standard errors a difference is unlikely to be noise):", "",
                     paired_table(diffs, base)]
    if columns:
        text += ["", "Task 0 and Task 1 (%), and Task 0 during Task 1 at the given steps:", "", task_table(columns)]
        if summary.get("targets"):
            text += ["", "Targets: " + ", ".join(f"{k} {'PASS' if v else 'FAIL'}" for k, v in summary["targets"].items())]
    if timing:
        text += ["", "Seconds per run and phase (mean over the method's runs that recorded phase timings — older runs "
                 "did not, so a total may differ from the \"seconds / run\" above; pretrain: 0 when the cached "
                 "checkpoint was used):", "", timing_table(timing)]
    if discussion:
        text += ["", discussion.rstrip()]
    out.parent.mkdir(parents=True, exist_ok=True)
    write_json(out, summary)
    atomic_write_text(out.with_suffix(".md"), "\n".join(text) + "\n")
    plots = grid_plots(out, per_method, columns, setting)
    echo(f"wrote {out}, {out.with_suffix('.md').name}" + "".join(f", {p.name}" for p in plots))
    return summary


def grid_plots(out: Path, per_method: dict, columns: dict | None, setting: dict) -> list[Path]:
    """<out>_methods.png (OP and BWT per method, ± std) and, for two-task runs with a curve, <out>_curve.png (Task 0
    during Task 1, every method on one figure). Written to a temporary name, then renamed into place."""
    done = []
    jobs = [(out.with_name(out.stem + "_methods.png"), lambda p: plot_methods(p, per_method, setting["config"]))]
    if columns and any(c["curve"] for c in columns.values()):
        jobs.append((out.with_name(out.stem + "_curve.png"), lambda p: plot_curves(p, columns, setting["config"])))
    for path, plot in jobs:
        tmp = path.with_name(f".{path.stem}.tmp.png")
        plot(tmp)
        tmp.replace(path)
        done.append(path)
    return done


# ---------------------------------------------------------------------------- running

def run_grid(grid: Grid, out: Path, runs: Path | None = None, resume: bool = False, discussion: str = "",
             echo: Callable[[str], None] = print, checks: Callable[[dict], dict] | None = None,
             folder_per_method: bool = False, workers: int = 1) -> dict:
    """Run every cell of ``grid`` not already in ``out`` (with ``resume``); rewrite ``out`` after each run. Run
    folders are ``runs``/[order<o>-]seed<s>-<method>, or ``runs``/<method> with ``folder_per_method`` (a comparison
    of one seed). ``workers`` > 1: that many runs at once, each in its own process (``run_in_workers``)."""
    if workers < 1:
        raise ConfigError(f"--workers {workers}: must be at least 1")
    setting = grid.setting()
    done: list[dict] = []
    if out.exists():
        if not resume:
            raise ConfigError(f"--out {out}: exists; pass --resume to add to it, or choose another file")
        done = read_results(out, setting)[1]
    have = {cell_key(r) for r in done}
    todo = [c for c in grid.cells() if c not in have]
    # A bad override, config or method parameter stops here, before hours of runs, not at the run it breaks.
    configs = {c: grid.config(*c) for c in todo}
    for cfg in configs.values():
        configured_method(cfg)
    root = Path(runs).resolve() if runs is not None else Path(tempfile.mkdtemp(prefix="clm-grid-"))
    folder_of = {c: root / (folder_safe(c[2]) if folder_per_method else label(*c)) for c in todo}
    finished = {c for c, folder in folder_of.items() if (folder / "metrics.json").exists()}
    for cell in sorted(finished, key=str):
        if not resume or not same_config(folder_of[cell], configs[cell]):
            raise ConfigError(f"{folder_of[cell]}: holds a finished run that {out} does not list"
                              + ("" if not resume else " and whose config.yaml is not this cell's")
                              + "; choose another --runs" + ("" if resume else ", or pass --resume to adopt it"))
    echo(f"run folders: {root}")
    rows = list(done)
    summary: dict = {}

    def add(cell: tuple, record: RunRecord, folder: Path, seconds: float) -> None:
        nonlocal summary
        order, seed, method = cell
        row = grid_row(record, folder, order, seed, method, seconds)
        row["method_params"] = record.method_params or configured_method(configs[cell]).params.model_dump(mode="json")
        rows.append(row)
        summary = summarise(sort_rows(rows, grid.methods), setting, out, discussion, lambda line: None, checks)

    if workers > 1 and len(todo) > 1:
        run_in_workers(todo, configs, folder_of, finished, resume, workers, add, echo)
    else:
        for cell in todo:
            echo(f"== {label(*cell)} ==")
            add(cell, *run_cell(configs[cell], folder_of[cell], resume, cell in finished))
    if not todo and rows:
        summary = summarise(sort_rows(rows, grid.methods), setting, out, discussion, lambda line: None, checks)
    echo(f"results in {out}")
    return summary


def run_cell(cfg: ExperimentConfig, folder: Path, resume: bool, finished: bool) -> tuple[RunRecord, Path, float]:
    """One cell of a grid: (its record, its folder, its seconds)."""
    started = time.time()
    if finished:  # run before the results file could list it (e.g. the grid was stopped): adopted
        record = RunRecord.read(folder)
        return record, folder, record.seconds
    # A run the grid left unfinished goes on from its resume point; one killed before its first point (or of
    # another config) holds nothing worth keeping and starts again.
    partial = resume and is_unfinished(folder)
    go_on = partial and (folder / RESUME / "state.json").exists() and same_config(folder, cfg)
    if partial and not go_on:
        shutil.rmtree(folder)
    record, folder = run_experiment(cfg, folder, resume=go_on)
    # a resumed run's record counts the time before its interruption too; this process saw only the rest
    return record, folder, record.seconds if go_on else round(time.time() - started, 1)


CONSOLE = "console.log"  # a worker's console output, in its run folder


def _worker_start(threads: int) -> None:
    torch.set_num_threads(threads)


def _worker_cell(cfg: ExperimentConfig, folder: Path, resume: bool, finished: bool) -> tuple[dict, Path, float]:
    """``run_cell`` in a worker process: its console (progress lines, warnings) goes to the run folder's console.log,
    so that two runs' output does not interleave on the terminal."""
    import contextlib
    folder.mkdir(parents=True, exist_ok=True)
    # tqdm and warnings write to sys.stderr, which redirect_stderr replaces for the run
    with open(folder / CONSOLE, "a", encoding="utf-8") as console, \
            contextlib.redirect_stdout(console), contextlib.redirect_stderr(console):
        record, folder, seconds = run_cell(cfg, folder, resume, finished)
    return record.to_json(), folder, seconds


def run_in_workers(todo: list[tuple], configs: dict, folder_of: dict, finished: set, resume: bool, workers: int,
                   add: Callable, echo: Callable[[str], None]) -> None:
    """Run the cells ``todo`` in ``workers`` processes of cpu_count / workers threads each (spawned: a forked torch
    can deadlock), adding each run's row as it finishes. A pre-training the cells share is done (or found in the
    cache) first, once, here: the workers then all read the cached checkpoint."""
    from concurrent.futures import FIRST_EXCEPTION, ProcessPoolExecutor, wait
    from multiprocessing import get_context

    from .setup import ensure_pretrained
    for cfg in configs.values():
        seconds = ensure_pretrained(cfg)
        if seconds:
            echo(f"pre-trained in {seconds:.0f} s (cached for every run)")
    threads = max(1, (os.cpu_count() or 1) // workers)
    echo(f"{len(todo)} runs in {workers} processes of {threads} thread(s); each run's console: <run folder>/{CONSOLE}")
    with ProcessPoolExecutor(workers, mp_context=get_context("spawn"), initializer=_worker_start,
                             initargs=(threads,)) as pool:
        futures = {pool.submit(_worker_cell, configs[c], folder_of[c], resume, c in finished): c for c in todo}
        pending = set(futures)
        while pending:
            done, pending = wait(pending, return_when=FIRST_EXCEPTION)
            for future in done:
                cell = futures[future]
                error = future.exception()
                if error is not None:
                    for other in pending:
                        other.cancel()
                    raise error
                record_json, folder, seconds = future.result()
                record = RunRecord(**record_json)
                echo(f"== {label(*cell)} == OP {record.op:.1f}, {seconds:.0f} s")
                add(cell, record, folder, seconds)


def same_config(folder: Path, cfg: ExperimentConfig) -> bool:
    """Whether a run folder's config.yaml is ``cfg`` up to its name and other methods' ``method_params`` (read
    through today's config model, so that settings added since the run was made take their defaults; a parameter
    of a method the run did not use cannot have changed it)."""
    try:
        theirs = parse_config(read_config(folder), str(folder / "config.yaml"))
    except ContinualLMError:
        return False

    def effective(c: ExperimentConfig) -> tuple[dict, dict]:
        # paths compared resolved (a run records them absolute), parameters with their defaults (a run records them
        # so, and older runs only the ones set); threads are the machine's business, as in NOT_POOLED
        dumped = absolute_paths(c).model_dump(mode="json", exclude={"name": True, "method_params": True,
                                                                    "method": {"params"}, "training": {"num_threads"}})
        return dumped, configured_method(c).params.model_dump(mode="json")
    try:
        if effective(theirs) != effective(cfg):
            return False
    except ContinualLMError:  # parameters an older run had that today's method refuses
        return False
    # A finished run also says which parameters its method ran with, defaults included: a default changed since.
    used = RunRecord.read(folder).method_params if (folder / "metrics.json").exists() else None
    return used is None or used == configured_method(cfg).params.model_dump(mode="json")


def grid_row(record: RunRecord, folder: Path, order: int | None, seed: int, method: str, seconds: float) -> dict:
    """A run's row in a results file: its summary (with ``method`` the grid's label), where it is, its matrix."""
    record = RunRecord(**{**record.to_json(), "method": method, "seconds": seconds})
    return {**summary_row(folder.name, record), "experiment": record.name, "folder": str(folder), "order": order,
            "seed": seed,
            "tasks": record.tasks, "acc_matrix": record.acc_matrix, "initial": record.initial, "curve": record.curve,
            "method_report": record.method_report, "timing": record.timing}
