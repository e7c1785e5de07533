"""Principal angles between the top singular subspaces of two weight updates, per weight matrix.

For ΔW_A and ΔW_B (out × in), take the left singular vectors covering ``energy`` (99%) of each one's spectral
energy Σσ²; the cosines of the principal angles are the singular values of U_Aᵀ·U_B. Identical subspaces
give 0°, orthogonal ones 90°. A small mean angle means the two updates move the same output directions."""
from __future__ import annotations

import math
import re

import torch

from ..models.weights import top_subspace
from ..reporting.report import pyplot


def principal_angles(a: torch.Tensor, b: torch.Tensor, energy: float = 0.99) -> torch.Tensor:
    """Principal angles in degrees, smallest first; empty if either update is zero."""
    ua, ub = top_subspace(a, energy), top_subspace(b, energy)
    if ua.shape[1] == 0 or ub.shape[1] == 0:
        return torch.empty(0)
    cosines = torch.linalg.svdvals(ua.T @ ub).clamp(-1.0, 1.0)
    return torch.rad2deg(torch.arccos(cosines)).float()


_LAYER = re.compile(r"\.(?:h|layers|layer|block)\.(\d+)\.")


def layer_and_type(name: str) -> tuple[int | None, str]:
    m = _LAYER.search("." + name + ".")
    return (int(m.group(1)) if m else None), name.split(".")[-1]


def update_angles(before_a: dict, after_a: dict, before_b: dict, after_b: dict, energy: float = 0.99) -> list[dict]:
    """Per matrix: the mean principal angle between ΔW_A = after_a − before_a and ΔW_B = after_b − before_b."""
    rows = []
    for name in sorted(before_a):
        angles = principal_angles(after_a[name] - before_a[name], after_b[name] - before_b[name], energy)
        if angles.numel() == 0:
            continue
        layer, kind = layer_and_type(name)
        rows.append({"matrix": name, "layer": layer, "type": kind, "mean_angle": float(angles.mean()),
                     "min_angle": float(angles.min()), "n_angles": int(angles.numel())})
    return rows


def plot_angles(rows_by_pair: dict[str, list[dict]], path) -> None:
    plt = pyplot()

    fig, ax = plt.subplots(figsize=(6, 3.6))
    for label, rows in rows_by_pair.items():
        by_layer: dict[int, list[float]] = {}
        for r in rows:
            if r["layer"] is not None:
                by_layer.setdefault(r["layer"], []).append(r["mean_angle"])
        layers = sorted(by_layer)
        ax.plot(layers, [sum(by_layer[l]) / len(by_layer[l]) for l in layers], marker="o", label=label)
    ax.set_xlabel("layer")
    ax.set_ylabel("mean principal angle (°)")
    ax.set_ylim(0, 90)
    ax.legend(fontsize=7)
    ax.set_title("Angles between weight updates, by layer", fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def pearson(xs: list[float], ys: list[float]) -> float | None:
    n = len(xs)
    if n < 2:
        return None
    mx, my = sum(xs) / n, sum(ys) / n
    sx = math.sqrt(sum((x - mx) ** 2 for x in xs))
    sy = math.sqrt(sum((y - my) ** 2 for y in ys))
    if sx == 0 or sy == 0:
        return None
    return sum((x - mx) * (y - my) for x, y in zip(xs, ys)) / (sx * sy)
