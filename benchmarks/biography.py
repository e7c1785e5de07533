"""The default Biography experiment (spurious forgetting, Task 0 → Task 1) over seeds 0-2: per method Task 0 / Task 1
accuracy (mean ± std), the Task-0 curve during Task 1, wall times, and the project's checks of the phenomenon.

Each seed fixes the whole pipeline: the tiny GPT's initialisation and pre-training, data order and sampling.

    python benchmarks/biography.py [--quick] [--out FILE] [--seeds 0,1,2] [--methods seq,replay,...] [--resume] ...
"""
import sys
from pathlib import Path

from continual_lm.experiments.benchmark import Preset, grid_benchmark
from continual_lm.experiments.spurious import DEFAULT_METHODS, biography_targets

HERE = Path(__file__).resolve().parent
CONFIG = HERE.parent / "configs" / "biography.yaml"  # the benchmarks' world (the demo's is smaller)

PRESET = Preset(CONFIG, "biography.json", [*DEFAULT_METHODS, "recurrent_kif:reference_code"], [0, 1, 2],
                quick={"seeds": [0], "methods": DEFAULT_METHODS})

if __name__ == "__main__":
    sys.exit(grid_benchmark(PRESET, HERE / "results", checks=biography_targets))
