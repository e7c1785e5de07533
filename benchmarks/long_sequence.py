"""Long Sequence (15 tasks, order 4; orders 5 and 6 with --orders), all-MiniLM-L6-v2 + LoRA, label scoring over every
label of the run (configs/long_sequence.yaml), every real-data method; OP / BWT / FWT / LA / F / AP.

Evaluation dominates on a CPU: after each task only the tasks seen so far and the next one are evaluated
(eval_tasks: seen_and_next), all that the metrics need. The default size is n_train 250 per task (--set
data.n_train=... to change it), which fits a day of one CPU core for the default methods.

    python benchmarks/long_sequence.py [--quick] [--out FILE] [--orders 4] [--seeds 0] [--threads 1] [--resume] ...
"""
import sys
from pathlib import Path

from continual_lm.experiments.benchmark import Preset, grid_benchmark

HERE = Path(__file__).resolve().parent
METHODS = ["seq", "inc_lora", "replay", "ewc", "o_lora", "tasl", "migu", "vr_mcl", "recurrent_kif",
           "recurrent_kif:reference_code", "lwf", "l2p", "moe_lora", "mtl"]
# LFPT5 and SAPT generate pseudo-examples: not on this encoder backbone (they stop before training, saying so).
DATA = f"data.data_dir={HERE.parents[1] / 'shared' / 'data' / 'cl_benchmark'}"

PRESET = Preset(HERE.parent / "configs" / "long_sequence.yaml", "long_sequence.json", METHODS, [0], [4],
                [DATA, "data.n_train=250"],
                quick={"methods": ["seq", "replay", "recurrent_kif"], "overrides": [DATA, "data.n_train=24", "data.n_test=40"]},
                discussion="long_sequence_discussion.md")

if __name__ == "__main__":
    sys.exit(grid_benchmark(PRESET, HERE / "results"))
