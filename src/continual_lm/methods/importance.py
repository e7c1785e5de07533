"""Parameter importance and masks: the one place these formulas live (Recurrent-KIF, TaSL, VR-MCL, analyses).

- sensitivity       Ī = |θ ⊙ ∇θ L|   (or |∇θ L|)
- ema               I ← α·I + (1−α)·Ī
- top_fraction_masks  m = 1 where I is in its top ``fraction`` (threshold = the (1−fraction) quantile),
                      over all tensors at once (``global``) or per tensor; the threshold comes from
                      ``kthvalue`` (``torch.quantile`` refuses tensors above ~16.8M elements). Ties at the
                      threshold are all kept.
- at_least_quantile   m = 1 where I ≥ its q-quantile (linear interpolation, as torch.quantile; MIGU's code)
- minmax_normalized   soft masks in [0, 1]
- diagonal_fisher     F = mean over batches of (∂L/∂θ)² (the empirical Fisher; EWC and the analyses)
- ImportanceTracker   the smoothed importance of one learner: plain EMA, or PLATON's sensitivity × uncertainty
"""
from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping

import torch

Maps = dict[str, torch.Tensor]


def sensitivity(param: torch.Tensor, grad: torch.Tensor, kind: str = "weight_grad") -> torch.Tensor:
    if kind == "weight_grad":
        return (param.detach() * grad.detach()).abs()
    if kind == "grad":
        return grad.detach().abs()
    raise ValueError(f"unknown importance kind {kind!r} (weight_grad | grad)")


def current_sensitivity(params: Mapping[str, torch.nn.Parameter], kind: str = "weight_grad") -> Maps:
    """Ī for every parameter that has a gradient now (zeros where it has none)."""
    return {n: sensitivity(p, p.grad, kind) if p.grad is not None else torch.zeros_like(p, requires_grad=False)
            for n, p in params.items()}


def ema_(state: Maps, value: Maps, alpha: float) -> Maps:
    """In place: state ← α·state + (1−α)·value (a missing entry starts at zero)."""
    for n, v in value.items():
        if n not in state:
            state[n] = torch.zeros_like(v)
        state[n].mul_(alpha).add_(v, alpha=1 - alpha)
    return state


def kth_largest(values: torch.Tensor, k: int) -> torch.Tensor:
    flat = values.flatten().float()
    return flat.kthvalue(flat.numel() - k + 1).values


def _k(n: int, fraction: float) -> int:
    return min(n, max(1, round(fraction * n)))


def top_fraction_masks(maps: Maps, fraction: float, scope: str = "global") -> Maps:
    if not 0 < fraction <= 1:
        raise ValueError(f"top fraction must be in (0, 1], got {fraction}")
    if scope == "global":
        flat = torch.cat([m.flatten().float() for m in maps.values()])
        threshold = kth_largest(flat, _k(flat.numel(), fraction))
        return {n: m >= threshold for n, m in maps.items()}
    if scope == "per_tensor":
        return {n: m >= kth_largest(m, _k(m.numel(), fraction)) for n, m in maps.items()}
    raise ValueError(f"unknown threshold scope {scope!r} (global | per_tensor)")


def at_least_quantile(values: torch.Tensor, q: float) -> torch.Tensor:
    """Boolean mask of the entries at least the ``q`` quantile of ``values`` (linear interpolation)."""
    return values >= torch.quantile(values.flatten().float(), q)


def minmax_normalized(maps: Maps, scope: str = "global") -> Maps:
    def norm(m: torch.Tensor, lo: torch.Tensor, hi: torch.Tensor) -> torch.Tensor:
        return (m - lo) / (hi - lo) if hi > lo else torch.ones_like(m)
    if scope == "global":
        lo = min(m.min() for m in maps.values())
        hi = max(m.max() for m in maps.values())
        return {n: norm(m, lo, hi) for n, m in maps.items()}
    return {n: norm(m, m.min(), m.max()) for n, m in maps.items()}


def total(maps: Maps) -> float:
    return float(sum(m.sum() for m in maps.values()))


def diagonal_fisher(params: Mapping[str, torch.nn.Parameter], batch_losses: Iterable[Callable[[], torch.Tensor]]) -> Maps:
    """Mean over batches of the squared gradient; each item of ``batch_losses`` computes one batch's loss."""
    fisher = {n: torch.zeros_like(p) for n, p in params.items()}
    count = 0
    for compute_loss in batch_losses:
        for p in params.values():
            p.grad = None
        compute_loss().backward()
        for n, p in params.items():
            if p.grad is not None:
                fisher[n] += p.grad.detach().pow(2)
        count += 1
    for p in params.values():
        p.grad = None
    return {n: f / max(count, 1) for n, f in fisher.items()}


class ImportanceTracker:
    """The smoothed importance of one learner (Recurrent-KIF's inner and outer learners, TaSL's skill units).

    Plain EMA of the sensitivity (``use_ema``; otherwise the latest value only), or, with ``platon_beta``, the
    PLATON score EMA(Ī) · EMA(|Ī − EMA(Ī)|) (Zhang et al., 2022) that the Recurrent-KIF and TaSL authors' code use."""

    def __init__(self, alpha: float, kind: str = "weight_grad", use_ema: bool = True, platon_beta: float | None = None):
        self.alpha, self.kind, self.use_ema, self.platon_beta = alpha, kind, use_ema, platon_beta
        self.reset()

    def reset(self) -> None:
        self.ema: Maps = {}
        self.uncertainty: Maps = {}

    def update(self, params: Mapping[str, torch.nn.Parameter]) -> None:
        value = current_sensitivity(params, self.kind)
        if self.platon_beta is not None:
            beta = self.platon_beta
            ema_(self.ema, value, beta)
            ema_(self.uncertainty, {n: (value[n] - self.ema[n]).abs() for n in value}, beta)
        elif self.use_ema:
            ema_(self.ema, value, self.alpha)
        else:
            self.ema = value

    def state_dict(self) -> dict:
        return {"ema": dict(self.ema), "uncertainty": dict(self.uncertainty)}

    def load_state_dict(self, state: dict) -> None:
        self.ema, self.uncertainty = dict(state["ema"]), dict(state["uncertainty"])

    @property
    def score(self) -> Maps:
        if self.platon_beta is not None:
            return {n: self.ema[n] * self.uncertainty[n] for n in self.ema}
        return self.ema

    def __bool__(self) -> bool:
        return bool(self.ema)
