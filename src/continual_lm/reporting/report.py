"""Human-readable views of a run: the accuracy-matrix table (markdown/console) and its heat map."""
from __future__ import annotations

from pathlib import Path

from ..evaluation.metrics import average_performance, forgetting, learning_accuracy
from .run_folder import RunRecord


METRIC_KEYS = ("op", "bwt", "fwt", "la", "f", "ap")  # the columns of the comparison tables, in order


def _fmt(x: float | None) -> str:
    return "–" if x is None else f"{x:.1f}"


def markdown_table(header: list[str], rows: list[list]) -> str:
    """A markdown table: one header row, then one line per row (cells already formatted)."""
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    return "\n".join(lines + ["| " + " | ".join(str(c) for c in row) + " |" for row in rows])


def matrix_table(tasks: list[str], stages: list[str], acc_matrix: list[list[float | None]],
                 initial: list[float]) -> str:
    rows = [["(initial)", *map(_fmt, initial)]] + [[s, *map(_fmt, row)] for s, row in zip(stages, acc_matrix)]
    return markdown_table(["after \\ on", *tasks], rows)


def _interval(cell: dict | None) -> str:
    return "–" if cell is None or cell.get("low") is None else f"{cell['low']:.1f}–{cell['high']:.1f}"


def task_table(record: RunRecord) -> str:
    """Per task: its metric, test size, the scores without learning, and the final score with its 95% interval."""
    final = record.intervals[-1] if record.intervals else [None] * len(record.tasks)
    n = len(record.tasks)
    chance, majority = record.chance or [None] * n, record.majority or [None] * n
    n_test = record.n_test or ["–"] * n
    return markdown_table(
        ["task", "metric", "n_test", "chance", "majority", "initial", "final", "final 95% CI"],
        [[t, record.task_metrics.get(t, "–"), n_test[j], _fmt(chance[j]), _fmt(majority[j]),
          _fmt(record.initial[j] if record.initial else None), _fmt(record.acc_matrix[-1][j]), _interval(final[j])]
         for j, t in enumerate(record.tasks)])


def interval_table(record: RunRecord) -> str:
    """The accuracy matrix's 95% intervals, cell by cell (test-set sampling: evaluation/metrics.py)."""
    return markdown_table(["after \\ on", *record.tasks],
                          [[s, *map(_interval, row)] for s, row in zip(record.stages, record.intervals)])


def run_report(record: RunRecord) -> str:
    op_ci = f" (95% CI {record.op_ci95[0]:.1f}–{record.op_ci95[1]:.1f})" if record.op_ci95 else ""
    lines = [
        f"# {record.name} — {record.method}", "",
        f"OP **{_fmt(record.op)}**{op_ci} · BWT **{_fmt(record.bwt)}** · FWT **{_fmt(record.fwt)}** · "
        f"LA **{_fmt(record.la)}** · F **{_fmt(record.f)}** · AP **{_fmt(record.ap)}** · {record.seconds:.0f} s", "",
        "Accuracy matrix (%): row = after training on that stage, column = evaluated task.", "",
        matrix_table(record.tasks, record.stages, record.acc_matrix, record.initial), "",
        "Tasks (chance: a random option; majority: always the most frequent training answer; the 95% interval "
        "covers test-set sampling only, not seeds):", "", task_table(record), ""]
    if record.intervals:
        lines += ["95% confidence intervals of every cell:", "", interval_table(record), ""]
    if record.timing:
        lines += ["Seconds: " + ", ".join(f"{k} {v:.1f}" for k, v in record.timing.items()) + ".", ""]
    return "\n".join(lines + forgetting_table(record.forgetting))


def forgetting_table(rows: list[dict] | None) -> list[str]:
    """The forgetting decomposition: how much of each old task's drop a short recovery brings back."""
    if not rows:
        return []
    table = markdown_table(
        ["task", "after own training", "final", "drop", "recovered", "recoverable", "spurious share"],
        [[r["task_index"], *(_fmt(r[k]) for k in ("after_own_training", "final", "drop", "recovered", "recoverable")),
          "–" if r["spurious_share"] is None else f"{100 * r['spurious_share']:.0f}%"] for r in rows])
    return ["Forgetting decomposition (recoverable = brought back by a short fine-tuning on a few training "
            "examples; spurious share = recoverable / drop):", "", table, ""]


def summary_row(run: str, record: RunRecord) -> dict:
    """One run's line in the comparison tables. LA, F and AP are recomputed from the matrix so that runs written
    before they were recorded compare too."""
    acc = record.acc_matrix
    return {"run": run, "method": record.method, "op": record.op, "bwt": record.bwt, "fwt": record.fwt,
            "la": learning_accuracy(acc), "f": forgetting(acc), "ap": average_performance(acc),
            "seconds": record.seconds, "op_ci95": record.op_ci95}


def comparison_table(rows: list[dict]) -> str:
    """rows: summary_row(...) per run -> a markdown table, with OP's 95% interval (test-set sampling) where the run
    recorded one."""
    def interval(r: dict) -> str:
        ci = r.get("op_ci95")
        return f"{ci[0]:.1f}–{ci[1]:.1f}" if ci else "–"
    return markdown_table(["run", "experiment", "method", "OP", "OP 95% CI", "BWT", "FWT", "LA", "F", "AP", "seconds"],
                          [[r["run"], r.get("experiment", ""), r["method"], _fmt(r["op"]), interval(r),
                            *(_fmt(r[k]) for k in METRIC_KEYS[1:]), f"{r['seconds']:.0f}"] for r in rows])


def pyplot():
    """matplotlib's pyplot on the file-only Agg backend (no display is needed or used)."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    return plt


def short_label(name: str, width: int = 22) -> str:
    """A tick label that fits: long task names (SuperNI's task1572_samsum_summary…) keep their start and end."""
    return name if len(name) <= width else name[: width - 9] + "…" + name[-8:]


def plot_matrix(path: Path, tasks: list[str], stages: list[str], acc_matrix: list[list[float | None]],
                title: str) -> None:
    """The accuracy matrix as a heat map, its cells written in; sized by the number of tasks so that 15 tasks with
    long names stay legible (labels shortened in the middle, smaller cell text)."""
    plt = pyplot()
    n, m = len(tasks), len(stages)
    cell_font = 8 if n <= 8 else 6.5
    fig, ax = plt.subplots(figsize=(2.4 + 0.62 * n, 1.8 + 0.42 * m))
    values = [[float("nan") if v is None else v for v in row] for row in acc_matrix]  # blank: not evaluated
    im = ax.imshow(values, vmin=0, vmax=100, cmap="viridis", aspect="auto")
    ax.set_xticks(range(n), [short_label(t) for t in tasks], rotation=50, ha="right", rotation_mode="anchor",
                  fontsize=8)
    ax.set_yticks(range(m), [short_label(s) for s in stages], fontsize=8)
    ax.set_xlabel("evaluated task")
    ax.set_ylabel("after training on")
    for i, row in enumerate(acc_matrix):
        for j, v in enumerate(row):
            if v is None:
                continue
            ax.text(j, i, f"{v:.0f}", ha="center", va="center", color="w" if v < 60 else "k", fontsize=cell_font)
    ax.set_title(title, fontsize=9)
    fig.colorbar(im, ax=ax, fraction=0.046, pad=0.02)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def plot_methods(path: Path, per_method: dict[str, dict], title: str) -> None:
    """A grid's OP and BWT per method: bars at the mean over cells, error bars ± one standard deviation."""
    plt = pyplot()
    names = list(per_method)
    fig, axes = plt.subplots(1, 2, figsize=(3 + 0.9 * len(names), 3.6), sharex=True)
    for ax, key, label in zip(axes, ("op", "bwt"), ("OP (%)", "BWT (points)")):
        stats = [per_method[n].get(key) for n in names]
        means = [s["mean"] if s else 0.0 for s in stats]
        stds = [s["std"] if s else 0.0 for s in stats]
        ax.bar(range(len(names)), means, yerr=stds, capsize=3, color="#4c72b0" if key == "op" else "#c44e52")
        ax.set_xticks(range(len(names)), [short_label(n, 26) for n in names], rotation=50, ha="right",
                      rotation_mode="anchor", fontsize=8)
        ax.set_ylabel(label)
        ax.axhline(0, color="k", linewidth=0.6)
        ax.grid(axis="y", alpha=0.3)
    fig.suptitle(title, fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def plot_curves(path: Path, columns: dict[str, dict], title: str) -> None:
    """Task 0's score during Task 1, one line per method (mean ± std over seeds): the picture of spurious forgetting.
    ``columns``: a grid's per-method Task 0 / Task 1 columns, with their "curve" {step: mean/std} ("end" last)."""
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(8.8, 4.0))
    last = max((int(s) for c in columns.values() for s in c["curve"] if s != "end"), default=0)
    for k, (name, c) in enumerate(columns.items()):
        points = sorted(((int(s), v) for s, v in c["curve"].items() if s != "end"), key=lambda p: p[0])
        xs = [x for x, _ in points]
        ys = [v["mean"] for _, v in points]
        errs = [v.get("std", 0.0) for _, v in points]
        if "end" in c["curve"]:  # the stage's end, drawn one gap after the last watched step
            xs.append(last + max(10, last // 4))
            ys.append(c["curve"]["end"]["mean"])
            errs.append(c["curve"]["end"].get("std", 0.0))
        ax.errorbar(xs, ys, yerr=errs, marker="osD^v"[k // 10 % 5], linestyle=("-", "--")[k // 10 % 2], markersize=3,
                    capsize=2, label=short_label(name, 40))
    ax.set_xlabel("training step of Task 1 (last point: end of Task 1)")
    ax.set_ylabel("Task 0 score (%)")
    ax.set_ylim(0, 100)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7, loc="center left", bbox_to_anchor=(1.01, 0.5))  # outside: the lines stay visible
    ax.set_title(title, fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def _mean_std(values: list[float]) -> tuple[float, float] | None:
    values = [v for v in values if v is not None]
    if not values:
        return None
    mean = sum(values) / len(values)
    return mean, (sum((v - mean) ** 2 for v in values) / len(values)) ** 0.5


def aggregate_by_method(rows: list[dict]) -> dict[str, dict]:
    """rows: summary_row(...) per run -> per method mean/std of each (runs in order seen)."""
    keys = (*METRIC_KEYS, "seconds")
    out: dict[str, dict] = {}
    for r in rows:
        out.setdefault(r["method"], {"runs": 0, **{k: [] for k in keys}})
        out[r["method"]]["runs"] += 1
        for k in keys:
            out[r["method"]][k].append(r[k])
    for stats in out.values():
        for k in keys:
            ms = _mean_std(stats[k])
            stats[k] = None if ms is None else {"mean": round(ms[0], 2), "std": round(ms[1], 2)}
    return out


PAIRED_KEYS = ("op", "bwt", "f", "ap", "la")  # what the paired tables report


def paired_differences(rows: list[dict], baseline: str, keys: tuple[str, ...] = ("op", "bwt"),
                       pair: tuple[str, ...] = ("order", "seed")) -> dict[str, dict]:
    """Per method other than ``baseline``: mean and standard error (sample std / √n) of (its value − the
    baseline's) over the cells (``pair`` values) both ran. Pairing cancels what a cell does to every method
    (an easy order, a lucky seed), so a difference of more than about 2 standard errors is unlikely to be noise."""
    base = {tuple(r[k] for k in pair): r for r in rows if r["method"] == baseline}
    diffs: dict[str, dict[str, list[float]]] = {}
    for r in rows:
        other = base.get(tuple(r[k] for k in pair))
        if r["method"] == baseline or other is None:
            continue
        per_key = diffs.setdefault(r["method"], {k: [] for k in keys})
        for k in keys:
            if r[k] is not None and other[k] is not None:
                per_key[k].append(r[k] - other[k])
    out: dict[str, dict] = {}
    for method, per_key in diffs.items():
        out[method] = {"cells": max(len(v) for v in per_key.values())}
        for k, values in per_key.items():
            ms = _mean_std(values)
            if ms is None:
                out[method][k] = None
                continue
            # sample std / √n = population std / √(n − 1)
            se = ms[1] / (len(values) - 1) ** 0.5 if len(values) > 1 else None
            out[method][k] = {"mean": round(ms[0], 2), "se": None if se is None else round(se, 2)}
    return out


def paired_table(diffs: dict[str, dict], baseline: str) -> str:
    def cell(x):
        return "–" if x is None else f"{x['mean']:+.1f}" + ("" if x["se"] is None else f" ± {x['se']:.1f}")
    keys = [k for k in next(iter(diffs.values()), {}) if k != "cells"]
    return markdown_table(["method", "cells", *(f"{k.upper()} − {baseline}" for k in keys)],
                          [[name, d["cells"], *(cell(d[k]) for k in keys)] for name, d in diffs.items()])


def method_table(per_method: dict[str, dict]) -> str:
    def cell(x):
        return "–" if x is None else f"{x['mean']:.1f} ± {x['std']:.1f}"
    return markdown_table(["method", "runs", "OP", "BWT", "FWT", "LA", "F", "AP", "seconds / run"],
                          [[name, s["runs"], *(cell(s.get(k)) for k in METRIC_KEYS), f"{s['seconds']['mean']:.0f}"]
                           for name, s in per_method.items()])