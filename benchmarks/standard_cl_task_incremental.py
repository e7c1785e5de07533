"""Standard CL in the earlier task-incremental setting (configs/standard_cl_task_incremental.yaml: each example
scored among its own task's options, 200 examples per task, 25 steps per task): the grid behind
benchmarks/results/standard_cl_task_incremental.*.

    python benchmarks/standard_cl_task_incremental.py [--quick] [--out FILE] [--orders ...] [--seeds ...] [--resume] ...
"""
import sys
from pathlib import Path

from continual_lm.experiments.benchmark import Preset, grid_benchmark

HERE = Path(__file__).resolve().parent
METHODS = ["seq", "inc_lora", "replay", "ewc", "o_lora", "tasl", "migu", "vr_mcl", "recurrent_kif", "mtl"]
DATA = f"data.data_dir={HERE.parents[1] / 'shared' / 'data' / 'cl_benchmark'}"

PRESET = Preset(HERE.parent / "configs" / "standard_cl_task_incremental.yaml", "standard_cl_task_incremental.json",
                METHODS, [0, 1, 2], [1, 2, 3], [DATA],
                quick={"orders": [1], "seeds": [0], "overrides": [DATA, "data.n_train=48", "data.n_test=64"]},
                discussion="standard_cl_task_incremental_discussion.md")

if __name__ == "__main__":
    sys.exit(grid_benchmark(PRESET, HERE / "results"))
