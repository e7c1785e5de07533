"""Whether SAPT's router can tell Standard CL's tasks apart from its query's input: the max-pooled token embeddings of
SmolLM2-135M-Instruct (configs/standard_cl_generative.yaml), with and without the chat template — mean cosine within
and across tasks, nearest-centroid accuracy, and an untrained router's attention per task (analysis/routing.py).
Trains nothing; about a minute of one core.

    python benchmarks/sapt_routing_probe.py [--quick] [--out FILE] [--threads 1]
"""
from __future__ import annotations

import sys
from pathlib import Path

import torch

from continual_lm.analysis.routing import routing_probe
from continual_lm.config import load_config
from continual_lm.errors import ContinualLMError
from continual_lm.experiments.benchmark import script_parser, write_results
from continual_lm.experiments.setup import build_tasks, prepare_backbone
from continual_lm.training.loop import make_accelerator

HERE = Path(__file__).resolve().parent
CONFIG = HERE.parent / "configs" / "standard_cl_generative.yaml"
DATA = HERE.parents[1] / "shared" / "data" / "cl_benchmark"


def main() -> int:
    args = script_parser(__doc__, HERE / "results", "sapt_routing_probe.json").parse_args()
    torch.set_num_threads(args.threads)
    n = 16 if args.quick else 64
    out = {"config": CONFIG.name, "inputs_per_task": n}
    try:
        for template in ("auto", "false"):
            cfg = load_config(CONFIG, [f"data.data_dir={DATA}", f"data.n_train={n}", "data.n_test=1",
                                       f"model.chat_template={template}"])
            tasks, world = build_tasks(cfg)
            out[f"chat_template_{template}"] = routing_probe(prepare_backbone(cfg, tasks, world, make_accelerator()),
                                                             tasks, n, seed=cfg.seed)
    except ContinualLMError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    write_results(args.out, out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
