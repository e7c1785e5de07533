"""Recurrent-KIF (Feng et al., "Recurrent Knowledge Identification and Fusion for Language Model Continual
Learning", ACL 2025; Section 3, Algorithm 1, Eq. 9).

Every Q optimiser steps on the current task (the inner learner, which tracks the importance
I_in ← α1·I_in + (1−α1)·|θ⊙∇L| at every step), the outer learner takes M steps on the replay memory from
θ_b(Q), tracking the importance of the old tasks at these *current* weights (I_out, α2). Then the two task
vectors τ_in = θ_b(Q) − θ_b and τ_out = θ_b(M) − θ_b(Q) are fused with binary top-20% masks (Eq. 9):

    θ_{b+1} = θ_b + m_in ⊙ τ_in + m_out ⊙ τ_out

and the next cycle starts from θ_{b+1}; the optimiser state carries on. While the memory is empty (the first
task) the method is plain training: no importance, no masks, no fusion — as in the authors' code, whose
trainer skips all three when ``memory is None``. A partial cycle at the end of a later task is fused too.

Ablations (``ablation``; paper Table 2 and B.6): ``-DIE`` (I_out computed once at the end of each task over the
memory, one batch at a time, and kept static), ``-KI`` (no masks), ``+GM`` (scalar weights from total importance
instead of element-wise masks), ``+Adaptive`` (soft masks: importance min-max normalised to [0, 1]), ``-Share``
(no update where both masks are 1). ``importance: grad`` uses |∇L|; ``ema: false`` uses the single-batch
importance. ``threshold_scope: per_tensor`` takes the top fraction of every tensor instead of one threshold over
all of them (a global threshold across LoRA A and B, which differ in scale, can starve one of them: every fusion
logs how the inner mask splits between A and B).

M, the outer steps per cycle: the paper's text says "a single training iteration" (M = 1, the ``paper`` default);
its Table 8 reference row is Q = 8, M = 4, and the authors' run script uses ``outer_iterations=4`` (the
``reference_code`` default). ``m`` sets it explicitly.

``variant: reference_code`` follows the authors' public code (WoodScene/Recurrent_KIF: ``trainer.py``,
``utils/lora_importance_bilevel.py``, ``scripts/run_train_KIF_t5lora.sh``) where it differs from the paper:
(1) the score is PLATON-style, EMA(Ī)·EMA(|Ī − EMA(Ī)|) with β = 0.85; (2) where both masks are 1 the task
vectors get weights 0.4 (inner) and 0.6 (outer), and where both are 0 they get 0.5 and 0.5 (so unmasked
coordinates still move); (3) only the inner importance is reset after each fusion (``--empty_inner_score_flag=1``;
the outer flag is 0), so the outer score runs on across cycles and tasks; (4) M = 4; (5) fusion happens when the
step count reaches a multiple of Q, so the last partial cycle of a task is kept unfused.

Where both variants differ from the authors' code, and why:
- the code updates each importance right *after* the optimiser step, |θ_{t+1}·g_t|; we use |θ_t·g_t| (the
  gradient's own point, as the paper writes it): our hook sees the gradients before the step only;
- the code's memory is a uniform random 2% of each old task; ours is class-balanced (shared with ``replay``), and
  outer batches are drawn with replacement;
- the code's mask is ``score > quantile(score, 0.8)``; ours keeps every coordinate tied at the threshold
  (``importance.top_fraction_masks``), which differs only on ties.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import torch
from pydantic import Field, field_validator, model_validator

from ..models.weights import assign_, snapshot
from .base import Count, Method, MethodParams, Real, register
from .importance import ImportanceTracker, Maps, minmax_normalized, top_fraction_masks, total
from .memory import ReplayMemory

ABLATIONS = {None: None, "none": None, "-DIE": "no_die", "no_die": "no_die", "-KI": "no_ki", "no_ki": "no_ki",
             "+GM": "global_weighting", "global_weighting": "global_weighting", "+Adaptive": "adaptive",
             "adaptive": "adaptive", "-Share": "no_share", "no_share": "no_share"}
VARIANTS = ("paper", "reference_code")
OUTER_STEPS = {"paper": 1, "reference_code": 4}  # M when ``m`` is not set (see the module doc)


@dataclass
class FusionWeights:
    """Per-coordinate weights of τ_in and τ_out in θ_{b+1} = θ_b + w_in ⊙ τ_in + w_out ⊙ τ_out, and the masks
    they came from (binary, soft, or all ones for ``-KI``): the masks are what the fusion diagnostics count."""
    w_in: Maps
    w_out: Maps
    m_in: Maps
    m_out: Maps


def fusion_weights(imp_in: Maps, imp_out: Maps, *, top_fraction: float = 0.2, scope: str = "global",
                   ablation: str | None = None, variant: str = "paper") -> FusionWeights:
    """The weights of Eq. 9 (paper), of an ablation, or of the authors' code (module doc)."""
    if ablation == "no_ki":
        ones = {n: torch.ones_like(v) for n, v in imp_in.items()}
        return FusionWeights(ones, ones, ones, ones)
    if ablation == "global_weighting":
        s_in, s_out = total(imp_in), total(imp_out)
        share = s_in / (s_in + s_out) if s_in + s_out > 0 else 0.5
        w_in = {n: torch.full_like(v, share) for n, v in imp_in.items()}
        w_out = {n: torch.full_like(v, 1 - share) for n, v in imp_in.items()}
        return FusionWeights(w_in, w_out, w_in, w_out)
    if ablation == "adaptive":
        m_in, m_out = minmax_normalized(imp_in, scope), minmax_normalized(imp_out, scope)
        return FusionWeights(m_in, m_out, m_in, m_out)
    m_in, m_out = top_fraction_masks(imp_in, top_fraction, scope), top_fraction_masks(imp_out, top_fraction, scope)
    if variant == "reference_code":
        w_in, w_out = {}, {}
        for n in m_in:
            a, b = m_in[n], m_out[n]
            w_in[n] = torch.where(a & b, 0.4, torch.where(a, 1.0, torch.where(b, 0.0, 0.5)))
            w_out[n] = torch.where(a & b, 0.6, torch.where(b, 1.0, torch.where(a, 0.0, 0.5)))
    elif ablation == "no_share":
        w_in = {n: (m_in[n] & ~m_out[n]).float() for n in m_in}
        w_out = {n: (m_out[n] & ~m_in[n]).float() for n in m_out}
    else:
        w_in, w_out = ({n: m.float() for n, m in m_in.items()}, {n: m.float() for n, m in m_out.items()})
    return FusionWeights(w_in, w_out, {n: m.float() for n, m in m_in.items()}, {n: m.float() for n, m in m_out.items()})


def fuse(theta_b: Maps, tau_in: Maps, tau_out: Maps, weights: FusionWeights) -> Maps:
    """θ_{b+1} = θ_b + w_in ⊙ τ_in + w_out ⊙ τ_out."""
    return {n: theta_b[n] + weights.w_in[n] * tau_in[n] + weights.w_out[n] * tau_out[n] for n in theta_b}


def _norm(maps: Maps) -> float:
    return float(torch.sqrt(sum(v.double().pow(2).sum() for v in maps.values())))


def fusion_diagnostics(tau_in: Maps, tau_out: Maps, weights: FusionWeights) -> dict[str, float]:
    """What one fusion kept: ‖w ⊙ τ‖/‖τ‖ per task vector, the share of coordinates each mask selects, and, under
    LoRA, how the inner mask's selected coordinates split between the A and the B matrices (0 when it selects none)."""
    def kept(tau: Maps, w: Maps) -> float:
        full = _norm(tau)
        return _norm({n: w[n] * tau[n] for n in tau}) / full if full > 0 else 0.0

    def share(masks: Maps) -> float:
        return float(sum(m.sum() for m in masks.values()) / sum(m.numel() for m in masks.values()))

    record = {"kept_inner": kept(tau_in, weights.w_in), "kept_outer": kept(tau_out, weights.w_out),
              "mask_inner": share(weights.m_in), "mask_outer": share(weights.m_out)}
    if any(".lora_A." in n for n in weights.m_in):
        inner_total = float(sum(m.sum() for m in weights.m_in.values()))
        for part in ("lora_A", "lora_B"):
            chosen = float(sum(m.sum() for n, m in weights.m_in.items() if f".{part}." in n))
            record[f"mask_inner_{part}"] = chosen / inner_total if inner_total > 0 else 0.0
    return record


@register
class RecurrentKIF(Method):
    """Recurrent-KIF: inner/outer learners with importance-masked fusion of their task vectors every Q steps."""
    name = "recurrent_kif"
    description = "Recurrent-KIF (Feng et al., ACL 2025): importance-masked fusion of new/old task vectors every Q steps."

    class Params(MethodParams):
        q: Count = Field(8, ge=1, description="inner steps per cycle")
        m: Count | None = Field(None, ge=1, description="outer steps per cycle (None: 1 for paper, 4 for reference_code)")
        alpha_in: Real = Field(0.55, ge=0, le=1, description="α1, EMA of the inner importance")
        alpha_out: Real = Field(0.55, ge=0, le=1, description="α2, EMA of the outer importance")
        top_fraction: Real = Field(0.2, gt=0, le=1, description="share of coordinates each mask keeps")
        threshold_scope: Literal["global", "per_tensor"] = Field("global", description="one threshold, or one per tensor")
        outer_batch_size: Count | None = Field(None, ge=1, description="memory batch of an outer step (None: batch size)")
        outer_lr: Real | None = Field(None, gt=0, description="lr of the outer steps (None: the inner optimiser's)")
        memory_fraction: Real = Field(0.02, ge=0, le=1, description="share of each task's training data kept")
        variant: Literal["paper", "reference_code"] = Field("paper", description="the paper's text or the authors' code")
        ablation: Literal["no_die", "no_ki", "global_weighting", "adaptive", "no_share"] | None = Field(
            None, description="-DIE, -KI, +GM, +Adaptive, -Share (paper Table 2)")
        importance: Literal["weight_grad", "grad"] = Field("weight_grad", description="|θ·∇L| or |∇L|")
        ema: bool = Field(True, description="smooth the importance (False: the latest batch only)")
        platon_beta: Real = Field(0.85, ge=0, lt=1, description="β of the reference code's PLATON score")

        @field_validator("ablation", mode="before")
        @classmethod
        def _paper_names(cls, value):
            if value is not None and value not in ABLATIONS:
                raise ValueError(f"unknown ablation; known: {sorted(k for k in ABLATIONS if k)}")
            return ABLATIONS.get(value, value)

        @model_validator(mode="before")
        @classmethod
        def _variant_defaults(cls, data: dict) -> dict:
            variant = data.get("variant", "paper")
            if variant == "reference_code" and ABLATIONS.get(data.get("ablation")):
                raise ValueError("ablations apply to variant 'paper', not 'reference_code'")
            if data.get("m") is None and variant in OUTER_STEPS:
                data = {**data, "m": OUTER_STEPS[variant]}
            return data

    state_attributes = ("active", "theta_b", "cycle_steps", "cycle_outer", "inner", "outer", "memory", "diagnostics")

    def __init__(self, **params):
        super().__init__(**params)
        p = self.params
        beta = p.platon_beta if p.variant == "reference_code" else None
        self.inner = ImportanceTracker(p.alpha_in, p.importance, p.ema, beta)
        self.outer = ImportanceTracker(p.alpha_out, p.importance, p.ema, beta)
        self.diagnostics: list[dict[str, float]] = []

    # ------------------------------------------------------------------ hooks
    def setup(self, ctx) -> None:
        super().setup(ctx)
        self.memory = ReplayMemory(self.params.memory_fraction, ctx.config.seed)

    def before_stage(self, ctx) -> None:
        self.memory.log_sizes(ctx.log)  # a 2% memory of a small task can be one example: say so
        # Plain training while there is no memory (the first task): nothing below runs then.
        self.active = len(self.memory) > 0
        self.tracked = ctx.backbone.trainable_parameters()
        self.theta_b = self._snapshot() if self.active else {}
        self.inner.reset()
        self.cycle_steps = self.cycle_outer = 0

    def after_backward(self, ctx) -> None:
        if self.active:
            self.inner.update(self.tracked)

    def after_step(self, ctx) -> None:
        if not self.active:
            return
        self.cycle_steps += 1
        partial_end = ctx.step == ctx.total_steps and self.params.variant == "paper"
        if self.cycle_steps == self.params.q or partial_end:
            self.fuse_cycle(ctx)

    def after_stage(self, ctx) -> None:
        self.memory.add_task(ctx.task)
        if self.params.ablation == "no_die":  # static historical importance, measured once at the task's end
            self.outer.reset()
            size = self._outer_batch(ctx)
            for start in range(0, len(self.memory), size):
                ctx.backbone.model.zero_grad(set_to_none=True)  # each batch's own gradient, not a running sum
                ctx.accelerator.backward(ctx.backbone.loss(self.memory.examples[start:start + size]))
                self.outer.update(self.tracked)
            ctx.backbone.model.zero_grad(set_to_none=True)

    def after_load(self, ctx) -> None:
        self.tracked = ctx.backbone.trainable_parameters()

    def report(self) -> dict:
        if not self.diagnostics:
            return {"fusions": 0}
        mean = {k: round(sum(d[k] for d in self.diagnostics) / len(self.diagnostics), 4) for k in self.diagnostics[0]}
        return {"fusions": len(self.diagnostics), **{f"mean_{k}": v for k, v in mean.items()}}

    # ------------------------------------------------------------------ the cycle
    def _snapshot(self) -> Maps:
        return snapshot(self.tracked)

    def _outer_batch(self, ctx) -> int:
        return self.params.outer_batch_size or ctx.config.training.batch_size

    def fuse_cycle(self, ctx) -> None:
        theta_q = self._snapshot()
        tau_in = {n: theta_q[n] - self.theta_b[n] for n in theta_q}
        for self.cycle_outer in range(self.params.m):
            self._outer_step(ctx)
        theta_m = self._snapshot()
        tau_out = {n: theta_m[n] - theta_q[n] for n in theta_q}
        weights = fusion_weights(self.inner.score, self.outer.score, top_fraction=self.params.top_fraction,
                                 scope=self.params.threshold_scope, ablation=self.params.ablation, variant=self.params.variant)
        assign_(self.tracked, fuse(self.theta_b, tau_in, tau_out, weights))
        record = fusion_diagnostics(tau_in, tau_out, weights)
        self.diagnostics.append(record)
        ctx.log({"event": "fusion", "stage": ctx.task.name, "step": ctx.step, **{k: round(v, 5) for k, v in record.items()}})
        self.theta_b = self._snapshot()
        self.cycle_steps = self.cycle_outer = 0
        if self.params.variant == "reference_code":  # the authors' --empty_inner_score_flag=1 (the outer flag is 0)
            self.inner.reset()

    def _outer_step(self, ctx) -> None:
        batch = self.memory.sample(self._outer_batch(ctx), ctx.rng)
        ctx.accelerator.backward(ctx.backbone.loss(batch))
        if self.params.ablation != "no_die":
            self.outer.update(self.tracked)  # historical importance at the current weights
        lrs = [g["lr"] for g in ctx.optimizer.param_groups]
        if self.params.outer_lr is not None:
            for g in ctx.optimizer.param_groups:
                g["lr"] = self.params.outer_lr
        ctx.optimizer_step()
        for g, lr in zip(ctx.optimizer.param_groups, lrs):
            g["lr"] = lr
