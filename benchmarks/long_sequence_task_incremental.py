"""Long Sequence in the earlier task-incremental setting (configs/long_sequence_task_incremental.yaml: own-task
options, n_train 64, n_test 100, order 4, seed 0): the grid behind benchmarks/results/long_sequence_task_incremental.*.

    python benchmarks/long_sequence_task_incremental.py [--quick] [--out FILE] [--resume] ...
"""
import sys
from pathlib import Path

from continual_lm.experiments.benchmark import Preset, grid_benchmark

HERE = Path(__file__).resolve().parent
METHODS = ["seq", "inc_lora", "replay", "ewc", "o_lora", "tasl", "migu", "vr_mcl", "recurrent_kif", "mtl"]
DATA = f"data.data_dir={HERE.parents[1] / 'shared' / 'data' / 'cl_benchmark'}"

PRESET = Preset(HERE.parent / "configs" / "long_sequence_task_incremental.yaml", "long_sequence_task_incremental.json",
                METHODS, [0], [4], [DATA],
                quick={"methods": ["seq", "replay", "recurrent_kif"], "overrides": [DATA, "data.n_train=24", "data.n_test=40"]},
                discussion="long_sequence_task_incremental_discussion.md")

if __name__ == "__main__":
    sys.exit(grid_benchmark(PRESET, HERE / "results"))
