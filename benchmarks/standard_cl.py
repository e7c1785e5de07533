"""Standard CL (dbpedia, amazon, yahoo, agnews; orders 1-3) with all-MiniLM-L6-v2 + LoRA (r 8, query/value),
label scoring, every method; OP / BWT / FWT mean ± std over orders and seeds.

Default size: n_train 200 per task (1 epoch, batch 8) and n_test 200: one order × one seed of all ten methods
takes about 20-25 minutes on the 2-core CPU; the full grid (3 orders × 3 seeds) about 9 times that.

    python benchmarks/standard_cl.py [--quick] [--out FILE] [--orders 1,2,3] [--seeds 0,1,2] [--n-train 200]
                                     [--threads 2] [--resume] [--merge FILE ...] [--runs DIR]

The grid can be split: e.g. two processes with --threads 1 and different --orders/--seeds (about 20% more
throughput on 2 cores than one process with 2 threads), each with its own --out, then --merge their files.
"""
from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import torch  # noqa: E402
from _cl import ALL_METHODS, add_grid_arguments, run_or_merge  # noqa: E402
from _common import SHARED_DATA, parser  # noqa: E402

DISCUSSION_FILE = Path(__file__).resolve().parent / "results" / "standard_cl_discussion.md"


def main() -> None:
    p = parser(__doc__.splitlines()[0], "standard_cl.json")
    p.add_argument("--orders", default=None, help="default 1,2,3 (--quick: 1)")
    p.add_argument("--seeds", default=None, help="default 0,1,2 (--quick: 0)")
    p.add_argument("--methods", default=",".join(ALL_METHODS))
    p.add_argument("--n-train", type=int, default=None, help="per task (default 200; --quick: 48)")
    p.add_argument("--n-test", type=int, default=None, help="per task (default 200; --quick: 64)")
    add_grid_arguments(p)
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    if not (SHARED_DATA / "cl_benchmark").is_dir():
        sys.exit(f"needs the benchmark data in {SHARED_DATA / 'cl_benchmark'}")
    orders = [int(x) for x in (args.orders or ("1" if args.quick else "1,2,3")).split(",")]
    seeds = [int(x) for x in (args.seeds or ("0" if args.quick else "0,1,2")).split(",")]
    n_train = args.n_train or (48 if args.quick else 200)
    n_test = args.n_test or (64 if args.quick else 200)
    methods = args.methods.split(",")
    setting = {"benchmark": "Standard CL", "backbone": "all-MiniLM-L6-v2 + LoRA r8 (query, value), label scoring",
               "n_train": n_train, "n_test": n_test, "epochs": 1, "batch_size": 8, "lr": 1e-3}
    discussion = DISCUSSION_FILE.read_text() if DISCUSSION_FILE.exists() else ""
    run_or_merge(args, "standard_cl.yaml", orders, seeds, methods, [f"data.n_train={n_train}", f"data.n_test={n_test}"],
                 setting, discussion)


if __name__ == "__main__":
    main()
