"""Loss landscape on the plane θ0 + x·d1 + y·d2 spanned by two updates (e.g. the first steps of task 1 and the
rest of it), with the training trajectory projected onto the plane."""
from __future__ import annotations

import torch

from ..data.task import Example
from ..models.backbone import Backbone
from ..models.weights import snapshot, tracked_parameters
from ..reporting.report import pyplot

Weights = dict[str, torch.Tensor]


def _flat(w: Weights, names: list[str]) -> torch.Tensor:
    return torch.cat([w[n].flatten().double() for n in names])


def project(theta: Weights, theta0: Weights, d1: Weights, d2: Weights) -> tuple[float, float]:
    """Least-squares coordinates (x, y) of θ − θ0 in the basis (d1, d2)."""
    names = sorted(theta0)
    basis = torch.stack([_flat(d1, names), _flat(d2, names)], dim=1)
    coords = torch.linalg.lstsq(basis, (_flat(theta, names) - _flat(theta0, names)).unsqueeze(1)).solution
    return float(coords[0]), float(coords[1])


@torch.no_grad()
def mean_loss(backbone: Backbone, examples: list[Example], batch_size: int = 64) -> float:
    losses = [backbone.loss(examples[i:i + batch_size]).item() * len(examples[i:i + batch_size])
              for i in range(0, len(examples), batch_size)]
    return sum(losses) / len(examples)


@torch.no_grad()
def loss_surface(backbone: Backbone, theta0: Weights, d1: Weights, d2: Weights, examples: dict[str, list[Example]],
                 grid: int = 21, span: tuple[float, float] = (-0.5, 1.5)) -> dict:
    """Losses of each example set on a grid × grid lattice of (x, y) in ``span``²; weights restored afterwards."""
    params = tracked_parameters(backbone)
    saved = snapshot(params)
    coords = [span[0] + (span[1] - span[0]) * i / (grid - 1) for i in range(grid)]
    surfaces = {name: [[0.0] * grid for _ in range(grid)] for name in examples}
    was_training = backbone.model.training
    backbone.model.eval()
    try:
        for iy, y in enumerate(coords):
            for ix, x in enumerate(coords):
                for n, p in params.items():
                    p.copy_(theta0[n] + x * d1[n] + y * d2[n])
                for name, exs in examples.items():
                    surfaces[name][iy][ix] = mean_loss(backbone, exs)
    finally:
        for n, p in params.items():
            p.copy_(saved[n])
        backbone.model.train(was_training)
    return {"x": coords, "y": coords, "loss": surfaces}


def plot_landscape(surface: dict, trajectory: list[dict], path) -> None:
    plt = pyplot()

    names = list(surface["loss"])
    fig, axes = plt.subplots(1, len(names), figsize=(4.2 * len(names), 3.6), squeeze=False)
    for ax, name in zip(axes[0], names):
        cs = ax.contourf(surface["x"], surface["y"], surface["loss"][name], levels=20, cmap="viridis")
        fig.colorbar(cs, ax=ax, fraction=0.046)
        ax.plot([p["x"] for p in trajectory], [p["y"] for p in trajectory], "w.-", ms=5)
        for p in trajectory:
            ax.annotate(str(p["step"]), (p["x"], p["y"]), color="w", fontsize=6)
        ax.set_title(f"loss of {name}", fontsize=9)
        ax.set_xlabel("x · d1 (early update)")
        ax.set_ylabel("y · d2 (later update)")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
