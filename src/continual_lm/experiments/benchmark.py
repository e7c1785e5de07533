"""What every benchmark script shares: a grid preset (config, axes, a --quick variant) behind one command line.

    python benchmarks/<name>.py [--quick] [--out FILE] [--threads N] [--methods a,b] [--orders 1,2] [--seeds 0,1]
                                [--set KEY=VALUE ...] [--runs DIR] [--resume] [--merge FILE ...]

A script names its preset and calls ``grid_benchmark``; its results go to ``benchmarks/results/<out>`` (JSON and
markdown) unless ``--out`` says otherwise.
"""
from __future__ import annotations

import argparse
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from ..errors import ContinualLMError


@dataclass
class Preset:
    config: Path
    out: str                                  # results file name
    methods: list[str]
    seeds: list[int]
    orders: list[int] | None = None
    overrides: list[str] = field(default_factory=list)
    quick: dict = field(default_factory=dict)  # replacements of the fields above for --quick
    discussion: str | None = None              # a markdown file beside the results, appended to the summary


def add_grid_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--methods", help="comma-separated method entries: NAME, NAME:VARIANT or NAME(KEY=VALUE,...)")
    p.add_argument("--orders", help="comma-separated task orders (benchmarks with orders)")
    p.add_argument("--seeds", help="comma-separated seeds")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", dest="overrides",
                   help="override a config key in every run (recorded in the results' setting)")
    p.add_argument("--runs", type=Path, help="where the run folders go (default: a new temporary folder)")
    p.add_argument("--resume", action="store_true", help="keep the runs --out already holds, run the rest")
    p.add_argument("--merge", type=Path, nargs="+", metavar="FILE",
                   help="run nothing: pool these results files (same setting) into --out")
    p.add_argument("--threads", type=int, help="torch threads per run (two 1-thread grids beat one 2-thread on 2 cores)")
    p.add_argument("--workers", type=int, default=1, help="runs at once, each in its own process (default 1)")


class ScriptParser(argparse.ArgumentParser):
    """Arguments of a measurement script: ``--out`` defaults to ``results/<name>.json``, and with ``--quick`` to
    ``results/<name>_quick.json``, so that a quick run never overwrites the full results."""

    def __init__(self, doc: str, default_out: Path):
        super().__init__(description=doc.splitlines()[0])
        self.default_out = default_out
        self.add_argument("--out", type=Path, help=f"where to write the JSON results (default {default_out}; "
                          f"--quick: {quick_path(default_out)})")
        self.add_argument("--quick", action="store_true", help="a reduced run of a few minutes")
        self.add_argument("--threads", type=int, default=2, help="torch.set_num_threads")

    def parse_args(self, args=None, namespace=None):  # type: ignore[override]
        parsed = super().parse_args(args, namespace)
        if parsed.out is None:
            parsed.out = quick_path(self.default_out) if parsed.quick else self.default_out
        return parsed


def quick_path(path: Path) -> Path:
    return path.with_name(path.stem + "_quick" + path.suffix)


def script_parser(doc: str, results: Path, default_out: str) -> ScriptParser:
    """The arguments of a measurement script that is not a grid (timings): --out, --quick, --threads."""
    return ScriptParser(doc, results / default_out)


def write_results(path: Path, data: dict) -> None:
    """A measurement script's JSON, with the machine it ran on."""
    from ..reporting.run_folder import write_json
    from .grid import environment
    path.parent.mkdir(parents=True, exist_ok=True)
    write_json(path, {**data, "environment": environment()})
    print(f"wrote {path}")


def method_entries(text: str) -> list[str]:
    """Comma-separated method entries, commas inside an entry's parentheses kept: "seq,ewc(a=1,b=2)"."""
    entries, depth, current = [], 0, ""
    for ch in text:
        depth += (ch == "(") - (ch == ")")
        if ch == "," and depth == 0:
            entries.append(current.strip())
            current = ""
        else:
            current += ch
    return [e for e in [*entries, current.strip()] if e]


def ints(text: str | None) -> list[int] | None:
    return None if text is None else [int(x) for x in text.split(",")]


def grid_benchmark(preset: Preset, results: Path, argv: list[str] | None = None,
                   checks: Callable[[dict], dict] | None = None) -> int:
    """Parse the command line, run (or merge) the preset's grid, write its results; 0 on success, 2 on bad input."""
    import torch

    from .grid import grid_from_file, merge_runs, run_grid, sort_rows, summarise
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--quick", action="store_true", help="a reduced grid of a few minutes")
    p.add_argument("--out", type=Path, help=f"results file (default {results / preset.out})")
    add_grid_arguments(p)
    args = p.parse_args(argv)
    chosen = {**preset.__dict__, **(preset.quick if args.quick else {})}
    out = args.out or (quick_path if args.quick else Path)(results / (Path(chosen["out"]).stem + ".json"))
    discussion = ""
    if preset.discussion and not args.quick and not args.overrides and (results / preset.discussion).exists():
        discussion = (results / preset.discussion).read_text(encoding="utf-8")
    try:
        if args.merge:
            setting, rows = merge_runs(args.merge, echo=lambda line: print(line, file=sys.stderr))
            rows = sort_rows(rows, chosen["methods"])  # the preset's order, whatever order the parts came in
            summary = summarise(rows, setting, out, discussion, checks=checks)
        else:
            if args.threads:
                torch.set_num_threads(args.threads)
            grid = grid_from_file(chosen["config"], method_entries(args.methods) if args.methods else chosen["methods"],
                                  ints(args.seeds) or chosen["seeds"], ints(args.orders) or chosen["orders"],
                                  [*chosen["overrides"], *args.overrides], args.threads)
            summary = run_grid(grid, out, args.runs, args.resume, discussion, checks=checks, workers=args.workers)
        for name, ok in summary.get("targets", {}).items():
            print(f"{'PASS' if ok else 'FAIL'}  {name}")
    except ContinualLMError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    return 0
