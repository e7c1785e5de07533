"""The LoRA-only baselines (IncLoRA, O-LoRA, MoELoRA, SAPT) on the Biography default experiment, next to SeqLoRA: LoRA r 16 on every
attention and MLP projection of the tiny GPT, lr 1e-3, seeds 0-2.

    python benchmarks/baselines_biography_lora.py [--quick] [--out FILE] [--seeds 0,1,2] [--resume] ...
"""
import sys
from pathlib import Path

from continual_lm.experiments.benchmark import Preset, grid_benchmark

HERE = Path(__file__).resolve().parent
CONFIG = HERE.parent / "configs" / "biography.yaml"  # the benchmarks' world (the demo's is smaller)
LORA = ["model.finetune=lora", "model.lora.r=16", "model.lora.alpha=32", "model.lora.target_modules=[c_attn, c_proj, c_fc]",
        "training.lr=0.001"]

PRESET = Preset(CONFIG, "baselines_biography_lora.json", ["seq", "inc_lora", "o_lora", "moe_lora", "sapt"], [0, 1, 2],
                overrides=LORA, quick={"seeds": [0]})

if __name__ == "__main__":
    sys.exit(grid_benchmark(PRESET, HERE / "results"))
