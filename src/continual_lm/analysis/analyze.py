"""``continual-lm analyze``: each analysis on a run folder, writing JSON and a PNG into <run>/analysis/."""
from __future__ import annotations

from pathlib import Path

from ..config import RecoverySettings
from ..errors import ConfigError
from ..methods.importance import diagonal_fisher
from ..models.weights import effective_matrices, flat_weights, trainable_as, tracked_parameters
from ..reporting.run_folder import checkpoint_path, write_json
from .answers import plot_answers, run_answer_alignment
from .angles import layer_and_type, pearson, plot_angles, update_angles
from .landscape import loss_surface, plot_landscape, project
from .recovery import recovery_curve
from .run_loader import LoadedRun, load_run
from ..reporting.report import pyplot

ANALYSES = ("recovery", "angles", "landscape", "fisher", "answers")
CHECKPOINT_ANALYSES = ("recovery", "angles", "landscape", "fisher")


def _stages(run: LoadedRun) -> tuple[str, str]:
    stages = run.record.stages
    if len(stages) < 2:
        raise ConfigError(f"{run.folder}: the analyses compare two stages; this run has {stages}")
    return stages[0], stages[1]


def _split_step(run: LoadedRun, stage: str, split: int | None) -> int:
    """The checkpoint that separates the "early" and the "later" part of a stage (default: the middle one)."""
    numeric = [s for s in run.steps(stage) if s != "end" and s != 0]
    if split is not None:
        if split not in numeric:
            raise ConfigError(f"--split {split}: no checkpoint at that step of {stage}; have {numeric}")
        return split
    if not numeric:
        raise ConfigError(f"{run.folder}: stage {stage} needs a checkpoint between its start and end")
    return numeric[len(numeric) // 2]


def matrices_at(run: LoadedRun, stage: str, step) -> dict:
    run.load(stage, step)
    return effective_matrices(run.backbone)


def run_recovery(run: LoadedRun, out: Path, settings: RecoverySettings) -> dict:
    first, second = _stages(run)
    rows = recovery_curve(run, second, first, settings)
    learnt, initial = run.record.acc_matrix[0][0], (run.record.initial or [None])[0]
    result = {"stage": second, "old_task": first, "settings": settings.model_dump(), "after_own_training": learnt,
              "initial": initial, "points": rows,
              # a task that never rose above its untrained score was never learnt: there is nothing to "recover"
              "never_learnt": initial is not None and learnt <= initial}
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(5.5, 3.4))
    labels = [str(r["step"]) for r in rows]
    ax.plot(labels, [r["before"] for r in rows], "o-", label="during " + second)
    ax.plot(labels, [r["after_recovery"] for r in rows], "s-", label=f"after recovery ({settings.steps} steps)")
    ax.axhline(result["after_own_training"], ls="--", c="gray", label=f"after {first}")
    ax.set_xlabel(f"checkpoint (step of {second})")
    ax.set_ylabel(f"{first} score (%)")
    ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(out / "recovery.png", dpi=110)
    plt.close(fig)
    return result


def run_angles(run: LoadedRun, out: Path, split: int | None, energy: float) -> dict:
    first, second = _stages(run)
    mid = _split_step(run, second, split)
    t0_start, t0_end = matrices_at(run, first, 0), matrices_at(run, first, "end")
    t1_start, t1_mid, t1_end = (matrices_at(run, second, 0), matrices_at(run, second, mid),
                                matrices_at(run, second, "end"))
    pairs = {
        f"{first} vs {second}[0:{mid}]": update_angles(t0_start, t0_end, t1_start, t1_mid, energy),
        f"{first} vs {second}[{mid}:end]": update_angles(t0_start, t0_end, t1_mid, t1_end, energy),
        f"{second}[0:{mid}] vs {second}[{mid}:end]": update_angles(t1_start, t1_mid, t1_mid, t1_end, energy),
    }
    plot_angles(pairs, out / "angles.png")
    return {"split_step": mid, "energy": energy, "pairs": pairs}


def run_landscape(run: LoadedRun, out: Path, split: int | None, grid: int, n_examples: int) -> dict:
    first, second = _stages(run)
    mid = _split_step(run, second, split)
    weights = {}
    for step in run.steps(second):
        run.load(second, step)
        weights[step] = flat_weights(run.backbone)
    theta0 = weights[0]
    d1 = {n: weights[mid][n] - theta0[n] for n in theta0}
    d2 = {n: weights["end"][n] - weights[mid][n] for n in theta0}
    examples = {first: run.task(first).test[:n_examples], second: run.task(second).train[:n_examples]}
    surface = loss_surface(run.backbone, theta0, d1, d2, examples, grid)
    trajectory = [{"step": s, **dict(zip(("x", "y"), project(w, theta0, d1, d2)))} for s, w in weights.items()]
    plot_landscape(surface, trajectory, out / "landscape.png")
    return {"origin": f"{second} step 0", "d1": f"{second}[0:{mid}]", "d2": f"{second}[{mid}:end]",
            "surface": surface, "trajectory": trajectory}


def run_fisher(run: LoadedRun, out: Path, split: int | None, energy: float, batches: int) -> dict:
    """Per weight matrix: mean diagonal Fisher of the first task (at its end) vs its update angle."""
    first, second = _stages(run)
    mid = _split_step(run, second, split)
    angles = {r["matrix"]: r["mean_angle"] for r in run_angles(run, out, mid, energy)["pairs"][f"{first} vs {second}[0:{mid}]"]}
    run.load(first, "end")
    params = tracked_parameters(run.backbone)
    task = run.task(first)
    bs = run.cfg.training.batch_size
    with trainable_as(run.backbone, params):
        fisher = diagonal_fisher(params, (lambda s=s: run.backbone.loss(task.train[s:s + bs])
                                          for s in range(0, min(len(task.train), bs * batches), bs)))
    per_matrix: dict[str, list[float]] = {}
    for name, f in fisher.items():
        for matrix in angles:
            if name.replace("base_model.model.", "").startswith(matrix + "."):
                per_matrix.setdefault(matrix, []).append(float(f.mean()))
    rows = [{"matrix": m, "layer": layer_and_type(m)[0], "fisher": sum(v) / len(v), "angle": angles[m]}
            for m, v in per_matrix.items()]
    r = pearson([x["fisher"] for x in rows], [x["angle"] for x in rows])
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(5, 3.4))
    sc = ax.scatter([x["fisher"] for x in rows], [x["angle"] for x in rows], c=[x["layer"] or 0 for x in rows], cmap="viridis")
    fig.colorbar(sc, ax=ax, label="layer")
    ax.set_xscale("symlog", linthresh=1e-8)
    ax.set_xlabel(f"mean diagonal Fisher after {first}")
    ax.set_ylabel("update angle (°)")
    ax.set_title(f"Pearson r = {r:.2f}" if r is not None else "Pearson r undefined", fontsize=9)
    fig.tight_layout()
    fig.savefig(out / "fisher_vs_angle.png", dpi=110)
    plt.close(fig)
    return {"split_step": mid, "pearson": r, "matrices": rows}


def check_checkpoints(run: LoadedRun, what: list[str], split: int | None) -> None:
    """Every checkpoint the analyses will read, checked before any of them starts (one line naming what is missing)."""
    if not any(w in CHECKPOINT_ANALYSES for w in what):
        return
    first, second = _stages(run)
    needed = set()
    if "recovery" in what or "landscape" in what:
        needed |= {(second, 0), (second, "end")}
    if "angles" in what or "fisher" in what:
        needed |= {(first, 0), (first, "end"), (second, 0), (second, "end")}
    missing = sorted(f"{stage} step {step}" for stage, step in needed
                     if not checkpoint_path(run.folder, stage, step).exists())
    if missing:
        raise ConfigError(f"{run.folder}: the analyses need checkpoints it lacks ({', '.join(missing)}): run with "
                          "checkpoint_steps set (step 0 and the end of every stage are then always saved)")
    if any(w in what for w in ("angles", "landscape", "fisher")):
        _split_step(run, second, split)


def analyze(folder: str | Path, what: list[str], split: int | None = None, energy: float = 0.99, grid: int = 21,
            n_examples: int = 64, recovery: RecoverySettings | None = None, fisher_batches: int = 8) -> dict:
    unknown = [w for w in what if w not in ANALYSES]
    if unknown:
        raise ConfigError(f"analysis: unknown {unknown}; known: {list(ANALYSES)}")
    run = load_run(folder)
    check_checkpoints(run, what, split)
    out = run.folder / "analysis"
    out.mkdir(exist_ok=True)
    results = {}
    for name in what:
        if name == "recovery":
            results[name] = run_recovery(run, out, recovery or RecoverySettings())
        elif name == "angles":
            results[name] = run_angles(run, out, split, energy)
        elif name == "landscape":
            results[name] = run_landscape(run, out, split, grid, n_examples)
        elif name == "answers":
            results[name] = run_answer_alignment(run.folder, run.task_labels())
            plot_answers(results[name], out / "answers.png")
        else:
            results[name] = run_fisher(run, out, split, energy, fisher_batches)
        write_json(out / f"{name}.json", results[name])
    return results
