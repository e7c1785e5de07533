"""Spurious forgetting on the Biography default experiment (Task 0 → Task 1), after Zheng et al. (ICLR 2025).

0. Sweeps on seed 0 (Task Vector's α, EWC's λ, Freeze's k), each value picked by one rule: the highest Task 0 final
   whose Task 1 final keeps at least 90% of seq's (the paper's Task Vector keeps Task 1 at 95.8-99.4%); when no
   value qualifies, the highest mean of Task 0 and Task 1 finals.
1. The comparison table: SEQ, EWC, LAMOL, Task Vector, Gradient Projection, Freeze, Freeze + early stop,
   Replay and Recurrent-KIF; Task 0 and Task 1 accuracy (mean ± std over seeds), and the Task-0 curve. Replay as
   the paper's code runs it: a 20% memory, half a batch of memory examples appended to every batch (the default
   experiment's setting).
2. On one `seq` run with checkpoints during Task 1: recovery from each checkpoint (a short fine-tuning on a few
   Task-0 *training* persons, evaluated on the Task-0 test persons), weight-update angles, loss landscape, and
   Fisher vs angle. Plots are copied to benchmarks/results/spurious_*.png.

    python benchmarks/spurious_forgetting.py [--quick] [--out FILE] [--seeds 0,1,2]
"""
from __future__ import annotations

import shutil
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import torch  # noqa: E402
from _common import add_seeds_argument, seeds_from, RESULTS, environment, parser, write_results  # noqa: E402
from biography import aggregate, run_seeds  # noqa: E402

from continual_lm.analysis.analyze import analyze  # noqa: E402
from continual_lm.config import RecoverySettings, load_config  # noqa: E402
from continual_lm.experiments.runner import run_experiment  # noqa: E402
from continual_lm.experiments.spurious import default_config_path  # noqa: E402

# Our Task 1 is 188 steps long; the alignment is undone within its first ~20 steps (see the seq curve), so the
# "early update" of Task Vector and Gradient Projection is the first 20 steps (the paper: 150 of a longer task).
METHOD_PARAMS = {
    "task_vector": {"end_step": 20},
    "grad_projection": {"end_step": 20, "scope": "attention"},
    "lamol": {"gamma": 0.2, "max_new_tokens": 24},
    "ewc": {},
    "freeze": {},
}
# The paper reports α ≈ 0.16-0.22 for Task Vector, λ in 1e6-1e7 for EWC (on its Fisher's scale), k = 7-8 of 12 layers
# for Freeze; our model has 4 layers.
SWEEPS = {"task_vector": ("alpha", [0.1, 0.15, 0.2, 0.25, 0.3]),
          "ewc": ("lambda_ewc", [1e2, 1e3, 1e4, 1e5, 1e6, 1e7]),
          "freeze": ("layers", [1, 2, 3])}
KEEP_TASK1 = 0.9  # share of seq's Task 1 final a swept value must keep
METHODS = ["seq", "ewc", "lamol", "task_vector", "grad_projection", "freeze", "replay", "recurrent_kif"]
EARLY_STOP = {"freeze": {"early_stop": True, "val_source": "train", "eval_every": 10, "patience": 2}}
PAPER_TASK0 = {"seq": 11.2, "ewc": "<= 13.5", "lamol": 18.9, "task_vector": 30.8, "freeze": "39.7-44.2",
               "replay": "76.9-80.6"}


def analysis_run(workdir: Path, grid: int) -> dict:
    cfg = load_config(default_config_path(), ["checkpoint_steps=[0, 5, 10, 20, 50, 150]", "method.name=seq"])
    _, folder = run_experiment(cfg, workdir / "seq-checkpoints")
    results = analyze(folder, ["recovery", "angles", "landscape", "fisher"], split=20, grid=grid, n_examples=96,
                      recovery=RecoverySettings(steps=20, n_examples=60, batch_size=16))
    for name in ("recovery", "angles", "landscape", "fisher_vs_angle"):
        shutil.copy(folder / "analysis" / f"{name}.png", RESULTS / f"spurious_{name}.png")
    angles = {pair: round(sum(r["mean_angle"] for r in rows) / len(rows), 2) for pair, rows in results["angles"]["pairs"].items()}
    return {"recovery": results["recovery"], "mean_angle_per_pair": angles, "angles": results["angles"],
            "fisher_vs_angle": {"pearson": results["fisher"]["pearson"], "matrices": results["fisher"]["matrices"]},
            "landscape_trajectory": results["landscape"]["trajectory"]}


def pick(rows: dict, seq_task1: float) -> object:
    """The swept value by the rule in the module doc; rows: value -> {task0_final, task1_final}."""
    keep = {v: r for v, r in rows.items() if r["task1_final"] >= KEEP_TASK1 * seq_task1}
    if keep:
        return max(keep, key=lambda v: keep[v]["task0_final"])
    return max(rows, key=lambda v: rows[v]["task0_final"] + rows[v]["task1_final"])


def sweep(work: Path, seed: int) -> dict:
    """One seed per value; returns per method the rows and the chosen value."""
    seq, _ = run_seeds([seed], ["seq"], [], workdir=work / "seq")
    seq_task1 = seq[seed]["methods"]["seq"]["task1_final"]
    out = {}
    for method, (key, values) in SWEEPS.items():
        rows = {}
        for value in values:
            params = {**METHOD_PARAMS[method], key: value}
            runs, _ = run_seeds([seed], [method], [f"method_params.{method}={params}"],
                                workdir=work / f"{method}-{key}-{value}")
            row = runs[seed]["methods"][method]
            rows[value] = {"task0_final": row["task0_final"], "task1_final": row["task1_final"]}
            print(f"sweep {method} {key}={value}: {rows[value]}", flush=True)
        out[method] = {"key": key, "rows": {str(v): r for v, r in rows.items()}, "chosen": pick(rows, seq_task1)}
    return {"seed": seed, "seq_task1_final": seq_task1, "rule": f"max Task 0 final with Task 1 final >= "
            f"{KEEP_TASK1} x seq's; else max mean of both", "methods": out}


def main() -> None:
    p = parser(__doc__.splitlines()[0], "spurious_forgetting.json")
    add_seeds_argument(p)
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    seeds = seeds_from(args)
    methods = ["seq", "freeze", "replay"] if args.quick else METHODS
    work = Path(tempfile.mkdtemp(prefix="clm-spurious-"))
    sweeps = None if args.quick else sweep(work / "sweeps", seeds[0])
    chosen = {m: dict(params) for m, params in METHOD_PARAMS.items()}
    for m, swept in (sweeps or {}).get("methods", {}).items():
        chosen[m][swept["key"]] = swept["chosen"]
    params = [f"method_params.{m}={v}" for m, v in chosen.items() if v]
    main_runs, seconds = run_seeds(seeds, methods, params, workdir=work / "main")
    table = aggregate(main_runs, methods)
    early_stop = {**chosen["freeze"], **EARLY_STOP["freeze"]}
    es_runs, es_seconds = run_seeds(seeds, ["freeze"], [f"method_params.freeze={early_stop}"],
                                    workdir=work / "early_stop")
    table["freeze_early_stop"] = aggregate(es_runs, ["freeze"])["freeze"]
    analysis = analysis_run(work, grid=9 if args.quick else 15)
    write_results(args.out, {
        "setting": {"seeds": seeds, "method_params": chosen, "early_stop": EARLY_STOP["freeze"], "sweeps": sweeps,
                    "replay": "20% memory, 16 memory examples appended to each batch of 32 (the paper's code)",
                    "recovery": "20 steps on 60 Task-0 training QA pairs (lr as training), from seq checkpoints"},
        "table": table, "paper_task0_accuracy": PAPER_TASK0, "analysis": analysis,
        "seconds": {"methods": seconds, "freeze_early_stop": es_seconds}, "environment": environment(),
    })


if __name__ == "__main__":
    main()
