"""TaSL (Feng et al., "TaSL: Task Skill Localization and Consolidation for Language Model Continual Learning",
ACL 2024). Rehearsal-free.

Skill localisation: during task t every trainable parameter's importance is tracked as in the paper — the PLATON
score, sensitivity |θ⊙∇L| times its uncertainty, both smoothed with β = 0.85 (``importance.ImportanceTracker``) —
and pooled per *skill unit*. Skill consolidation, after each task t > 0, merges the previous consolidated weights
θ_{t−1} with the new θ_t unit by unit. The importance of the past accumulates across tasks,
Ĩ_t = minmax(γ'·I_t + (1 − γ')·Ĩ_{t−1}) with the maps min-max normalised (the authors' 0.3 / 0.7, γ = 0.7 on the past).

Three variants (``variant``):

- ``paper_code`` (default): the authors' ``skill_consolidation.py`` (WoodScene/TaSL). A unit is a whole tensor
  (e.g. one LoRA A matrix), its importance the mean score over the tensor, min-max normalised over tensors; a unit
  is important when its score is above the 80th percentile (the top ``top_fraction``). Past-only → θ_{t−1};
  current-only → θ_t; both → 0.3·θ_t + 0.7·θ_{t−1}; neither → 0.5 / 0.5.
- ``tas_lora``: the authors' newer ``skill_consolidation_TasLoRA.py``. A unit is one rank of a LoRA module (row i of
  A with column i of B), its importance mean(outer(score(B[:, i]), score(A[i, :]))) = mean·mean, min-max normalised
  over units; every unit is averaged with softmax((Ĩ_{t−1}, I_t) / τ) weights, τ = 0.25. LoRA only.
- ``ours``: our earlier reading of the paper: a unit is a row (one output unit) or an element (``granularity``);
  past-only → θ_{t−1}, current-only → θ_t, and shared or unimportant units averaged with the importance weights
  w = Ĩ_{t−1} / (Ĩ_{t−1} + I_t); the past accumulates as Ĩ_t = γ·Ĩ_{t−1} + (1−γ)·I_t of min-max normalised maps.

Where we differ from the code: it consolidates saved checkpoints between separate training runs; we consolidate in
place at the end of the task, which is the same arithmetic. The code's percentile is numpy's (linear
interpolation), as ``torch.quantile`` here.
"""
from __future__ import annotations

import math
from typing import Literal

import torch
from pydantic import Field

from ..errors import ConfigError
from ..models.weights import assign_, snapshot
from .base import Method, MethodParams, Real, register
from .importance import ImportanceTracker, Maps, minmax_normalized, top_fraction_masks

Scores = dict  # unit -> normalised importance (float)


def _minmax(values: Scores) -> Scores:
    lo, hi = min(values.values()), max(values.values())
    return {k: (v - lo) / (hi - lo) if hi > lo else 1.0 for k, v in values.items()}


def accumulate(past: Scores, present: Scores, gamma: float = 0.7) -> Scores:
    """The authors' running past importance: minmax((1 − γ)·present + γ·past) (γ = 0.7)."""
    return _minmax({k: (1 - gamma) * present[k] + gamma * past[k] for k in present})


def _important(scores: Scores, top_fraction: float) -> set:
    """Units strictly above the (1 − top_fraction) percentile, linear interpolation (numpy's np.percentile)."""
    threshold = float(torch.quantile(torch.tensor(list(scores.values()), dtype=torch.float64), 1 - top_fraction))
    return {k for k, v in scores.items() if v > threshold}


def tensor_scores(score_maps: Maps) -> Scores:
    """paper_code units: the mean score of each tensor, min-max normalised over tensors."""
    return _minmax({n: float(m.double().mean()) for n, m in score_maps.items()})


def consolidate_tensors(theta_prev: Maps, theta_new: Maps, past: Scores, present: Scores, top_fraction: float = 0.2
                        ) -> Maps:
    """skill_consolidation.py's rule per tensor (module doc)."""
    past, present = _minmax(past), _minmax(present)
    old_skill, new_skill = _important(past, top_fraction), _important(present, top_fraction)
    out = {}
    for n in theta_new:
        w_new = {(True, True): 0.3, (True, False): 0.0, (False, True): 1.0, (False, False): 0.5}[
            (n in old_skill, n in new_skill)]
        out[n] = w_new * theta_new[n] + (1 - w_new) * theta_prev[n]
    return out


def _lora_pairs(names) -> dict[str, tuple[str, str]]:
    """{module: (A name, B name)} for the LoRA matrices among ``names``."""
    pairs = {}
    for n in names:
        if ".lora_A." in n:
            b = n.replace(".lora_A.", ".lora_B.")
            if b in names:
                pairs[n.split(".lora_A.")[0]] = (n, b)
    return pairs


def rank1_scores(score_maps: Maps) -> Scores:
    """tas_lora units: (module, i) → mean(score(B[:, i])) · mean(score(A[i, :])), min-max normalised over units."""
    raw = {}
    for module, (a, b) in _lora_pairs(score_maps).items():
        sa, sb = score_maps[a].double(), score_maps[b].double()
        for i in range(sa.shape[0]):
            raw[(module, i)] = float(sb[:, i].mean() * sa[i, :].mean())
    return _minmax(raw)


def consolidate_rank1(theta_prev: Maps, theta_new: Maps, past: Scores, present: Scores, tau: float = 0.25) -> Maps:
    """skill_consolidation_TasLoRA.py: each rank-1 unit averaged with softmax((past, present) / τ) weights."""
    out = {n: v.clone() for n, v in theta_new.items()}
    for module, (a, b) in _lora_pairs(theta_new).items():
        for i in range(theta_new[a].shape[0]):
            e_past, e_new = math.exp(past[(module, i)] / tau), math.exp(present[(module, i)] / tau)
            w_new = e_new / (e_past + e_new)
            out[a][i, :] = w_new * theta_new[a][i, :] + (1 - w_new) * theta_prev[a][i, :]
            out[b][:, i] = w_new * theta_new[b][:, i] + (1 - w_new) * theta_prev[b][:, i]
    return out


def pool_units(maps: Maps, granularity: str) -> Maps:
    """ours: mean importance per skill unit (a row: the output unit of a weight), broadcast back to the full shape."""
    if granularity == "element":
        return maps
    return {n: (m.mean(dim=tuple(range(1, m.dim())), keepdim=True).expand_as(m) if m.dim() > 1 else m)
            for n, m in maps.items()}


def consolidate(theta_prev: Maps, theta_new: Maps, imp_past: Maps, imp_new: Maps, top: float) -> Maps:
    """ours: keep task-specific units, average shared or unimportant ones with importance weights."""
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
    description = "TaSL (Feng et al., ACL 2024): skill-unit importance; keep task-specific units, merge shared ones."

    class Params(MethodParams):
        variant: Literal["paper_code", "tas_lora", "ours"] = Field("paper_code", description="see the module doc")
        top_fraction: Real = Field(0.2, gt=0, le=1, description="share of units that count as important")
        gamma: Real = Field(0.7, ge=0, le=1, description="weight of the past in the accumulated importance")
        beta: Real = Field(0.85, ge=0, lt=1, description="β of the PLATON importance score")
        tau: Real = Field(0.25, gt=0, description="tas_lora: softmax temperature of the unit weights")
        granularity: Literal["row", "element"] = Field("row", description="ours: the skill unit")

    state_attributes = ("past", "theta_prev", "tracker")

    def setup(self, ctx) -> None:
        super().setup(ctx)
        if self.params.variant == "tas_lora" and ctx.config.model.finetune != "lora":
            raise ConfigError("method 'tasl' variant 'tas_lora' merges LoRA ranks: set model.finetune: lora")
        self.past = None
        self.theta_prev: Maps = {}
        self.tracker = ImportanceTracker(self.params.beta, "weight_grad", True, platon_beta=self.params.beta)

    def after_load(self, ctx) -> None:
        self.tracked = ctx.backbone.trainable_parameters()

    def before_stage(self, ctx) -> None:
        self.tracked = ctx.backbone.trainable_parameters()
        self.tracker.reset()

    def after_backward(self, ctx) -> None:
        self.tracker.update(self.tracked)

    def after_stage(self, ctx) -> None:
        theta_new = snapshot(self.tracked)
        score = self.tracker.score
        if self.params.variant == "ours":
            current = minmax_normalized(pool_units(score, self.params.granularity))
        else:
            current = tensor_scores(score) if self.params.variant == "paper_code" else rank1_scores(score)
        if self.past is not None:
            if self.params.variant == "paper_code":
                fused = consolidate_tensors(self.theta_prev, theta_new, self.past, current, self.params.top_fraction)
            elif self.params.variant == "tas_lora":
                fused = consolidate_rank1(self.theta_prev, theta_new, _minmax(self.past), current, self.params.tau)
            else:
                fused = consolidate(self.theta_prev, theta_new, self.past, current, self.params.top_fraction)
            assign_(self.tracked, fused)
            if self.params.variant == "ours":
                self.past = {n: self.params.gamma * self.past[n] + (1 - self.params.gamma) * current[n] for n in current}
            else:
                self.past = accumulate(_minmax(self.past), current, self.params.gamma)
        else:
            self.past = current
        self.theta_prev = snapshot(self.tracked)
