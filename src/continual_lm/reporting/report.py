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


def run_report(record: RunRecord) -> str:
    return "\n".join([
        f"# {record.name} — {record.method}", "",
        f"OP **{_fmt(record.op)}** · BWT **{_fmt(record.bwt)}** · FWT **{_fmt(record.fwt)}** · "
        f"LA **{_fmt(record.la)}** · F **{_fmt(record.f)}** · AP **{_fmt(record.ap)}** · {record.seconds:.0f} s", "",
        "Accuracy matrix (%): row = after training on that stage, column = evaluated task."
        + (" Scored by " + ", ".join(f"{t}: {m}" for t, m in record.task_metrics.items()) + "." if record.task_metrics else ""), "",
        matrix_table(record.tasks, record.stages, record.acc_matrix, record.initial), "",
        *forgetting_table(record.forgetting),
    ])


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
            "seconds": record.seconds}


def comparison_table(rows: list[dict]) -> str:
    """rows: summary_row(...) per run -> a markdown table."""
    return markdown_table(["run", "experiment", "method", "OP", "BWT", "FWT", "LA", "F", "AP", "seconds"],
                          [[r["run"], r.get("experiment", ""), r["method"], *(_fmt(r[k]) for k in METRIC_KEYS),
                            f"{r['seconds']:.0f}"] for r in rows])


def pyplot():
    """matplotlib's pyplot on the file-only Agg backend (no display is needed or used)."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    return plt


def plot_matrix(path: Path, tasks: list[str], stages: list[str], acc_matrix: list[list[float | None]],
                title: str) -> None:
    plt = pyplot()

    fig, ax = plt.subplots(figsize=(1.2 + 0.9 * len(tasks), 1.0 + 0.6 * len(stages)))
    values = [[float("nan") if v is None else v for v in row] for row in acc_matrix]  # blank: not evaluated
    im = ax.imshow(values, vmin=0, vmax=100, cmap="viridis", aspect="auto")
    ax.set_xticks(range(len(tasks)), tasks, rotation=45, ha="right")
    ax.set_yticks(range(len(stages)), stages)
    ax.set_xlabel("evaluated task")
    ax.set_ylabel("after training on")
    for i, row in enumerate(acc_matrix):
        for j, v in enumerate(row):
            if v is None:
                continue
            ax.text(j, i, f"{v:.0f}", ha="center", va="center", color="w" if v < 60 else "k", fontsize=8)
    ax.set_title(title, fontsize=9)
    fig.colorbar(im, ax=ax, fraction=0.046)
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