"""TaSL (Feng et al., "TaSL: Task Skill Localization and Consolidation for Language Model Continual Learning",
ACL 2024). Rehearsal-free.

Skill localisation: during task t, each parameter's importance is tracked as in the paper (sensitivity
|θ⊙∇L| times its uncertainty, both smoothed with β = 0.85, i.e. the PLATON score) and pooled per *skill unit*
(a row of a weight matrix — one output unit — by default, or single elements). The importance of the past
tasks accumulates as Ĩ_t = γ·Ĩ_{t−1} + (1−γ)·I_t, each map min-max normalised first (γ = 0.7).

Skill consolidation, after each task t > 0, between the previous consolidated weights θ_{t−1} and the new θ_t:
units in the top τ of past importance only keep θ_{t−1} (old skills); units in the top τ of the current
task's importance only take θ_t (new skill); shared or unimportant units are averaged with the importance
weights w = Ĩ_{t−1} / (Ĩ_{t−1} + I_t):  θ = w·θ_{t−1} + (1−w)·θ_t.  Our reading of the paper: the weighting
rule for units important to both is its "adaptive" consolidation; τ = 0.2."""
from __future__ import annotations

import torch

from .base import Method, register
from .importance import Maps, minmax_normalized, top_fraction_masks
from .recurrent_kif import ImportanceTracker
from ..models.weights import snapshot


def pool_units(maps: Maps, granularity: str) -> Maps:
    """Mean importance per skill unit (a row: the output unit of a weight), broadcast back to the full shape."""
    if granularity == "element":
        return maps
    return {n: (m.mean(dim=tuple(range(1, m.dim())), keepdim=True).expand_as(m) if m.dim() > 1 else m)
            for n, m in maps.items()}


def consolidate(theta_prev: Maps, theta_new: Maps, imp_past: Maps, imp_new: Maps, top: float) -> Maps:
    m_past, m_new = top_fraction_masks(imp_past, top), top_fraction_masks(imp_new, top)
    out = {}
    for n in theta_new:
        denom = imp_past[n] + imp_new[n]
        w = torch.where(denom > 0, imp_past[n] / denom.clamp(min=1e-12), torch.full_like(denom, 0.5))
        merged = w * theta_prev[n] + (1 - w) * theta_new[n]
        merged = torch.where(m_past[n] & ~m_new[n], theta_prev[n], merged)
        out[n] = torch.where(m_new[n] & ~m_past[n], theta_new[n], merged)
    return out


@register
class TaSL(Method):
    name = "tasl"
    description = "TaSL (Feng et al., ACL 2024): skill-unit importance; keep task-specific units, average shared ones."
    defaults = {"top_fraction": 0.2, "gamma": 0.7, "beta": 0.85, "granularity": "row"}
    bounds = {"top_fraction": "(0, 1]", "gamma": "[0, 1]", "beta": "[0, 1)"}
    choices = {"granularity": ("row", "element")}

    def setup(self, ctx) -> None:
        super().setup(ctx)
        self.past: Maps = {}
        self.theta_prev: Maps = {}
        self.tracker = ImportanceTracker(self.beta, "weight_grad", True, platon_beta=self.beta)

    def before_task(self, ctx) -> None:
        self.params = ctx.backbone.trainable_parameters()
        self.tracker.reset()

    def after_backward(self, ctx) -> None:
        self.tracker.update(self.params)

    def after_task(self, ctx) -> None:
        current = minmax_normalized(pool_units(self.tracker.score, self.granularity))
        theta_new = snapshot(self.params)
        if self.past:
            fused = consolidate(self.theta_prev, theta_new, self.past, current, self.top_fraction)
            with torch.no_grad():
                for n, p in self.params.items():
                    p.copy_(fused[n])
            self.past = {n: self.gamma * self.past[n] + (1 - self.gamma) * current[n] for n in current}
        else:
            self.past = current
        self.theta_prev = snapshot(self.params)
