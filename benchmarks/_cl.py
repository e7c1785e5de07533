"""Running a real-data CL benchmark grid (orders × seeds × methods) from a config, and summarising it."""
from __future__ import annotations

import json
import tempfile
import time
from pathlib import Path

from _common import SHARED_DATA, environment, write_results

from continual_lm.config import load_config
from continual_lm.experiments.runner import run_experiment
from continual_lm.reporting.report import aggregate_by_method, method_table

CONFIGS = Path(__file__).resolve().parents[1] / "configs"
ALL_METHODS = ["seq", "inc_lora", "replay", "ewc", "o_lora", "tasl", "migu", "vr_mcl", "recurrent_kif", "mtl"]


def run_grid(config: str, orders: list[int], seeds: list[int], methods: list[str], overrides: list[str],
             workdir: Path | None = None) -> tuple[list[dict], Path]:
    root = Path(workdir or tempfile.mkdtemp(prefix="clm-cl-"))
    rows = []
    for order in orders:
        for seed in seeds:
            for method in methods:
                cfg = load_config(CONFIGS / config, [f"data.data_dir={SHARED_DATA / 'cl_benchmark'}",
                                                     f"data.order={order}", f"seed={seed}", f"method.name={method}",
                                                     *overrides])
                folder = root / f"order{order}-seed{seed}-{method}"
                started = time.time()
                result, _ = run_experiment(cfg, folder)
                rows.append({"run": folder.name, "order": order, "seed": seed, "method": method, "op": result.op,
                             "bwt": result.bwt, "fwt": result.fwt, "seconds": round(time.time() - started, 1),
                             "tasks": result.tasks, "acc_matrix": result.acc_matrix, "initial": result.initial})
                print(json.dumps({k: rows[-1][k] for k in ("run", "op", "bwt", "fwt", "seconds")}), flush=True)
    return rows, root


def summarise(rows: list[dict], setting: dict, out: Path, discussion: str) -> None:
    per_method = aggregate_by_method(rows)
    table = method_table(per_method)
    write_results(out, {"setting": setting, "methods": per_method, "runs": rows, "environment": environment()})
    md = out.with_suffix(".md")
    md.write_text(f"# {setting['benchmark']}\n\n{json.dumps(setting)}\n\n"
                  "Mean ± std over orders and seeds (scores in %; BWT/FWT are `–` for `mtl`, which has one joint stage).\n\n"
                  f"{table}\n\n{discussion}\n", encoding="utf-8")
    print(table)
    print(f"wrote {md}")
