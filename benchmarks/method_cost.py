"""What each method's training costs next to ``seq``: process CPU seconds of training (evaluation excluded) on the same
batches, every method in one process, interleaved over repeats, the minimum of each (the first repeat runs cold).

Encoder rows: ``configs/standard_cl.yaml`` (all-MiniLM-L6-v2 + LoRA, label space of the run) on its first two tasks
(dbpedia → amazon: the second stage is where a method's extra work runs). Methods that need a generative model
(LAMOL, LFPT5, SAPT) run on ``configs/standard_cl_generative.yaml`` (SmolLM2-135M-Instruct) beside their own ``seq``.
Goals: VR-MCL ≤ 1.3 × replay, LwF ≤ 1.4 × seq, every other method ≤ 1.5 × seq unless its docstring names the extra
work that makes it so (``extra_work`` in the JSON).

    python benchmarks/method_cost.py [--quick] [--out FILE] [--threads 1] [--methods a,b] [--no-generative]
"""
from __future__ import annotations

import sys
from pathlib import Path

import torch

from continual_lm.config import load_config
from continual_lm.experiments.benchmark import method_entries, script_parser, write_results
from continual_lm.experiments.runner import configured_method
from continual_lm.experiments.setup import build_tasks, prepare_backbone
from continual_lm.methods import METHODS, split_method_spec
from continual_lm.training.loop import make_accelerator, run_sequence

ROOT = Path(__file__).resolve().parents[1]
SHARED_DATA = ROOT.parent / "shared" / "data"
RESULTS = Path(__file__).resolve().parent / "results"
GENERATIVE_ONLY = ("lamol", "lfpt5", "sapt")
GOALS = {"vr_mcl": ("replay", 1.3), "lwf": ("seq", 1.4)}
DEFAULT_GOAL = 1.5


def train_cpu_seconds(config: Path, entry: str, n_train: int) -> float:
    name, params = split_method_spec(entry)
    cfg = load_config(config, [f"data.data_dir={SHARED_DATA / 'cl_benchmark'}", "data.tasks=[dbpedia, amazon]",
                               f"data.n_train={n_train}", "data.n_test=4", "training.save_every=null",
                               "training.predictions=none", f"method.name={name}"])
    cfg.method.params = {**cfg.method.params, **params}
    tasks, _ = build_tasks(cfg)
    acc = make_accelerator()
    backbone = prepare_backbone(cfg, tasks, None, acc)
    result = run_sequence(cfg, tasks, backbone, configured_method(cfg), accelerator=acc)
    return result.timing["train_cpu"]


def measure(config: Path, entries: list[str], n_train: int, repeats: int) -> dict[str, list[float]]:
    seconds: dict[str, list[float]] = {e: [] for e in entries}
    for repeat in range(repeats):  # interleaved: drifts in machine load hit every method alike
        for entry in entries:
            seconds[entry].append(round(train_cpu_seconds(config, entry, n_train), 2))
            print(f"[{repeat + 1}/{repeats}] {entry}: {seconds[entry][-1]:.1f} CPU-s", flush=True)
    return seconds


def extra_work(entry: str) -> str:
    cls = METHODS[split_method_spec(entry)[0]]
    return getattr(cls, "extra_work", "")


def main() -> None:
    parser = script_parser(__doc__, RESULTS, "method_cost.json")
    parser.add_argument("--methods", help="comma-separated method entries (default: every registered method)")
    parser.add_argument("--no-generative", action="store_true", help="skip the generative-only methods' rows")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    if not (SHARED_DATA / "cl_benchmark").is_dir():
        sys.exit(f"needs the benchmark data in {SHARED_DATA / 'cl_benchmark'}")
    chosen = method_entries(args.methods) if args.methods else sorted(METHODS)
    n_train, repeats = (48, 2) if args.quick else (160, 3)
    encoder = ["seq", *(m for m in chosen if m != "seq" and split_method_spec(m)[0] not in GENERATIVE_ONLY)]
    if "vr_mcl" in encoder and "replay" not in encoder:
        encoder.append("replay")
    runs = {"encoder": (ROOT / "configs" / "standard_cl.yaml", encoder)}
    generative = [m for m in chosen if split_method_spec(m)[0] in GENERATIVE_ONLY]
    if generative and not args.no_generative:
        runs["causal"] = (ROOT / "configs" / "standard_cl_generative.yaml", ["seq", *generative])
    results: dict = {"ratio_to_seq": {}, "cpu_seconds": {}, "goals": {}, "extra_work": {}}
    for backbone, (config, entries) in runs.items():
        seconds = measure(config, entries, n_train if backbone == "encoder" else max(8, n_train // 6), repeats)
        best = {e: min(v) for e, v in seconds.items()}
        results["cpu_seconds"][backbone] = seconds
        for entry in entries:
            if entry == "seq":
                continue
            ratio = round(best[entry] / best["seq"], 3)
            results["ratio_to_seq"][entry] = ratio
            base, limit = GOALS.get(entry, ("seq", DEFAULT_GOAL))
            measured = ratio if base == "seq" else round(best[entry] / best[base], 3)
            results["goals"][entry] = {"over": base, "ratio": measured, "goal": limit, "met": measured <= limit,
                                       "backbone": backbone}
            if measured > limit and extra_work(entry):
                results["extra_work"][entry] = extra_work(entry)
    results["setting"] = {"n_train_per_task": n_train, "repeats": repeats, "threads": args.threads,
                          "seconds": "process CPU seconds of training, minimum over repeats", "quick": args.quick}
    for entry, goal in results["goals"].items():
        print(f"{entry:28} {goal['ratio']:.2f} × {goal['over']}  (goal ≤ {goal['goal']})"
              f"{'' if goal['met'] else '  over: ' + (results['extra_work'].get(entry) or 'no reason given')}")
    write_results(args.out, results)


if __name__ == "__main__":
    main()
