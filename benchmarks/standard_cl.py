"""Standard CL (dbpedia, amazon, yahoo, agnews; orders 1-3 × seeds 0-2), all-MiniLM-L6-v2 + LoRA (r 8, query/value),
label scoring over every label of the run (configs/standard_cl.yaml, the papers' regime: 1000 examples per task),
every real-data method; OP / BWT / FWT / LA / F / AP mean ± std, and each method paired with seq.

    python benchmarks/standard_cl.py [--quick] [--out FILE] [--methods ...] [--orders 1,2,3] [--seeds 0,1,2]
                                     [--threads 1] [--set KEY=VALUE ...] [--runs DIR] [--resume] [--merge FILE ...]

On 2 cores, two processes of one thread each (e.g. split by --seeds or --methods, each with its own --out), then
--merge, give about 20% more throughput than one process with two threads. The earlier task-incremental grid:
--set on configs/standard_cl_task_incremental.yaml (benchmarks/standard_cl_task_incremental.py).
"""
import sys
from pathlib import Path

from continual_lm.experiments.benchmark import Preset, grid_benchmark

HERE = Path(__file__).resolve().parent
METHODS = ["seq", "inc_lora", "replay", "ewc", "o_lora", "tasl", "migu", "vr_mcl", "recurrent_kif",
           "recurrent_kif:reference_code", "lwf", "l2p", "moe_lora", "mtl"]
# LFPT5 and SAPT generate pseudo-examples: not on this encoder backbone (they stop before training, saying so).
DATA = f"data.data_dir={HERE.parents[1] / 'shared' / 'data' / 'cl_benchmark'}"

PRESET = Preset(HERE.parent / "configs" / "standard_cl.yaml", "standard_cl.json", METHODS, [0, 1, 2], [1, 2, 3], [DATA],
                quick={"orders": [1], "seeds": [0], "methods": ["seq", "replay", "recurrent_kif", "mtl"],
                       "overrides": [DATA, "data.n_train=100", "data.n_test=50"]},
                discussion="standard_cl_discussion.md")

if __name__ == "__main__":
    sys.exit(grid_benchmark(PRESET, HERE / "results"))
