"""The same short Standard-CL run in one process and in two CPU processes (gloo): OP should agree within 1 point.

Batch sizes are per process, so the two-process run uses half the per-process batch (4 × 2 = 8, the same
global batch and number of steps as the single process). Also records how many processes each launch form
really started (`accelerate launch --cpu --num_processes 2` vs `torchrun --nproc_per_node 2`).

    python benchmarks/multiprocess.py [--quick] [--out FILE]
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from continual_lm.experiments.benchmark import script_parser, write_results

SHARED_DATA = Path(__file__).resolve().parents[2] / "shared" / "data"
RESULTS = Path(__file__).resolve().parent / "results"
CONFIG = Path(__file__).resolve().parents[1] / "configs" / "standard_cl_task_incremental.yaml"
BIN = Path(sys.executable).parent


def launch(argv: list[str], out: Path, overrides: list[str]) -> dict:
    cmd = [*argv, "run", "--config", str(CONFIG), "--out", str(out), *sum((["--set", o] for o in overrides), [])]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    started = time.time()
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env)
    seconds = round(time.time() - started, 1)
    if proc.returncode != 0:
        return {"command": " ".join(cmd), "ok": False, "error": proc.stderr.strip().splitlines()[-3:], "seconds": seconds}
    m = json.loads((out / "metrics.json").read_text())
    return {"command": " ".join(cmd), "ok": True, "processes": m["processes"], "op": m["op"], "bwt": m["bwt"],
            "acc_matrix": m["acc_matrix"], "seconds": seconds}


def main() -> None:
    args = script_parser(__doc__, RESULTS, "multiprocess.json").parse_args()
    if not (SHARED_DATA / "cl_benchmark").is_dir():
        sys.exit(f"needs the benchmark data in {SHARED_DATA / 'cl_benchmark'}")
    n_train, n_test = (64, 64) if args.quick else (160, 200)
    common = [f"data.data_dir={SHARED_DATA / 'cl_benchmark'}", "data.tasks=[dbpedia, amazon]", f"data.n_train={n_train}",
              f"data.n_test={n_test}", "training.num_threads=1"]
    root = Path(tempfile.mkdtemp(prefix="clm-mp-"))
    cli = [sys.executable, "-m", "continual_lm.cli"]
    single = launch(cli, root / "single", [*common, "training.batch_size=8"])
    torchrun = launch([str(BIN / "torchrun"), "--nproc_per_node", "2", "-m", "continual_lm.cli"], root / "torchrun",
                      [*common, "training.batch_size=4"])
    accelerate = launch([str(BIN / "accelerate"), "launch", "--cpu", "--num_processes", "2", "-m", "continual_lm.cli"],
                        root / "accelerate", [*common, "training.batch_size=4"])
    diff = abs(torchrun["op"] - single["op"]) if single.get("ok") and torchrun.get("ok") else None
    write_results(args.out, {
        "setting": {"tasks": ["dbpedia", "amazon"], "n_train": n_train, "n_test": n_test, "global_batch": 8},
        "single_process": single, "torchrun_2": torchrun, "accelerate_launch_cpu_2": accelerate,
        "op_difference": diff, "within_1_point": diff is not None and diff <= 1.0,
    })


if __name__ == "__main__":
    main()
