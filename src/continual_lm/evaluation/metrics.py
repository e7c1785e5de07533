"""Continual-learning metrics from an accuracy matrix: the one place these formulas live (one answer's score:
``scores.py``).

``acc_matrix[i][j]`` is the score (%) on task j after training on task i.
- OP  = mean_j acc_matrix[K-1][j]
- BWT = mean_{j<K-1} (acc_matrix[K-1][j] - acc_matrix[j][j])
- FWT = mean_{j>0} (acc_matrix[j-1][j] - initial[j])   (initial = the untrained model's score)
- LA  = mean_j acc_matrix[j][j]   (learning accuracy: each task right after its training — plasticity)
- F   = mean_{j<K-1} (max_{j<=l<K-1} acc_matrix[l][j] - acc_matrix[K-1][j])   (forgetting, Chaudhry et al. 2018:
        from each old task's best score, not its first)
- AP  = mean_i mean_{j<=i} acc_matrix[i][j]   (average performance over stages, EasyCL's "Avg")

Conventions: every average is a macro average over tasks (each task counts once, whatever its test size); BWT and
F divide by K-1, the number of old tasks (SAPT's code divides BWT by K). BWT, FWT, LA, F and AP need one stage per
task (a square matrix) and are None otherwise (joint multi-task training has one stage).

Uncertainty (``cell_interval``, ``op_interval``): a cell is the mean of its test examples' scores, so its 95%
interval is the Wilson score interval when every example scores 0 or 100 (exact match, letters, numbers: it stays
inside [0, 100] and is not empty at 0% or 100%, where the normal interval is), and mean ± 1.96·s/√n otherwise
(ROUGE-L, SARI, edit similarity; s the sample standard deviation). OP's interval is OP ± 1.96·√(Σ_j se_j²)/K, the
tasks' test sets being independent (se_j: the cell's standard error; for 0/100 scores the one the Wilson interval
implies, its width / (2·1.96), which unlike √(p(1−p)/n) is not zero at 0% or 100%). They measure
test-set sampling only, not the spread over seeds or orders (the grids report that).
"""
from __future__ import annotations

import math
from collections.abc import Sequence

Z95 = 1.959964  # the standard normal's 97.5% quantile

def _mean(xs: list[float]) -> float | None:
    return sum(xs) / len(xs) if xs else None


def overall_performance(acc_matrix: Sequence[Sequence[float]]) -> float:
    return _mean(list(acc_matrix[-1]))  # type: ignore[return-value]


def backward_transfer(acc_matrix: Sequence[Sequence[float]]) -> float | None:
    """None when the matrix is not square (e.g. joint multi-task training has a single stage)."""
    k = len(acc_matrix[-1])
    if len(acc_matrix) != k:
        return None
    return _mean([acc_matrix[k - 1][j] - acc_matrix[j][j] for j in range(k - 1)])


def forward_transfer(acc_matrix: Sequence[Sequence[float]], initial: Sequence[float]) -> float | None:
    k = len(acc_matrix[-1])
    if len(acc_matrix) != k:
        return None
    return _mean([acc_matrix[j - 1][j] - initial[j] for j in range(1, k)])


def learning_accuracy(acc_matrix: Sequence[Sequence[float]]) -> float | None:
    """None when the matrix is not square (a single joint stage has no 'right after its training')."""
    k = len(acc_matrix[-1])
    if len(acc_matrix) != k:
        return None
    return _mean([acc_matrix[j][j] for j in range(k)])


def forgetting(acc_matrix: Sequence[Sequence[float]]) -> float | None:
    """Max-based forgetting F; None when the matrix is not square or has a single task."""
    k = len(acc_matrix[-1])
    if len(acc_matrix) != k or k < 2:
        return None
    return _mean([max(acc_matrix[l][j] for l in range(j, k - 1)) - acc_matrix[k - 1][j] for j in range(k - 1)])


def average_performance(acc_matrix: Sequence[Sequence[float]]) -> float | None:
    """AP: the mean over stages of the mean score of the tasks seen so far; None when the matrix is not square."""
    k = len(acc_matrix[-1])
    if len(acc_matrix) != k:
        return None
    return _mean([_mean([acc_matrix[i][j] for j in range(i + 1)]) for i in range(k)])  # type: ignore[misc]


def summarize(acc_matrix: Sequence[Sequence[float]], initial: Sequence[float]) -> dict[str, float | None]:
    return {"op": overall_performance(acc_matrix), "bwt": backward_transfer(acc_matrix),
            "fwt": forward_transfer(acc_matrix, initial), "la": learning_accuracy(acc_matrix),
            "f": forgetting(acc_matrix), "ap": average_performance(acc_matrix)}


def decompose_forgetting(acc_matrix: list[list[float]], recovered: dict[int, float]) -> list[dict]:
    """For each old task j: drop = a[j][j] − a[K−1][j]; recoverable = recovered − a[K−1][j];
    spurious share = recoverable / drop (None when nothing was forgotten)."""
    last = acc_matrix[-1]
    rows = []
    for j, score in sorted(recovered.items()):
        drop = acc_matrix[j][j] - last[j]
        recoverable = score - last[j]
        rows.append({"task_index": j, "after_own_training": acc_matrix[j][j], "final": last[j], "recovered": score,
                     "drop": drop, "recoverable": recoverable,
                     "spurious_share": (recoverable / drop) if drop > 0 else None})
    return rows


def cell_interval(scores: Sequence[float]) -> dict:
    """One evaluation's per-example scores (%) -> {"n", "mean", "se", "low", "high"} (95%; see the module doc).
    With one example of a graded metric there is no spread to estimate: se, low and high are None."""
    n = len(scores)
    if n == 0:
        raise ValueError("no scores: an empty test set has no interval")
    mean = sum(scores) / n
    if all(s in (0.0, 100.0) for s in scores):
        p, z2 = mean / 100, Z95 ** 2
        centre = (p + z2 / (2 * n)) / (1 + z2 / n)
        half = Z95 * math.sqrt(p * (1 - p) / n + z2 / (4 * n * n)) / (1 + z2 / n)
        low, high = 100 * max(0.0, centre - half), 100 * min(1.0, centre + half)
        return {"n": n, "mean": mean, "se": (high - low) / (2 * Z95), "low": low, "high": high}
    if n == 1:
        return {"n": 1, "mean": mean, "se": None, "low": None, "high": None}
    se = math.sqrt(sum((s - mean) ** 2 for s in scores) / (n - 1) / n)
    return {"n": n, "mean": mean, "se": se, "low": max(0.0, mean - Z95 * se), "high": min(100.0, mean + Z95 * se)}


def op_interval(final_row: Sequence[dict]) -> tuple[float, float] | None:
    """OP's 95% interval from the last stage's ``cell_interval`` of every task; None when a cell has no se."""
    if not final_row or any(c is None or c["se"] is None for c in final_row):
        return None
    op = sum(c["mean"] for c in final_row) / len(final_row)
    half = Z95 * math.sqrt(sum(c["se"] ** 2 for c in final_row)) / len(final_row)
    return max(0.0, op - half), min(100.0, op + half)
