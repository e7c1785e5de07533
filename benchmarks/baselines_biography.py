"""Every baseline on the Biography default experiment (Task 0 → Task 1), next to `seq`.

Methods that work on any trainable parameters run with full fine-tuning, as the default experiment does;
the LoRA-only methods (IncLoRA, O-LoRA) run with LoRA, next to SeqLoRA as their reference.

    python benchmarks/baselines_biography.py [--quick] [--out FILE] [--seeds 0,1,2]
"""
from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import torch  # noqa: E402
from _common import add_seeds_argument, seeds_from, environment, parser, write_results  # noqa: E402
from biography import aggregate, run_seeds  # noqa: E402

FULL_FT = ["seq", "replay", "ewc", "tasl", "migu", "vr_mcl", "recurrent_kif"]
LORA = ["seq", "inc_lora", "o_lora"]
LORA_SETTINGS = ["model.finetune=lora", "model.lora.r=16", "model.lora.alpha=32",
                 "model.lora.target_modules=[c_attn, c_proj, c_fc]", "training.lr=0.001"]


def main() -> None:
    p = parser(__doc__.splitlines()[0], "baselines_biography.json")
    add_seeds_argument(p)
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    seeds = seeds_from(args)
    full, full_seconds = run_seeds(seeds, FULL_FT, [])
    lora, lora_seconds = run_seeds(seeds, LORA, LORA_SETTINGS)
    write_results(args.out, {
        "setting": {"seeds": seeds, "full_finetuning": FULL_FT, "lora": LORA, "lora_overrides": LORA_SETTINGS},
        "full_finetuning": aggregate(full, FULL_FT), "lora": aggregate(lora, LORA),
        "seconds_per_seed": {"full_finetuning": full_seconds, "lora": lora_seconds}, "environment": environment(),
    })


if __name__ == "__main__":
    main()
