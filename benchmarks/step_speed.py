"""How close a training step of the toolkit comes to the physical limit for its backbone, and where a run's time goes.

Encoder (Standard CL, label space of the run, MiniLM + LoRA r8), side by side in one process on the same batches:
- ``loop``: optimiser steps of ``training/loop.py`` (method hooks, tokenisation, clipping, scheduler, logging);
- ``bare``: the same computation written directly against transformers + peft — batches tokenised beforehand, the
  encoder on prompts and labels, mean pooling, cosine logits, cross-entropy, backward, AdamW step;
the ratio loop / bare (goal ≤ 1.15). Then the breakdown of one full run of ``configs/standard_cl.yaml`` with ``seq``
(training, evaluation, set-up) and the evaluation share of its wall time (goal ≤ 25%).

Causal (``configs/standard_cl_generative.yaml``: SmolLM2-135M-Instruct + LoRA r8, chat template, 128 tokens):
``loop`` against two bare transformers + peft steps on the same tokenised batches — ``bare_full_head`` (the model's
own loss: the LM head at every position, what the loop did before) and ``bare_answer_head`` (the head on the answer
positions only, ``logits_to_keep``) — the ratio loop / bare_answer_head (goal ≤ 1.15), and seconds per evaluated
example (greedy generation). Seconds are process CPU seconds (wall time on a shared machine measures the load); each
figure is the minimum over repeats (the first repeat runs cold).

    python benchmarks/step_speed.py [--quick] [--out FILE] [--threads 2] [--backbone encoder|causal|both]
"""
from __future__ import annotations

import json
import sys
import tempfile
import time
from pathlib import Path

import torch
import torch.nn.functional as F

from continual_lm.config import load_config
from continual_lm.experiments.benchmark import script_parser, write_results
from continual_lm.experiments.runner import run_experiment
from continual_lm.data.task import Task
from continual_lm.evaluation.evaluate import evaluate_task
from continual_lm.experiments.setup import build_tasks, prepare_backbone
from continual_lm.methods import create_method
from continual_lm.training.loop import batches, make_accelerator, run_sequence

SHARED_DATA = Path(__file__).resolve().parents[2] / "shared" / "data"
RESULTS = Path(__file__).resolve().parent / "results"

CONFIG = Path(__file__).resolve().parents[1] / "configs" / "standard_cl.yaml"
GENERATIVE_CONFIG = CONFIG.with_name("standard_cl_generative.yaml")


def regime_config(overrides: list[str], config: Path = CONFIG):
    return load_config(config, [f"data.data_dir={SHARED_DATA / 'cl_benchmark'}", *overrides])


def loop_seconds_per_step(steps: int, config: Path = CONFIG, seconds: str = "train_seconds") -> float:
    """Mean seconds per optimiser step of the loop on the first task (seq), evaluation excluded (``seconds``: the
    stage's wall seconds, or ``train_cpu_seconds``)."""
    cfg = regime_config([f"training.max_steps={steps}", "data.tasks=[dbpedia]", "data.n_test=8"], config)
    tasks, _ = build_tasks(cfg)
    acc = make_accelerator()
    backbone = prepare_backbone(cfg, tasks, None, acc)
    records: list[dict] = []
    run_sequence(cfg, tasks, backbone, create_method("seq"), records.append, acc)
    stage = next(r for r in records if r["event"] == "stage_end")
    return stage[seconds] / stage["steps"]


def bare_seconds_per_step(steps: int) -> float:
    """The same batches and model, tokenised beforehand, stepped by hand: the floor for this backbone."""
    cfg = regime_config([f"training.max_steps={steps}", "data.tasks=[dbpedia]", "data.n_test=8"])
    tasks, _ = build_tasks(cfg)
    acc = make_accelerator()
    backbone = prepare_backbone(cfg, tasks, None, acc)
    model, tok, scale = backbone.model, backbone.tokenizer, cfg.model.label_scale
    labels = list(backbone.label_space)
    data = batches(tasks[0].train, cfg.training.batch_size, cfg.seed * 1000, acc)
    prepared = []
    for _ in range(steps):
        batch = next(data)
        enc = tok([ex.prompt for ex in batch], padding=True, truncation=True, max_length=cfg.model.max_length,
                  return_tensors="pt")
        prepared.append((enc, torch.tensor([labels.index(ex.target) for ex in batch])))
    label_enc = tok(labels, padding=True, return_tensors="pt")
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=cfg.training.lr)
    model.train()

    def pooled(enc):
        hidden = model(input_ids=enc["input_ids"], attention_mask=enc["attention_mask"]).last_hidden_state
        mask = enc["attention_mask"].unsqueeze(-1)
        return F.normalize((hidden * mask).sum(1) / mask.sum(1), dim=-1)

    started = time.perf_counter()
    for enc, target in prepared:
        logits = scale * pooled(enc) @ pooled(label_enc).T
        F.cross_entropy(logits, target).backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
    return (time.perf_counter() - started) / steps


def run_breakdown(n_train: int, n_test: int) -> dict:
    """One seq run of the regime config: wall time and the run's own per-phase seconds (metrics.json ``timing``)."""
    cfg = regime_config([f"data.n_train={n_train}", f"data.n_test={n_test}"])
    folder = Path(tempfile.mkdtemp(prefix="clm-speed-")) / "run"
    started = time.time()
    record, _ = run_experiment(cfg, folder)
    wall = time.time() - started
    phases = {k: round(v, 1) for k, v in record.timing.items()}
    return {"n_train": n_train, "n_test": n_test, "wall_seconds": round(wall, 1), "phases_seconds": phases,
            "evaluation_share": round(record.timing.get("evaluation", 0.0) / wall, 3), "op": record.op,
            "bwt": record.bwt}


def causal_rows(steps: int, repeats: int, n_eval: int) -> dict:
    """SmolLM2 + LoRA: CPU seconds per step of the loop and of two bare steps, and per evaluated example."""
    overrides = [f"training.max_steps={steps}", "data.tasks=[dbpedia]", "data.n_test=8", "training.save_every=null"]
    cfg = regime_config(overrides, GENERATIVE_CONFIG)
    tasks, _ = build_tasks(cfg)
    acc = make_accelerator()

    def bare(answer_head: bool) -> float:
        backbone = prepare_backbone(cfg, tasks, None, acc)
        model = backbone.model
        data = batches(tasks[0].train, cfg.training.batch_size, cfg.seed * 1000, acc)
        prepared = [backbone._teacher_forced(next(data)) for _ in range(steps)]  # tokenised beforehand
        optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=cfg.training.lr)
        model.train()
        started = time.process_time()
        for kwargs, labels in prepared:
            if answer_head:
                keep = F.pad(labels[:, 1:] != -100, (0, 1), value=False)
                logits = model(**kwargs, logits_to_keep=keep).logits
                loss = F.cross_entropy(logits, labels[:, 1:][keep[:, :-1]])
            else:
                loss = model(**kwargs, labels=labels).loss
            loss.backward()
            optimizer.step()
            optimizer.zero_grad(set_to_none=True)
        return (time.process_time() - started) / steps

    def evaluation() -> float:
        backbone = prepare_backbone(cfg, tasks, None, acc)
        examples = tasks[0].test[:n_eval]
        started = time.process_time()
        evaluate_task(backbone, Task("dbpedia", [], examples, "exact_match", tasks[0].options), cfg.training.eval_batch_size)
        return (time.process_time() - started) / len(examples)

    rows: dict[str, list[float]] = {"loop": [], "bare_full_head": [], "bare_answer_head": [], "evaluation": []}
    for _ in range(repeats):  # interleaved, so drifts in machine load hit all alike
        rows["loop"].append(loop_seconds_per_step(steps, GENERATIVE_CONFIG, "train_cpu_seconds"))
        rows["bare_full_head"].append(bare(False))
        rows["bare_answer_head"].append(bare(True))
        rows["evaluation"].append(evaluation())
        print("causal " + "  ".join(f"{k} {v[-1]:.3f}" for k, v in rows.items()), flush=True)
    best = {k: min(v) for k, v in rows.items()}
    return {"setting": {"config": "configs/standard_cl_generative.yaml", "steps_timed": steps, "repeats": repeats,
                        "max_length": cfg.model.max_length, "batch_size": cfg.training.batch_size,
                        "evaluated_examples": n_eval, "seconds": "process CPU, minimum over repeats"},
            "cpu_seconds_per_step": {k: [round(x, 3) for x in rows[k]] for k in ("loop", "bare_full_head", "bare_answer_head")},
            "cpu_seconds_per_evaluated_example": [round(x, 3) for x in rows["evaluation"]],
            "ratio_loop_over_bare_answer_head": round(best["loop"] / best["bare_answer_head"], 3), "goal_ratio": 1.15,
            "ratio_answer_head_over_full_head": round(best["bare_answer_head"] / best["bare_full_head"], 3)}


def encoder_rows(quick: bool) -> dict:
    steps, repeats = (20, 2) if quick else (60, 3)
    loop, bare = [], []
    for _ in range(repeats):  # interleaved, so drifts in machine load hit both alike
        loop.append(loop_seconds_per_step(steps))
        bare.append(bare_seconds_per_step(steps))
        print(f"loop {loop[-1]:.4f} s/step  bare {bare[-1]:.4f} s/step", flush=True)
    ratio = min(loop) / min(bare)  # the minimum over repeats: the first runs cold
    breakdown = run_breakdown(*((100, 50) if quick else (1000, 200)))
    print(breakdown, flush=True)
    return {
        "setting": {"config": "configs/standard_cl.yaml", "backbone": "all-MiniLM-L6-v2 + LoRA r8 (query, value)",
                    "label_space": "all", "batch_size": 8, "steps_timed": steps, "repeats": repeats, "quick": quick},
        "loop_seconds_per_step": [round(x, 4) for x in loop], "bare_seconds_per_step": [round(x, 4) for x in bare],
        "ratio_loop_over_bare": round(ratio, 3), "goal_ratio": 1.15, "run": breakdown, "goal_evaluation_share": 0.25,
    }


def main() -> None:
    parser = script_parser(__doc__, RESULTS, "step_speed.json")
    parser.add_argument("--backbone", choices=["encoder", "causal", "both"], default="both")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    if not (SHARED_DATA / "cl_benchmark").is_dir():
        sys.exit(f"needs the benchmark data in {SHARED_DATA / 'cl_benchmark'}")
    # A run of one backbone keeps the other's rows of an earlier run of the same file.
    results = json.loads(args.out.read_text()) if args.out.exists() and args.backbone != "both" else {}
    results.pop("environment", None)
    if args.backbone in ("encoder", "both"):
        results["encoder"] = encoder_rows(args.quick)
    if args.backbone in ("causal", "both"):
        results["causal"] = causal_rows(*((3, 2, 16) if args.quick else (8, 3, 64)))
    results["threads"] = args.threads
    write_results(args.out, results)


if __name__ == "__main__":
    main()
