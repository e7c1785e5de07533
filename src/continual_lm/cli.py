"""``continual-lm``: run experiments and grids, list methods, compare and analyse runs.

    continual-lm run                         the default experiment (Biography, spurious forgetting)
    continual-lm run --config FILE [--set k=v ...] [--out DIR] [--methods a,b] [--workers N]
    continual-lm grid CONFIG [--methods a,b] [--orders 1,2,3] [--seeds 0,1,2] [--set k=v ...] [--runs DIR]
                             [--resume] [--workers N] [--out FILE]
    continual-lm grid --merge FILE ... --out FILE
    continual-lm list [--verbose]            registered methods (and their typed parameters)
    continual-lm models [--verbose]          named pretrained models (model.path: NAME) and whether each is installed
    continual-lm compare DIR [DIR ...]       OP / BWT / FWT / LA / F / AP of finished runs, as a table
    continual-lm analyze RUN [--what ...]    recovery, update angles, loss landscape, Fisher vs angle, answers
"""
from __future__ import annotations

import argparse
import logging
import os
import sys
from pathlib import Path

from .errors import ContinualLMError


def _quiet_libraries() -> None:
    import warnings

    import transformers
    transformers.logging.set_verbosity_error()
    transformers.utils.logging.disable_progress_bar()
    # peft asks transformers a deprecated question on every model it wraps; nothing for a user to act on
    warnings.filterwarnings("ignore", message=".*is_gradient_checkpointing.* is deprecated", category=FutureWarning)
    # DDP is built with find_unused_parameters=True because some methods freeze parameters mid-run; on a stage where
    # none is unused every rank says so, which is expected here
    warnings.filterwarnings("ignore", message=".*find_unused_parameters=True was specified.*")


def cmd_run(args: argparse.Namespace) -> int:
    from .config import load_config
    from .experiments.runner import resume_experiment, run_experiment
    from .experiments.spurious import default_config_path, run_default_experiment
    from .reporting.report import run_report

    if args.resume:
        record, folder = resume_experiment(args.resume)
        report(run_report(record), f"run folder: {folder}")
        return 0

    from .experiments.benchmark import method_entries
    methods = method_entries(args.methods) if args.methods else None
    cfg = load_config(args.config or default_config_path(), args.set)
    if args.config is None or (methods and cfg.data.benchmark == "biography"):
        run_default_experiment(args.out, cfg, methods, workers=args.workers)
        return 0
    if methods:  # one run per method, then the comparison table
        from .experiments.grid import grid_from_config, run_grid
        from .reporting.report import comparison_table
        from .reporting.run_folder import default_run_dir
        root = Path(args.out or default_run_dir(cfg.name))
        summary = run_grid(grid_from_config(cfg, methods), root / "summary.json", runs=root, folder_per_method=True,
                           workers=args.workers)
        print(comparison_table(summary["runs"]))
        return 0
    record, folder = run_experiment(cfg, args.out)
    report(run_report(record), f"run folder: {folder}")
    return 0


def report(*lines: str) -> None:
    """Print a run's report once: under torchrun only rank 0 speaks (every rank holds the same numbers)."""
    if int(os.environ.get("RANK", "0")) == 0:
        print("\n".join(lines))


def cmd_grid(args: argparse.Namespace) -> int:
    from .errors import ConfigError
    from .experiments.benchmark import ints, method_entries
    from .experiments.grid import grid_from_file, merge_runs, run_grid, summarise

    if args.out is None:
        raise ConfigError("grid: --out FILE is required (the results file)")
    if args.merge:
        if args.config is not None:
            raise ConfigError("grid --merge: give results files, not a config")
        setting, rows = merge_runs(args.merge, echo=lambda line: print(line, file=sys.stderr))
        summarise(rows, setting, args.out)
        return 0
    if args.config is None:
        raise ConfigError("grid: give a CONFIG (or --merge FILE ...)")
    methods = method_entries(args.methods) if args.methods else ["seq"]
    grid = grid_from_file(args.config, methods, ints(args.seeds) or [0], ints(args.orders), args.overrides,
                          args.threads)
    run_grid(grid, args.out, args.runs, args.resume, workers=args.workers)
    return 0


def cmd_list(args: argparse.Namespace) -> int:
    from .methods import METHODS
    from .methods.base import describe_params, method_summary, methods_markdown

    if args.markdown:  # the README's table is this output (a test keeps them equal)
        print(methods_markdown())
        return 0
    width = max(len(n) for n in METHODS)
    for name, cls in sorted(METHODS.items()):
        print(f"{name:<{width}}  {method_summary(cls)}")
        if args.verbose:
            for line in describe_params(cls):
                print(" " * (width + 4) + line)
    return 0


def cmd_models(args: argparse.Namespace) -> int:
    from .models.named import models_table

    rows = models_table()
    width = max(len(r["name"]) for r in rows)
    for r in rows:
        state = f"installed ({r['package']} {r['version']})" if r["installed"] else f"not installed: {r['install']}"
        print(f"{r['name']:<{width}}  {r['kind']:<7}  {state}")
        if args.verbose:
            print(" " * (width + 2) + f"{r['description']}; LoRA targets {', '.join(r['target_modules'])}")
    return 0


def run_folders(paths: list[Path]) -> list[Path]:
    """The run folders among ``paths``: a folder of runs (a grid's --runs, a run --methods folder) stands for the
    runs in it; an unfinished run is skipped with a warning."""
    found = []
    for path in map(Path, paths):
        if not (path / "metrics.json").exists() and path.is_dir() and not (path / "config.yaml").exists():
            inside = sorted(p for p in path.iterdir() if (p / "metrics.json").exists() or (p / "config.yaml").exists())
            if inside:
                found += inside
                continue
        found.append(path)
    finished = []
    for path in found:
        if (path / "metrics.json").exists():
            finished.append(path)
        else:
            print(f"warning: {path}: not a finished run (no metrics.json); left out", file=sys.stderr)
    return finished


def cmd_compare(args: argparse.Namespace) -> int:
    from .errors import ConfigError
    from .reporting.report import (PAIRED_KEYS, aggregate_by_method, comparison_table, method_table,
                                   paired_differences, paired_table, summary_row)
    from .methods import method_label
    from .reporting.run_folder import RunRecord, run_method_params, run_seed

    folders = run_folders(args.runs)
    if not folders:
        raise ConfigError("compare: none of the folders given holds a finished run")
    rows, cells = [], {}
    for d in folders:
        record = RunRecord.read(d)
        # two variants of a method are two methods here, named as a grid names them
        method = method_label(record.method, run_method_params(d, record))
        rows.append({**summary_row(d.name, record), "method": method, "experiment": record.name,
                     "task_set": tuple(sorted(record.tasks))})
        if args.paired:  # runs pair up when they saw the same task sequence with the same seed
            rows[-1].update(sequence=tuple(record.tasks), seed=run_seed(d))
            key = (method, rows[-1]["sequence"], rows[-1]["seed"])
            if key in cells:
                raise ConfigError(f"--paired: {cells[key]} and {d} are both {method} on the same task order "
                                  "and seed; compare one of them")
            cells[key] = d
    if args.by_method or args.paired:  # pooling runs of other tasks into one row would mean nothing
        task_sets = list(dict.fromkeys(r["task_set"] for r in rows))
        if len(task_sets) > 1:
            raise ConfigError(f"compare: the runs are of different task sets ({list(task_sets[0])} and "
                              f"{list(task_sets[1])}); compare each experiment's runs apart")
    print(method_table(aggregate_by_method(rows)) if args.by_method or args.paired else comparison_table(rows))
    if args.paired:
        if not any(r["method"] == args.paired for r in rows):
            raise ConfigError(f"--paired {args.paired}: no run of that method among the runs given")
        diffs = paired_differences(rows, args.paired, PAIRED_KEYS, pair=("sequence", "seed"))
        if not diffs:
            print(f"\nNo other method ran on the task order and seed of a {args.paired} run: nothing to pair.")
            return 0
        print(f"\nDifference from {args.paired} on the same task order and seed, mean ± standard error:\n")
        print(paired_table(diffs, args.paired))
    return 0


def cmd_analyze(args: argparse.Namespace) -> int:
    from .analysis.analyze import ANALYSES, analyze
    from .analysis.answers import ANSWER_KINDS, NEAR_OTHER_TASK_LABEL
    from .config import RecoverySettings

    what = list(ANALYSES) if args.what == "all" else args.what.split(",")
    recovery = RecoverySettings(steps=args.recovery_steps, n_examples=args.recovery_examples)
    results = analyze(args.run, what, args.split, args.energy, args.grid, args.examples, recovery)
    for name, result in results.items():
        if name == "recovery":
            if result["never_learnt"]:
                print(f"recovery  warning: {result['old_task']} was never learnt ({result['after_own_training']:.1f} "
                      f"after its own training, {result['initial']:.1f} untrained): its 'recovery' is learning, not "
                      "recovering")
            for p in result["points"]:
                print(f"recovery  step {p['step']}: {p['before']:.1f} -> {p['after_recovery']:.1f}")
        elif name == "fisher":
            print(f"fisher    Pearson r(Fisher, angle) = {result['pearson']}")
        elif name == "answers" and "final_old" in result:
            old = result["final_old"]
            print(f"answers   old tasks after {old['stage']}: " + ", ".join(
                f"{kind.replace('_', ' ')} {old[kind]:.1f}%" for kind in ANSWER_KINDS)
                + f" (of which {old[NEAR_OTHER_TASK_LABEL]:.1f}% begin like another task's label)")
        elif name == "answers":  # say why there is nothing to show
            print(f"answers   nothing sorted: {result['no_old_tasks']}")
        else:
            print(f"{name:9} written")
    print(f"results in {Path(args.run) / 'analysis'}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    from .experiments.benchmark import add_grid_arguments

    parser = argparse.ArgumentParser(prog="continual-lm", description="Continual learning of language models.")
    parser.add_argument("-v", "--verbose", action="store_true", help="log at INFO level")
    from . import __version__
    parser.add_argument("--version", action="version", version=f"continual-lm {__version__}")
    sub = parser.add_subparsers(dest="command", required=True)
    run = sub.add_parser("run", help="run an experiment (no --config: the default Biography experiment)")
    run.add_argument("--config", type=Path, help="experiment YAML")
    run.add_argument("--out", type=Path, help="output folder (default runs/<name>-<time>)")
    run.add_argument("--methods", help="comma-separated methods: one run each, with a summary table")
    run.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="override a config key")
    run.add_argument("--workers", type=int, default=1, metavar="N",
                     help="with several methods: N runs at once, each in its own process of cores/N threads")
    run.add_argument("--resume", type=Path, metavar="RUN_DIR",
                     help="continue an interrupted run from its last resume point, with the config it recorded")
    run.set_defaults(func=cmd_run)
    grid = sub.add_parser("grid", help="run a grid of methods × orders × seeds, resumable and mergeable")
    grid.add_argument("config", type=Path, nargs="?", help="experiment YAML")
    grid.add_argument("--out", type=Path, help="results file (JSON; a markdown summary is written beside it)")
    add_grid_arguments(grid)
    grid.set_defaults(func=cmd_grid)
    lst = sub.add_parser("list", help="list the registered methods")
    lst.add_argument("--verbose", action="store_true", help="show each method's parameters")
    lst.add_argument("--markdown", action="store_true", help="the methods as a markdown table (as in the README)")
    lst.set_defaults(func=cmd_list)
    models = sub.add_parser("models", help="named pretrained models (model.path: NAME) and whether each is installed")
    models.add_argument("--verbose", action="store_true", help="describe each model")
    models.set_defaults(func=cmd_models)
    cmp_ = sub.add_parser("compare", help="compare finished runs")
    cmp_.add_argument("runs", nargs="+", help="run folders")
    cmp_.add_argument("--by-method", action="store_true", help="one row per method: mean ± std over its runs")
    cmp_.add_argument("--paired", metavar="METHOD", help="also each method's difference from METHOD on the same "
                      "task order and seed (mean ± standard error); implies --by-method")
    cmp_.set_defaults(func=cmd_compare)
    ana = sub.add_parser("analyze", help="spurious-forgetting analyses of a finished run")
    ana.add_argument("run", type=Path, help="run folder (all but answers need checkpoint_steps in its config)")
    ana.add_argument("--what", default="all",
                     help="comma-separated: recovery, angles, landscape, fisher, answers (or all)")
    ana.add_argument("--split", type=int, help="checkpoint step separating early and later updates of the second stage")
    ana.add_argument("--energy", type=float, default=0.99, help="spectral energy kept in the top singular subspace")
    ana.add_argument("--grid", type=int, default=21, help="loss-landscape grid size")
    ana.add_argument("--examples", type=int, default=64, help="examples per loss evaluation in the landscape")
    ana.add_argument("--recovery-steps", type=int, default=20,
                     help="recovery: fine-tuning steps on each old task (the forgetting that comes back is spurious)")
    ana.add_argument("--recovery-examples", type=int, default=64,
                     help="recovery: training examples of the old task those steps use")
    ana.set_defaults(func=cmd_analyze)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING, format="%(message)s")
    _quiet_libraries()
    try:
        return args.func(args)
    except ContinualLMError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:  # outside a run's training (loading, pre-training, evaluation): no point written there
        print("error: interrupted before a resume point was written; run the same command again to start it over "
              "(the default experiment keeps the methods that finished)", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
