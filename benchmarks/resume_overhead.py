"""What resume points cost: wall time of a Standard CL run (MiniLM + LoRA, seq) with none, with the default (every 50
steps and at each stage's end) and with one every 10 steps, side by side in one process, interleaved; the seconds
spent writing resume points inside each run (their share of the run: robust to a busy machine, where whole-run times
vary by more than the overhead); and the size of one point for MiniLM + LoRA and for the Biography model under full
fine-tuning. Goal: ≤ 2% at the default.

    python benchmarks/resume_overhead.py [--quick] [--out FILE] [--threads 2]
"""
import sys
import tempfile
import time
from pathlib import Path

import torch

from continual_lm.config import load_config
from continual_lm.experiments.benchmark import script_parser, write_results
from continual_lm.experiments.runner import run_experiment
from continual_lm.training.resume import ResumeStore

HERE = Path(__file__).resolve().parent
BIOGRAPHY = HERE.parent / "configs" / "biography.yaml"
DATA = HERE.parents[1] / "shared" / "data" / "cl_benchmark"
SETTINGS = {"none": "training.save_every=null", "default (50)": "training.save_every=50", "every 10": "training.save_every=10"}


def point_size(folder: Path) -> int:
    return sum(p.stat().st_size for p in (folder / "resume").iterdir())


def main() -> int:
    args = script_parser(__doc__, HERE / "results", "resume_overhead.json").parse_args()
    torch.set_num_threads(args.threads)
    if not DATA.is_dir():
        sys.exit(f"needs the benchmark data in {DATA}")
    n_train, repeats = (100, 2) if args.quick else (400, 3)
    work = Path(tempfile.mkdtemp(prefix="clm-resume-"))
    seconds: dict[str, list[float]] = {k: [] for k in SETTINGS}
    saving: dict[str, list[float]] = {k: [] for k in SETTINGS}
    size = {}
    spent = [0.0]
    original_save = ResumeStore.save

    def timed_save(self, *a, **kw):
        started = time.perf_counter()
        try:
            return original_save(self, *a, **kw)
        finally:
            spent[0] += time.perf_counter() - started
    ResumeStore.save = timed_save
    for r in range(repeats):
        for label, setting in SETTINGS.items():
            cfg = load_config(HERE.parent / "configs" / "standard_cl.yaml",
                              [f"data.data_dir={DATA}", f"data.n_train={n_train}", "data.n_test=50", setting,
                               "training.keep_resume=true"])
            spent[0] = 0.0
            record, folder = run_experiment(cfg, work / f"{r}-{label}")
            seconds[label].append(record.seconds)
            saving[label].append(round(spent[0], 3))
            if label != "none":
                size["minilm_lora"] = point_size(folder)
            print(label, record.seconds, flush=True)
    bio = load_config(BIOGRAPHY, ["training.max_steps=2", "training.keep_resume=true", "curve_steps=[]"])
    _, folder = run_experiment(bio, work / "biography")
    size["biography_full_finetuning"] = point_size(folder)
    # the minimum over repeats: the first repeat runs cold (a median of two would count it)
    best = {k: min(v) for k, v in seconds.items()}
    write_results(args.out, {
        "setting": {"config": "configs/standard_cl.yaml", "method": "seq", "n_train": n_train, "n_test": 50,
                    "repeats": repeats, "threads": args.threads},
        "run_seconds": seconds, "min_run_seconds": best,
        "overhead": {k: round(best[k] / best["none"] - 1, 4) for k in SETTINGS if k != "none"},
        "saving_seconds": saving,
        "saving_share_of_run": {k: round(sum(saving[k]) / sum(seconds[k]), 5) for k in SETTINGS if k != "none"},
        "goal_overhead_at_default": 0.02, "point_bytes": size,
    })
    return 0


if __name__ == "__main__":
    sys.exit(main())
