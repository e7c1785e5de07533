"""Wall time per epoch of Recurrent-KIF vs LoRAReplay (and SeqLoRA) in one process, same data and backbone:
all-MiniLM-L6-v2 + LoRA (r 8, query/value) on two Standard-CL tasks. The time is the second task's (the
outer learner only runs once a memory exists). Also reports the share of step time spent on importance
bookkeeping (EMA updates, masks and fusion).

    python benchmarks/rkif_overhead.py [--quick] [--out FILE]
"""
from __future__ import annotations

import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import torch  # noqa: E402
from _common import SHARED_DATA, environment, parser, write_results  # noqa: E402

from continual_lm.config import parse_config  # noqa: E402
from continual_lm.experiments.runner import build_tasks, prepare_backbone  # noqa: E402
from continual_lm.methods import create_method  # noqa: E402
from continual_lm.methods import recurrent_kif as rk  # noqa: E402
from continual_lm.training.loop import make_accelerator, train_sequence  # noqa: E402


class Timer:
    def __init__(self):
        self.seconds = 0.0

    def wrap(self, fn):
        def timed(*args, **kwargs):
            t = time.perf_counter()
            try:
                return fn(*args, **kwargs)
            finally:
                self.seconds += time.perf_counter() - t
        return timed


def one_run(method_name: str, n_train: int, n_test: int, seed: int, q: int, m: int) -> dict:
    cfg = parse_config({
        "name": "overhead", "seed": seed,
        "model": {"kind": "encoder", "finetune": "lora", "max_length": 128,
                  "lora": {"r": 8, "alpha": 16, "target_modules": ["query", "value"]}},
        "data": {"benchmark": "standard", "data_dir": str(SHARED_DATA / "cl_benchmark"), "tasks": ["dbpedia", "amazon"],
                 "n_train": n_train, "n_test": n_test},
        "training": {"epochs": 1, "batch_size": 8, "lr": 5e-4, "eval_batch_size": 64},
        "method": {"name": method_name, "params": {"q": q, "m": m} if method_name == "recurrent_kif" else {}},
    })
    tasks, _ = build_tasks(cfg)
    acc = make_accelerator()
    backbone = prepare_backbone(cfg, tasks, None, acc)
    method = create_method(cfg.method.name, cfg.method.params)
    bookkeeping = Timer()
    if method_name == "recurrent_kif":
        # Importance EMAs, masks and fusion; the outer step's own forward/backward is not bookkeeping.
        method.inner.update = bookkeeping.wrap(method.inner.update)
        method.outer.update = bookkeeping.wrap(method.outer.update)
        original_fuse = rk.fuse
        rk.fuse = bookkeeping.wrap(original_fuse)
    records = []
    try:
        train_sequence(cfg, tasks, backbone, method, records.append, acc)
    finally:
        if method_name == "recurrent_kif":
            rk.fuse = original_fuse
    stage = [r for r in records if r["event"] == "stage_end"][1]
    return {"epoch_seconds": stage["train_seconds"], "steps": stage["steps"], "bookkeeping_seconds": bookkeeping.seconds}


def main() -> None:
    args = parser(__doc__.splitlines()[0], "rkif_overhead.json").parse_args()
    torch.set_num_threads(args.threads)
    if not (SHARED_DATA / "cl_benchmark").is_dir():
        sys.exit(f"needs the benchmark data in {SHARED_DATA / 'cl_benchmark'}")
    n_train, repeats = (120, 2) if args.quick else (320, 3)
    q, m = 8, 1
    runs: dict[str, list[dict]] = {"replay": [], "seq": [], "recurrent_kif": []}
    for r in range(repeats):  # interleaved, so drifts in machine load hit every method alike
        for name in runs:
            runs[name].append(one_run(name, n_train, 50, seed=r, q=q, m=m))
            print(name, runs[name][-1], flush=True)
    median = {name: statistics.median(x["epoch_seconds"] for x in rs) for name, rs in runs.items()}
    rkif = runs["recurrent_kif"]
    share = statistics.median(x["bookkeeping_seconds"] / x["epoch_seconds"] for x in rkif)
    result = {
        "setting": {"backbone": "all-MiniLM-L6-v2 + LoRA r8 (query, value)", "tasks": ["dbpedia", "amazon"],
                    "n_train_per_task": n_train, "batch_size": 8, "max_length": 128, "q": q, "m": m,
                    "repeats": repeats, "timed": "training time of the second task (one epoch), evaluation excluded"},
        "median_epoch_seconds": median,
        "ratio_rkif_over_replay": round(median["recurrent_kif"] / median["replay"], 3),
        "ratio_rkif_over_seq": round(median["recurrent_kif"] / median["seq"], 3),
        "bookkeeping_share_of_rkif_time": round(share, 4),
        "runs": runs, "environment": environment(),
        "note": "replay mixes a memory batch as large as the training batch into every step (2x tokens per step); "
                "Recurrent-KIF adds M outer steps every Q inner steps.",
    }
    write_results(args.out, result)


if __name__ == "__main__":
    main()
