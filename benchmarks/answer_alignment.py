"""Where a grid's forgotten answers go: the old tasks' answers after the last task, sorted per method into correct,
another label of the task's own, a label of another task (lost task alignment; ``analysis/answers.py``) and other
answers, with the part of those that begin like another task's label (a generative model's garbled labels).

Reads the run folders a grid's results file lists (they must still exist); trains nothing.

    python benchmarks/answer_alignment.py benchmarks/results/standard_cl.json [MORE.json ...] [--out FILE]
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

from continual_lm.analysis.answers import answer_table_markdown, grid_answer_alignment
from continual_lm.analysis.run_loader import load_run
from continual_lm.errors import ContinualLMError, DataError
from continual_lm.experiments.benchmark import write_results
from continual_lm.experiments.grid import read_results
from continual_lm.reporting.run_folder import atomic_write_text

RESULTS = Path(__file__).resolve().parent / "results"


def grid_runs(results_files: list[Path]) -> list[tuple[str, Path]]:
    """(method, folder) of every run the results files list; the files must share one setting."""
    runs, setting = [], None
    for path in results_files:
        theirs, rows = read_results(path, setting)
        setting = setting or theirs
        for row in rows:
            folder = Path(row["folder"])
            if not (folder / "metrics.json").exists():
                raise DataError(f"{path}: run {row['run']}: its folder {folder} is gone (re-run the grid with --runs)")
            runs.append((row["method"], folder))
    return runs


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("results", type=Path, nargs="+", help="a grid's results JSON (its runs' folders are read)")
    p.add_argument("--out", type=Path, default=RESULTS / "answer_alignment.json")
    args = p.parse_args(argv)
    try:
        runs = grid_runs(args.results)
        grid = grid_answer_alignment(runs, lambda folder: load_run(folder).task_labels())
    except ContinualLMError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    write_results(args.out, {"sources": [str(p) for p in args.results], **grid})
    atomic_write_text(args.out.with_suffix(".md"), "# Where old tasks' answers go after the last task\n\n"
                      f"From {', '.join(p.name for p in args.results)}: mean over runs of the share (%) of old tasks' "
                      "test answers after the last task. The last column is a part of *other*: answers whose first "
                      "word is the first word of another task's label and of none of the task's own (\"Science\" "
                      "for a dbpedia input).\n\n" + answer_table_markdown(grid))
    return 0


if __name__ == "__main__":
    sys.exit(main())
