"""Every registered method end to end on SmolLM2-135M-Instruct (``configs/standard_cl_generative.yaml``), smoke-sized:
two tasks (dbpedia → amazon), a few steps each, a few test examples. Each run's outcome (finished, or its one-line
error), its accuracy matrix and its CPU seconds go to the JSON; the script fails if any method fails.

    python benchmarks/generative_smoke.py [--quick] [--out FILE] [--threads 1] [--methods a,b]
"""
from __future__ import annotations

import sys
import tempfile
import time
from pathlib import Path

import torch

from continual_lm.config import load_config
from continual_lm.errors import ContinualLMError
from continual_lm.experiments.benchmark import method_entries, script_parser, write_results
from continual_lm.experiments.runner import run_experiment
from continual_lm.methods import METHODS, split_method_spec

ROOT = Path(__file__).resolve().parents[1]
SHARED_DATA = ROOT.parent / "shared" / "data"
RESULTS = Path(__file__).resolve().parent / "results"


def main() -> int:
    parser = script_parser(__doc__, RESULTS, "generative_smoke.json")
    parser.add_argument("--methods", help="comma-separated method entries (default: every registered method)")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    entries = method_entries(args.methods) if args.methods else sorted(METHODS)
    n_train, steps = (8, 1) if args.quick else (16, 2)
    root = Path(tempfile.mkdtemp(prefix="clm-gen-smoke-"))
    rows = {}
    for entry in entries:
        name, params = split_method_spec(entry)
        overrides = [f"data.data_dir={SHARED_DATA / 'cl_benchmark'}", "data.tasks=[dbpedia, amazon]",
                     f"data.n_train={n_train}", "data.n_test=4", f"training.max_steps={steps}",
                     "training.save_every=null", f"method.name={name}"]
        cfg = load_config(ROOT / "configs" / "standard_cl_generative.yaml", overrides)
        cfg.method.params = {**cfg.method.params, **params}
        started = time.process_time()
        try:
            record, _ = run_experiment(cfg, root / entry.replace(":", "-"))
            rows[entry] = {"ok": True, "acc_matrix": record.acc_matrix, "op": record.op,
                           "cpu_seconds": round(time.process_time() - started, 1)}
        except ContinualLMError as e:
            rows[entry] = {"ok": False, "error": str(e), "cpu_seconds": round(time.process_time() - started, 1)}
        print(f"{entry:30} {'ok' if rows[entry]['ok'] else 'FAILED: ' + rows[entry]['error']} "
              f"({rows[entry]['cpu_seconds']} CPU-s)", flush=True)
    write_results(args.out, {"setting": {"config": "configs/standard_cl_generative.yaml", "tasks": ["dbpedia", "amazon"],
                                         "n_train": n_train, "max_steps": steps, "n_test": 4, "threads": args.threads},
                             "runs": rows, "all_ok": all(r["ok"] for r in rows.values())})
    return 0 if all(r["ok"] for r in rows.values()) else 1


if __name__ == "__main__":
    sys.exit(main())
