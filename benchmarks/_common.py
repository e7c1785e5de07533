"""Shared helpers of the benchmark scripts: argument parsing, mean ± std, JSON output."""
from __future__ import annotations

import argparse
import json
import platform
import statistics
import time
from pathlib import Path

import torch

RESULTS = Path(__file__).resolve().parent / "results"
SHARED_DATA = Path(__file__).resolve().parents[2] / "shared" / "data"


def parser(description: str, default_out: str) -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=description)
    p.add_argument("--out", type=Path, default=RESULTS / default_out, help="where to write the JSON results")
    p.add_argument("--quick", action="store_true", help="a reduced run of a few minutes")
    p.add_argument("--threads", type=int, default=2, help="torch.set_num_threads")
    return p


def add_seeds_argument(p: argparse.ArgumentParser, default: str = "0,1,2", quick: str = "0") -> None:
    p.add_argument("--seeds", default=None, help=f"comma-separated seeds (default {default}; --quick: {quick})")
    p.set_defaults(_seeds_default=default, _seeds_quick=quick)


def seeds_from(args: argparse.Namespace) -> list[int]:
    text = args.seeds or (args._seeds_quick if args.quick else args._seeds_default)
    return [int(s) for s in text.split(",")]


def mean_std(values: list[float]) -> dict:
    return {"mean": round(statistics.fmean(values), 2), "std": round(statistics.pstdev(values), 2) if len(values) > 1 else 0.0,
            "n": len(values)}


def environment() -> dict:
    return {"torch": torch.__version__, "threads": torch.get_num_threads(), "cpu": platform.processor() or platform.machine(),
            "cuda": torch.cuda.is_available(), "date": time.strftime("%Y-%m-%d %H:%M")}


def write_results(path: Path, data: dict) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_text(json.dumps(data, indent=2) + "\n")
    tmp.replace(path)
    print(f"wrote {path}")
