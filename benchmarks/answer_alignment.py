"""Where a grid's forgotten answers go: the old tasks' answers after the last task, sorted per method into correct,
another label of the task's own, a label of another task (lost task alignment; ``analysis/answers.py``) and other
answers, with the part of those that begin like another task's label (a generative model's garbled labels).

Reads the run folders a grid's results file lists; trains nothing. A run whose folder is gone (run folders do not
outlive their machine) keeps its numbers from the earlier --out file when that sorted it; otherwise it is named under
"Left out".

    python benchmarks/answer_alignment.py benchmarks/results/standard_cl.json [MORE.json ...] [--out FILE]
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

from continual_lm.analysis.answers import answer_table_markdown, grid_answer_alignment
from continual_lm.analysis.run_loader import load_run
from continual_lm.data.loaders import read_json
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
        runs += [(row["method"], Path(row["folder"])) for row in rows]
    return runs


def earlier_result(path: Path) -> dict:
    """The earlier analysis at ``path`` ({} if none): the runs it sorted stand in for folders since gone."""
    if not path.exists():
        return {}
    earlier = read_json(path)
    if not isinstance(earlier, dict):
        raise DataError(f"{path}: expected a JSON object (an earlier answers analysis); move it aside to start afresh")
    return earlier


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("results", type=Path, nargs="+", help="a grid's results JSON (its runs' folders are read)")
    p.add_argument("--out", type=Path, default=RESULTS / "answer_alignment.json")
    args = p.parse_args(argv)
    try:
        runs = grid_runs(args.results)
        grid = grid_answer_alignment(runs, lambda folder: load_run(folder).task_labels(), earlier_result(args.out))
        if not grid["methods"]:
            raise DataError(f"{', '.join(map(str, args.results))}: no run could be sorted "
                            f"({'; '.join(sorted({s['why'] for s in grid['skipped']}))})")
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
