"""Every baseline that works on any trainable parameters, on the Biography default experiment (Task 0 → Task 1), full
fine-tuning as the default experiment does, seeds 0-2, next to seq (L2P and LFPT5 freeze the model and train their
prompts). The LoRA-only baselines (IncLoRA, O-LoRA, MoELoRA, SAPT): benchmarks/baselines_biography_lora.py.

EWC's λ is the one chosen by the spurious-forgetting sweep on this same setting (benchmarks/spurious_forgetting.py).

    python benchmarks/baselines_biography.py [--quick] [--out FILE] [--seeds 0,1,2] [--methods ...] [--resume] ...
"""
import sys
from pathlib import Path

from continual_lm.experiments.benchmark import Preset, grid_benchmark

HERE = Path(__file__).resolve().parent
CONFIG = HERE.parent / "configs" / "biography.yaml"  # the benchmarks' world (the demo's is smaller)
METHODS = ["seq", "replay", "ewc", "tasl", "migu", "vr_mcl", "recurrent_kif", "recurrent_kif:reference_code", "lwf", "l2p",
           "lfpt5"]
EWC_LAMBDA = "method_params.ewc.lambda_ewc=1.0e+5"  # chosen by the spurious-forgetting sweep (spurious_sweeps.md)

PRESET = Preset(CONFIG, "baselines_biography.json", METHODS, [0, 1, 2], overrides=[EWC_LAMBDA],
                quick={"seeds": [0], "methods": ["seq", "ewc", "tasl", "migu"]})

if __name__ == "__main__":
    sys.exit(grid_benchmark(PRESET, HERE / "results"))
