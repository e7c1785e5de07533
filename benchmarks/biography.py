"""The default Biography experiment (spurious forgetting, Task 0 → Task 1) over several seeds.

Each seed fixes the whole pipeline: the tiny GPT's initialisation and pre-training, data order and sampling.
Writes per method Task 0 / Task 1 accuracy (mean ± std), the Task-0 curve during Task 1, and wall times,
plus a check of the project's targets.

    python benchmarks/biography.py [--quick] [--out FILE] [--seeds 0,1,2] [--methods seq,replay,...]
"""
from __future__ import annotations

import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import torch  # noqa: E402
from _common import add_seeds_argument, seeds_from, environment, mean_std, parser, write_results  # noqa: E402

from continual_lm.config import load_config  # noqa: E402
from continual_lm.experiments.spurious import DEFAULT_METHODS, default_config_path, run_default_experiment  # noqa: E402


def run_seeds(seeds: list[int], methods: list[str], overrides: list[str], method_params: dict | None = None,
              workdir: Path | None = None) -> tuple[dict[int, dict], dict[int, float]]:
    summaries, seconds = {}, {}
    root = Path(workdir or tempfile.mkdtemp(prefix="clm-bench-"))
    for seed in seeds:
        cfg = load_config(default_config_path(), [f"seed={seed}", *overrides])
        started = time.time()
        summaries[seed] = run_default_experiment(root / f"seed{seed}", cfg, methods, method_params)
        seconds[seed] = round(time.time() - started, 1)
    return summaries, seconds


def aggregate(summaries: dict[int, dict], methods: list[str]) -> dict:
    out = {}
    for m in methods:
        rows = [s["methods"][m] for s in summaries.values()]
        steps = list(rows[0]["curve"])
        out[m] = {key: mean_std([r[key] for r in rows]) for key in ("task0_after_task0", "task0_final", "task1_final")}
        out[m]["curve"] = {s: mean_std([r["curve"][s] for r in rows]) for s in steps}
        reports = [r["method_report"] for r in rows if r.get("method_report")]
        if reports:
            out[m]["method_report_per_seed"] = reports
    return out


def targets(per_method: dict) -> dict:
    checks = {}
    if "seq" in per_method:
        seq = per_method["seq"]
        checks["task0_after_task0_at_least_50"] = seq["task0_after_task0"]["mean"] >= 50
        checks["seq_drop_at_least_30_points"] = seq["task0_after_task0"]["mean"] - seq["task0_final"]["mean"] >= 30
        for m in ("freeze", "replay"):
            if m in per_method:
                checks[f"{m}_keeps_more_task0_than_seq"] = per_method[m]["task0_final"]["mean"] > seq["task0_final"]["mean"]
    return checks


def main() -> None:
    p = parser(__doc__.splitlines()[0], "biography.json")
    add_seeds_argument(p)
    p.add_argument("--methods", default=",".join(DEFAULT_METHODS))
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="override a config key")
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    seeds = seeds_from(args)
    methods = args.methods.split(",")
    summaries, seconds = run_seeds(seeds, methods, args.set)
    per_method = aggregate(summaries, methods)
    write_results(args.out, {
        "setting": {"config": str(default_config_path().name), "overrides": args.set, "seeds": seeds,
                    "methods": methods},
        "methods": per_method, "targets": targets(per_method),
        "seconds_per_seed": seconds, "median_seconds_per_seed": statistics.median(seconds.values()),
        "per_seed": {str(k): v for k, v in summaries.items()}, "environment": environment(),
        "note": "seconds include pre-training whenever the checkpoint of that seed was not cached yet",
    })


if __name__ == "__main__":
    main()
