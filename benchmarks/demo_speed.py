"""The demo's schedule sweep (issue 18): per setting of pre-training and the QA stages, a cold `seq` run of the default
Biography experiment (pre-training included, a fresh cache) → Task 0 after Task 0, Task 0 and Task 1 final, and
seconds per phase. Settings run two at a time, one thread each (as a 2-core machine runs them best); compare
seconds within one results file only.

    python benchmarks/demo_speed.py [--quick] [--out FILE] [--only LABEL,...] [--seed 0]
"""
import os
import sys
import tempfile
from concurrent.futures import ProcessPoolExecutor
from multiprocessing import get_context
from pathlib import Path

from continual_lm.experiments.benchmark import script_parser, write_results
from continual_lm.reporting.report import markdown_table

HERE = Path(__file__).resolve().parent

# label -> config overrides of the default experiment (src/continual_lm/experiments/biography_default.yaml)
SETTINGS = {
    "24 ep, lr 2e-3, bs 64 (the previous schedule)": ["pretrain.epochs=24", "pretrain.lr=0.002", "pretrain.batch_size=64"],
    "12 ep, lr 4e-3, bs 64": ["pretrain.epochs=12", "pretrain.lr=0.004", "pretrain.batch_size=64"],
    "12 ep, lr 2e-3, bs 32": ["pretrain.epochs=12", "pretrain.lr=0.002", "pretrain.batch_size=32"],
    "10 ep, lr 3e-3, bs 32": ["pretrain.epochs=10", "pretrain.lr=0.003", "pretrain.batch_size=32"],
    "8 ep, lr 4e-3, bs 32": ["pretrain.epochs=8", "pretrain.lr=0.004", "pretrain.batch_size=32"],
    "16 ep, lr 3e-3, bs 64": ["pretrain.epochs=16", "pretrain.lr=0.003", "pretrain.batch_size=64"],
    "24 ep, lr 2e-3, bs 32": ["pretrain.epochs=24", "pretrain.lr=0.002", "pretrain.batch_size=32"],
    "16 ep, lr 2e-3, bs 32": ["pretrain.epochs=16", "pretrain.lr=0.002", "pretrain.batch_size=32"],
    "12 ep, lr 1e-3, bs 16": ["pretrain.epochs=12", "pretrain.lr=0.001", "pretrain.batch_size=16"],
    "16 ep, lr 1e-3, bs 16": ["pretrain.epochs=16", "pretrain.lr=0.001", "pretrain.batch_size=16"],
    "12 ep, lr 1e-3, bs 16 (chosen)": ["pretrain.epochs=12", "pretrain.lr=0.001", "pretrain.batch_size=16"],
    "10 ep, lr 1e-3, bs 16": ["pretrain.epochs=10", "pretrain.lr=0.001", "pretrain.batch_size=16"],
}
QUICK = ["12 ep, lr 4e-3, bs 64"]


def one(label: str, overrides: list[str], seed: int) -> dict:
    import torch
    torch.set_num_threads(1)
    os.environ["CONTINUAL_LM_CACHE"] = tempfile.mkdtemp(prefix="clm-cache-")  # cold: pre-training included
    from continual_lm.config import load_config
    from continual_lm.experiments.runner import run_experiment
    from continual_lm.experiments.spurious import default_config_path
    cfg = load_config(default_config_path(), [*overrides, f"seed={seed}", "method.name=seq"])
    record, folder = run_experiment(cfg, Path(tempfile.mkdtemp(prefix="clm-demo-")) / "seq")
    a = record.acc_matrix
    return {"label": label, "overrides": overrides, "task0_after_task0": a[0][0], "task0_final": a[1][0],
            "task1_final": a[1][1], "run_seconds": record.seconds, "timing": record.timing}


def main() -> int:
    p = script_parser(__doc__, HERE / "results", "demo_speed.json")
    p.add_argument("--only", help="comma-separated labels of SETTINGS (default: all; --quick: one)")
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args()
    labels = args.only.split(";") if args.only else (QUICK if args.quick else list(SETTINGS))
    # (an existing --out of the same seed is added to, so that the sweep can be run a few settings at a time)
    unknown = [label for label in labels if label not in SETTINGS]
    if unknown:
        sys.exit(f"--only: unknown setting(s) {unknown}; known: {list(SETTINGS)}")
    with ProcessPoolExecutor(2, mp_context=get_context("spawn")) as pool:
        rows = list(pool.map(one, labels, [SETTINGS[label] for label in labels], [args.seed] * len(labels)))
    if args.out.exists():  # add to the settings measured before (same seed), the new measurement of a label wins
        import json
        old = json.loads(args.out.read_text())
        if old["setting"]["seed"] == args.seed:
            rows = [r for r in old["runs"] if r["label"] not in labels] + rows
    write_results(args.out, {"setting": {"config": "biography_default.yaml", "method": "seq", "seed": args.seed,
                                         "threads_per_run": 1, "parallel_runs": 2}, "runs": rows})
    table = markdown_table(
        ["setting", "Task 0 after Task 0", "Task 0 final", "Task 1 final", "pre-training s", "seq run s",
         "of which train / evaluation / curve"],
        [[r["label"], f"{r['task0_after_task0']:.1f}", f"{r['task0_final']:.1f}", f"{r['task1_final']:.1f}",
          f"{r['timing'].get('pretrain', 0):.0f}", f"{r['run_seconds']:.0f}",
          " / ".join(f"{r['timing'].get(k, 0):.0f}" for k in ("train", "evaluation", "curve"))] for r in rows])
    args.out.with_suffix(".md").write_text(f"# Demo schedule sweep (seed {args.seed}, 1 thread per run, 2 runs at a "
                                           f"time)\n\n{table}\n")
    print(table)
    return 0


if __name__ == "__main__":
    sys.exit(main())
