"""Standard CL (dbpedia, amazon, yahoo, agnews; orders 1-3) with all-MiniLM-L6-v2 + LoRA (r 8, query/value),
label scoring, every method; OP / BWT / FWT / LA / F / AP mean ± std over orders and seeds, and paired with seq.

The default config is the papers' regime (``configs/standard_cl.yaml``: every label of the run is a candidate,
1000 training examples per task); ``--config standard_cl_task_incremental.yaml`` is the earlier setting (each
example scored among its own task's options, 200 per task).

    python benchmarks/standard_cl.py [--quick] [--out FILE] [--config FILE] [--orders 1,2,3] [--seeds 0,1,2]
                                     [--methods a,b:variant,...] [--n-train N] [--n-test N] [--threads 2]
                                     [--resume] [--merge FILE ...] [--runs DIR] [--set KEY=VALUE ...]

The grid can be split: e.g. two processes with --threads 1 and different --orders/--seeds/--methods (about 20%
more throughput on 2 cores than one process with 2 threads), each with its own --out, then --merge their files.
"""
from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import torch  # noqa: E402
from _cl import ALL_METHODS, CONFIGS, add_grid_arguments, run_or_merge  # noqa: E402
from _common import SHARED_DATA, parser  # noqa: E402

from continual_lm.config import load_config  # noqa: E402

RESULTS = Path(__file__).resolve().parent / "results"


def main() -> None:
    p = parser(__doc__.splitlines()[0], "standard_cl.json")
    p.add_argument("--config", default="standard_cl.yaml", help="a file in configs/ (default standard_cl.yaml)")
    p.add_argument("--orders", default=None, help="default 1,2,3 (--quick: 1)")
    p.add_argument("--seeds", default=None, help="default 0,1,2 (--quick: 0)")
    p.add_argument("--methods", default=",".join(ALL_METHODS))
    p.add_argument("--n-train", type=int, default=None, help="per task (default: the config's; --quick: 100)")
    p.add_argument("--n-test", type=int, default=None, help="per task (default: the config's; --quick: 50)")
    add_grid_arguments(p)
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    if not (SHARED_DATA / "cl_benchmark").is_dir():
        sys.exit(f"needs the benchmark data in {SHARED_DATA / 'cl_benchmark'}")
    cfg = load_config(CONFIGS / args.config)
    orders = [int(x) for x in (args.orders or ("1" if args.quick else "1,2,3")).split(",")]
    seeds = [int(x) for x in (args.seeds or ("0" if args.quick else "0,1,2")).split(",")]
    n_train = args.n_train or (100 if args.quick else cfg.data.n_train)
    n_test = args.n_test or (50 if args.quick else cfg.data.n_test)
    t = cfg.training
    setting = {"benchmark": "Standard CL", "config": args.config,
               "backbone": "all-MiniLM-L6-v2 + LoRA r8 (query, value), label scoring",
               "label_space": cfg.model.label_space, "n_train": n_train, "n_test": n_test, "epochs": t.epochs,
               "batch_size": t.batch_size, "lr": t.lr}
    stem = Path(args.config).stem
    discussion_file = RESULTS / f"{stem}_discussion.md"
    discussion = discussion_file.read_text() if discussion_file.exists() and not args.quick else ""
    run_or_merge(args, args.config, orders, seeds, args.methods.split(","),
                 [f"data.n_train={n_train}", f"data.n_test={n_test}"], setting, discussion)


if __name__ == "__main__":
    main()
