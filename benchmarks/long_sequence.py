"""Long Sequence (15 tasks, order 4) with all-MiniLM-L6-v2 + LoRA, label scoring, every method; OP / BWT / FWT.

Default size: n_train 64 per task, n_test 100, 1 seed.

    python benchmarks/long_sequence.py [--quick] [--out FILE] [--seeds 0] [--n-train 64] [--threads 2]
                                       [--resume] [--merge FILE ...] [--runs DIR]

Evaluation dominates on this CPU: after each task only the tasks seen so far and the next one are evaluated
(configs/long_sequence.yaml: eval_tasks: seen_and_next), all that OP/BWT/FWT need.
"""
from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import torch  # noqa: E402
from _cl import ALL_METHODS, add_grid_arguments, run_or_merge  # noqa: E402
from _common import SHARED_DATA, parser  # noqa: E402

DISCUSSION_FILE = Path(__file__).resolve().parent / "results" / "long_sequence_discussion.md"


def main() -> None:
    p = parser(__doc__.splitlines()[0], "long_sequence.json")
    p.add_argument("--seeds", default="0")
    p.add_argument("--methods", default=None, help="default: all (--quick: seq, replay, recurrent_kif)")
    p.add_argument("--n-train", type=int, default=None, help="per task (default 64; --quick: 24)")
    p.add_argument("--n-test", type=int, default=None, help="per task (default 100; --quick: 40)")
    add_grid_arguments(p)
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    if not (SHARED_DATA / "cl_benchmark").is_dir():
        sys.exit(f"needs the benchmark data in {SHARED_DATA / 'cl_benchmark'}")
    seeds = [int(x) for x in args.seeds.split(",")]
    methods = (args.methods or ("seq,replay,recurrent_kif" if args.quick else ",".join(ALL_METHODS))).split(",")
    n_train = args.n_train or (24 if args.quick else 64)
    n_test = args.n_test or (40 if args.quick else 100)
    setting = {"benchmark": "Long Sequence (order 4)", "backbone": "all-MiniLM-L6-v2 + LoRA r8 (query, value)",
               "n_train": n_train, "n_test": n_test, "epochs": 1, "batch_size": 8, "lr": 1e-3}
    discussion = DISCUSSION_FILE.read_text() if DISCUSSION_FILE.exists() else ""
    run_or_merge(args, "long_sequence.yaml", [4], seeds, methods, [f"data.n_train={n_train}", f"data.n_test={n_test}"],
                 setting, discussion)


if __name__ == "__main__":
    main()
