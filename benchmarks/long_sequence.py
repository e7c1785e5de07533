"""Long Sequence (15 tasks, order 4) with all-MiniLM-L6-v2 + LoRA, label scoring, every method; OP / BWT / FWT.

Default size: n_train 64 per task, n_test 100, 1 seed.

    python benchmarks/long_sequence.py [--quick] [--out FILE] [--seeds 0] [--n-train 64]
"""
from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import torch  # noqa: E402
from _cl import ALL_METHODS, run_grid, summarise  # noqa: E402
from _common import SHARED_DATA, parser  # noqa: E402


def main() -> None:
    p = parser(__doc__.splitlines()[0], "long_sequence.json")
    p.add_argument("--seeds", default="0")
    p.add_argument("--methods", default=None, help="default: all (--quick: seq, replay, recurrent_kif)")
    p.add_argument("--n-train", type=int, default=None, help="per task (default 64; --quick: 24)")
    p.add_argument("--n-test", type=int, default=None, help="per task (default 100; --quick: 40)")
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    if not (SHARED_DATA / "cl_benchmark").is_dir():
        sys.exit(f"needs the benchmark data in {SHARED_DATA / 'cl_benchmark'}")
    seeds = [int(x) for x in args.seeds.split(",")]
    methods = (args.methods or ("seq,replay,recurrent_kif" if args.quick else ",".join(ALL_METHODS))).split(",")
    n_train = args.n_train or (24 if args.quick else 64)
    n_test = args.n_test or (40 if args.quick else 100)
    rows, root = run_grid("long_sequence.yaml", [4], seeds, methods, [f"data.n_train={n_train}", f"data.n_test={n_test}"])
    setting = {"benchmark": "Long Sequence (order 4)", "backbone": "all-MiniLM-L6-v2 + LoRA r8 (query, value)",
               "seeds": seeds, "n_train": n_train, "n_test": n_test, "methods": methods, "run_folders": str(root)}
    summarise(rows, setting, args.out, "")


if __name__ == "__main__":
    main()
