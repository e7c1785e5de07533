"""Running a real-data CL benchmark grid (orders × seeds × methods) from a config, and summarising it.

The results file is rewritten after every finished run, so an interrupted grid keeps what it finished;
``--resume`` skips the runs a results file already holds, and ``--merge`` combines the files of grids run
separately (e.g. orders on different machines or in parallel processes) into one summary.
"""
from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

from _common import SHARED_DATA, environment, write_results

from continual_lm.config import ExperimentConfig, load_config
from continual_lm.errors import ConfigError
from continual_lm.experiments.runner import configured_method, run_experiment
from continual_lm.methods import split_method_spec
from continual_lm.reporting.report import (PAIRED_KEYS, aggregate_by_method, method_table, paired_differences,
                                          paired_table, summary_row)

CONFIGS = Path(__file__).resolve().parents[1] / "configs"
ALL_METHODS = ["seq", "inc_lora", "replay", "ewc", "o_lora", "tasl", "migu", "vr_mcl", "recurrent_kif",
               "recurrent_kif:reference_code", "mtl"]
# Results can only be pooled when these settings agree.
POOLED_KEYS = ("benchmark", "backbone", "label_space", "n_train", "n_test", "epochs", "overrides")


def method_overrides(spec: str) -> list[str]:
    """A grid's method entry (a name, or NAME:VARIANT, e.g. recurrent_kif:reference_code) as config overrides; the
    entry is the method's label in the results."""
    name, params = split_method_spec(spec)
    return [f"method.name={name}"] + [f"method.params.{k}={v}" for k, v in params.items()]


def add_grid_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--resume", action="store_true", help="keep the runs already in --out (same settings), run the rest")
    p.add_argument("--merge", type=Path, nargs="+", default=None, metavar="FILE",
                   help="run nothing: combine these results files (same settings) into --out")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", dest="overrides",
                   help="override a key of the benchmark's config in every run (e.g. "
                        "method_params.recurrent_kif.top_fraction=0.5); recorded in the results' setting")
    p.add_argument("--runs", type=Path, default=None, metavar="DIR",
                   help="where the run folders go (default: a new temporary folder); "
                        "`continual-lm compare --paired seq DIR/*` tabulates them")


def run_key(row: dict) -> tuple:
    return row["order"], row["seed"], row["method"]


def sort_rows(rows: list[dict]) -> list[dict]:
    rank = {m: i for i, m in enumerate(ALL_METHODS)}
    return sorted(rows, key=lambda r: (r["order"], r["seed"], rank.get(r["method"], len(rank)), r["method"]))


def read_runs(path: Path, setting: dict) -> list[dict]:
    """The runs of a results file whose settings match ``setting`` on POOLED_KEYS (else a one-line exit)."""
    try:
        data = json.loads(path.read_text())
        theirs, runs = data["setting"], data["runs"]
    except (OSError, ValueError, KeyError, TypeError) as e:
        sys.exit(f"error: {path}: not a benchmark results file ({type(e).__name__}: {e})")
    for key in POOLED_KEYS:
        if theirs.get(key) != setting.get(key):
            sys.exit(f"error: {path}: setting {key!r} is {theirs.get(key)!r}, not {setting.get(key)!r}; "
                     "results with different settings cannot be pooled")
    return runs


def merge_runs(files: list[Path], setting: dict) -> list[dict]:
    """The runs of ``files``, pooled. An (order, seed) cell that lacks some of the methods (a grid still running or
    cut short) is left out, so that every method is averaged over the same cells."""
    rows: dict[tuple, dict] = {}
    for path in files:
        for row in read_runs(path, setting):
            if run_key(row) in rows:
                sys.exit(f"error: {path}: run order {row['order']} seed {row['seed']} {row['method']} "
                         "is also in an earlier file")
            rows[run_key(row)] = row
    methods = {r["method"] for r in rows.values()}
    cells: dict[tuple, set] = {}
    for order, seed, method in rows:
        cells.setdefault((order, seed), set()).add(method)
    for (order, seed), present in sorted(cells.items()):
        if present != methods:
            print(f"left out order {order} seed {seed}: no run of {', '.join(sorted(methods - present))}",
                  file=sys.stderr)
    return sort_rows([r for k, r in rows.items() if cells[k[:2]] == methods])


def run_grid(config: str, orders: list[int], seeds: list[int], methods: list[str], overrides: list[str],
             threads: int, save, done: list[dict] = (), runs: Path | None = None) -> list[dict]:
    """Run every (order, seed, method) not in ``done`` into a folder under ``runs``; ``save(rows)`` after each."""
    rows = list(done)
    have = {run_key(r) for r in rows}
    todo = [(o, s, m) for o in orders for s in seeds for m in methods if (o, s, m) not in have]
    root = runs.resolve() if runs is not None else Path(tempfile.mkdtemp(prefix="clm-cl-"))

    def folder_of(order: int, seed: int, method: str) -> Path:
        return root / f"order{order}-seed{seed}-{method.replace(':', '-')}"

    def config_of(order: int, seed: int, method: str) -> ExperimentConfig:
        return load_config(CONFIGS / config, [f"data.data_dir={SHARED_DATA / 'cl_benchmark'}", f"data.order={order}",
                                              f"seed={seed}", *method_overrides(method),
                                              f"training.num_threads={threads}", *overrides])

    try:  # a bad override, config or method parameter stops here, before hours of runs, not at the run it breaks
        configs = {key: config_of(*key) for key in todo}
        for cfg in configs.values():
            configured_method(cfg)
    except ConfigError as e:
        sys.exit(f"error: {e}")
    for folder in (folder_of(*key) for key in todo):
        if (folder / "metrics.json").exists():
            sys.exit(f"error: {folder}: holds a finished run that the results file does not list; "
                     "pass that results file with --resume, or choose another --runs")
    print(f"run folders: {root}", file=sys.stderr)
    for order, seed, method in todo:
        cfg = configs[order, seed, method]
        folder = folder_of(order, seed, method)
        started = time.time()
        result, _ = run_experiment(cfg, folder)
        seconds = round(time.time() - started, 1)
        rows.append({**summary_row(folder.name, {"method": method, **result.to_json(), "seconds": seconds}),
                     "folder": str(folder), "order": order, "seed": seed, "threads": threads,
                     "tasks": result.tasks, "acc_matrix": result.acc_matrix, "initial": result.initial})
        print(json.dumps({k: rows[-1][k] for k in ("run", "op", "bwt", "fwt", "la", "f", "ap", "seconds")}), flush=True)
        save(sort_rows(rows))
    return sort_rows(rows)


def summarise(rows: list[dict], setting: dict, out: Path, discussion: str) -> None:
    """Write ``out`` (JSON: setting, per-method mean ± std, every run) and its markdown table (``out`` .md)."""
    rows = [{**r, **summary_row(r["run"], r)} for r in rows]  # (re)computes LA for runs recorded before it was
    per_method = aggregate_by_method(rows)
    setting = {**setting, "orders": sorted({r["order"] for r in rows}), "seeds": sorted({r["seed"] for r in rows}),
               "cells": sorted({(r["order"], r["seed"]) for r in rows}), "methods": list(per_method),
               "runs_per_method": {m: s["runs"] for m, s in per_method.items()},
               "total_run_seconds": round(sum(r["seconds"] for r in rows))}
    table = method_table(per_method)
    paired = paired_differences(rows, "seq", PAIRED_KEYS) if "seq" in per_method else {}
    if paired:
        table += ("\n\nDifference from `seq` on the same (order, seed) cell, mean ± standard error over the cells "
                  "(pairing removes what an order or a seed does to every method; beyond about 2 standard errors a "
                  f"difference is unlikely to be noise):\n\n{paired_table(paired, 'seq')}")
    write_results(out, {"setting": setting, "methods": per_method, "paired_vs_seq": paired, "runs": rows,
                        "environment": environment()})
    md = out.with_suffix(".md")
    tmp = md.with_suffix(".md.tmp")
    tmp.write_text(f"# {setting['benchmark']}\n\n{json.dumps(setting)}\n\n"
                   "Mean ± std over orders and seeds (scores in %; LA = learning accuracy, the mean score of each "
                   "task right after its own training; BWT/FWT/LA are `–` for `mtl`, which has one joint "
                   f"stage).\n\n{table}\n\n{discussion}\n", encoding="utf-8")
    tmp.replace(md)
    print(table)
    print(f"wrote {md}")


def run_or_merge(args: argparse.Namespace, config: str, orders: list[int], seeds: list[int], methods: list[str],
                 overrides: list[str], setting: dict, discussion: str) -> None:
    """The shared main of the grid benchmarks: --merge, or run the grid (after --resume) writing as it goes."""
    if args.overrides:  # results with other overrides are not pooled with these (POOLED_KEYS)
        setting = {**setting, "overrides": args.overrides}
        overrides = [*overrides, *args.overrides]
        discussion = ""  # the discussion file reads the default grid, not this variant

    def save(rows: list[dict]) -> None:
        summarise(rows, setting, args.out, discussion)
    if args.merge:
        save(merge_runs(args.merge, setting))
        return
    done = read_runs(args.out, setting) if args.resume and args.out.exists() else []
    rows = run_grid(config, orders, seeds, methods, overrides, args.threads, save, done, args.runs)
    if rows:
        save(rows)
