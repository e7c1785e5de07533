"""Recurrent-KIF (Feng et al., "Recurrent Knowledge Identification and Fusion for Language Model Continual
Learning", ACL 2025; Section 3, Algorithm 1).

Every Q optimiser steps on the current task (the inner learner, which tracks the importance
I_in ← α1·I_in + (1−α1)·|θ⊙∇L| at every step), the outer learner takes M steps on the replay memory from
θ_b(Q), tracking the importance of the old tasks at these *current* weights (I_out, α2). Then the two task
vectors τ_in = θ_b(Q) − θ_b and τ_out = θ_b(M) − θ_b(Q) are fused with binary top-20% masks:

    θ_{b+1} = θ_b + m_in ⊙ τ_in + m_out ⊙ τ_out

and the next cycle starts from θ_{b+1}; the optimiser state carries on. On the first task the memory is
empty: no outer step, τ_out = 0. A partial cycle at the end of a task is fused too.

Ablations (``ablation``; paper Table 2 and B.6): ``-DIE`` (I_out computed once at the end of each task and kept
static), ``-KI`` (no masks), ``+GM`` (scalar weights from total importance instead of element-wise masks),
``+Adaptive`` (soft masks: importance min-max normalised to [0, 1]), ``-Share`` (no update where both masks
are 1). ``importance: grad`` uses |∇L|; ``ema: false`` uses the single-batch importance.

``variant: reference_code`` follows the authors' public code, which differs from the paper in three places:
(1) the score is PLATON-style, EMA(Ī)·EMA(|Ī − EMA(Ī)|) with β = 0.85; (2) where both masks are 1 the task
vectors get weights 0.4 (inner) and 0.6 (outer), and where both are 0 they get 0.5 and 0.5 (so unmasked
coordinates still move); (3) the EMAs are reset after each fusion.
"""
from __future__ import annotations

import torch

from ..errors import ConfigError
from .base import Method, register
from .importance import Maps, current_sensitivity, ema_, minmax_normalized, top_fraction_masks, total
from .memory import ReplayMemory
from ..models.weights import snapshot

ABLATIONS = {None: None, "none": None, "-DIE": "no_die", "no_die": "no_die", "-KI": "no_ki", "no_ki": "no_ki",
             "+GM": "global_weighting", "global_weighting": "global_weighting", "+Adaptive": "adaptive",
             "adaptive": "adaptive", "-Share": "no_share", "no_share": "no_share"}
VARIANTS = ("paper", "reference_code")


def _zeros_like(maps: Maps) -> Maps:
    return {n: torch.zeros_like(v) for n, v in maps.items()}


def fuse(theta_b: Maps, tau_in: Maps, tau_out: Maps | None, imp_in: Maps, imp_out: Maps | None, *,
         top_fraction: float = 0.2, scope: str = "global", ablation: str | None = None,
         variant: str = "paper") -> Maps:
    """θ_{b+1} from the cycle's start, its two task vectors and their importance maps (see module doc)."""
    no_outer = tau_out is None or imp_out is None  # first task: no outer learner, τ_out = 0, m_out = 0
    if no_outer:
        tau_out, imp_out = _zeros_like(tau_in), _zeros_like(imp_in)

    def masks(maps: Maps, empty: bool) -> Maps:
        if empty:
            return {n: torch.zeros_like(v, dtype=torch.bool) for n, v in maps.items()}
        return top_fraction_masks(maps, top_fraction, scope)

    if variant == "reference_code":
        m_in, m_out = masks(imp_in, False), masks(imp_out, no_outer)
        out = {}
        for n in theta_b:
            a, b = m_in[n], m_out[n]
            w_in = torch.where(a & b, 0.4, torch.where(a, 1.0, torch.where(b, 0.0, 0.5)))
            w_out = torch.where(a & b, 0.6, torch.where(b, 1.0, torch.where(a, 0.0, 0.5)))
            out[n] = theta_b[n] + w_in * tau_in[n] + w_out * tau_out[n]
        return out
    if ablation == "no_ki":
        return {n: theta_b[n] + tau_in[n] + tau_out[n] for n in theta_b}
    if ablation == "global_weighting":
        s_in, s_out = total(imp_in), total(imp_out)
        w_in = s_in / (s_in + s_out) if s_in + s_out > 0 and not no_outer else 1.0
        return {n: theta_b[n] + w_in * tau_in[n] + (1 - w_in) * tau_out[n] for n in theta_b}
    if ablation == "adaptive":
        m_in, m_out = minmax_normalized(imp_in, scope), minmax_normalized(imp_out, scope)
    else:
        m_in, m_out = masks(imp_in, False), masks(imp_out, no_outer)
        if ablation == "no_share":
            m_in, m_out = ({n: m_in[n] & ~m_out[n] for n in m_in}, {n: m_out[n] & ~m_in[n] for n in m_out})
    return {n: theta_b[n] + m_in[n] * tau_in[n] + m_out[n] * tau_out[n] for n in theta_b}


class ImportanceTracker:
    """The smoothed importance of one learner: plain EMA (paper) or PLATON-style (reference code)."""

    def __init__(self, alpha: float, kind: str, use_ema: bool, platon_beta: float | None = None):
        self.alpha, self.kind, self.use_ema, self.platon_beta = alpha, kind, use_ema, platon_beta
        self.reset()

    def reset(self) -> None:
        self.ema: Maps = {}
        self.uncertainty: Maps = {}

    def update(self, params) -> None:
        value = current_sensitivity(params, self.kind)
        if self.platon_beta is not None:
            beta = self.platon_beta
            ema_(self.ema, value, beta)
            ema_(self.uncertainty, {n: (value[n] - self.ema[n]).abs() for n in value}, beta)
        elif self.use_ema:
            ema_(self.ema, value, self.alpha)
        else:
            self.ema = value

    @property
    def score(self) -> Maps:
        if self.platon_beta is not None:
            return {n: self.ema[n] * self.uncertainty[n] for n in self.ema}
        return self.ema

    def __bool__(self) -> bool:
        return bool(self.ema)


@register
class RecurrentKIF(Method):
    """Recurrent-KIF: inner/outer learners with importance-masked fusion of their task vectors every Q steps."""
    name = "recurrent_kif"
    description = "Recurrent-KIF (Feng et al., ACL 2025): importance-masked fusion of new/old task vectors every Q steps."
    defaults = {"q": 8, "m": 1, "alpha_in": 0.55, "alpha_out": 0.55, "top_fraction": 0.2, "threshold_scope": "global",
                "outer_batch_size": None, "outer_lr": None, "memory_fraction": 0.02, "variant": "paper",
                "ablation": None, "importance": "weight_grad", "ema": True, "platon_beta": 0.85}
    bounds = {"q": "[1, inf)", "m": "[1, inf)", "alpha_in": "[0, 1]", "alpha_out": "[0, 1]", "top_fraction": "(0, 1]",
              "outer_batch_size": "[1, inf) int", "outer_lr": "(0, inf)", "memory_fraction": "[0, 1]", "platon_beta": "[0, 1)"}
    choices = {"variant": tuple(VARIANTS), "importance": ("weight_grad", "grad"), "threshold_scope": ("global", "per_tensor"),
               "ema": (True, False)}

    def __init__(self, **params):
        super().__init__(**params)
        if self.ablation not in ABLATIONS:
            raise ConfigError(f"method.params.ablation: unknown {self.ablation!r}; known: {sorted(k for k in ABLATIONS if k)}")
        self.ablation = ABLATIONS[self.ablation]
        if self.variant == "reference_code" and self.ablation:
            raise ConfigError("method.params: ablations apply to variant 'paper', not 'reference_code'")
        beta = self.platon_beta if self.variant == "reference_code" else None
        self.inner = ImportanceTracker(self.alpha_in, self.importance, self.ema, beta)
        self.outer = ImportanceTracker(self.alpha_out, self.importance, self.ema, beta)
        self.fusions = 0

    # ------------------------------------------------------------------ hooks
    def setup(self, ctx) -> None:
        super().setup(ctx)
        self.memory = ReplayMemory(self.memory_fraction, ctx.config.seed)

    def before_task(self, ctx) -> None:
        self.params = ctx.backbone.trainable_parameters()
        self.theta_b = self._snapshot()
        self.inner.reset()
        self.cycle_steps = 0

    def after_backward(self, ctx) -> None:
        self.inner.update(self.params)

    def after_step(self, ctx) -> None:
        self.cycle_steps += 1
        if self.cycle_steps == int(self.q) or ctx.step == ctx.total_steps:
            self.fuse_cycle(ctx)

    def after_task(self, ctx) -> None:
        self.memory.add_task(ctx.task)
        if self.ablation == "no_die":  # static historical importance, measured once at the task's end
            self.outer.reset()
            for start in range(0, len(self.memory), self._outer_batch(ctx)):
                ctx.accelerator.backward(ctx.backbone.loss(self.memory.examples[start:start + self._outer_batch(ctx)]))
                self.outer.update(self.params)
            ctx.optimizer.zero_grad(set_to_none=True)

    # ------------------------------------------------------------------ the cycle
    def _snapshot(self) -> Maps:
        return snapshot(self.params)

    def _outer_batch(self, ctx) -> int:
        return int(self.outer_batch_size or ctx.config.training.batch_size)

    def fuse_cycle(self, ctx) -> None:
        theta_q = self._snapshot()
        tau_in = {n: theta_q[n] - self.theta_b[n] for n in theta_q}
        tau_out = None
        if len(self.memory):
            for _ in range(int(self.m)):
                self._outer_step(ctx)
            theta_m = self._snapshot()
            tau_out = {n: theta_m[n] - theta_q[n] for n in theta_q}
        fused = fuse(self.theta_b, tau_in, tau_out, self.inner.score, self.outer.score if self.outer else None,
                     top_fraction=self.top_fraction, scope=self.threshold_scope, ablation=self.ablation,
                     variant=self.variant)
        with torch.no_grad():
            for n, p in self.params.items():
                p.copy_(fused[n])
        self.theta_b = self._snapshot()
        self.cycle_steps = 0
        self.fusions += 1
        if self.variant == "reference_code":  # the authors' code restarts both EMAs after every fusion
            self.inner.reset()
            self.outer.reset()

    def _outer_step(self, ctx) -> None:
        batch = self.memory.sample(self._outer_batch(ctx), ctx.rng)
        ctx.accelerator.backward(ctx.backbone.loss(batch))
        if self.ablation != "no_die":
            self.outer.update(self.params)  # historical importance at the current weights
        lrs = [g["lr"] for g in ctx.optimizer.param_groups]
        if self.outer_lr is not None:
            for g in ctx.optimizer.param_groups:
                g["lr"] = self.outer_lr
        ctx.clip_and_step()
        for g, lr in zip(ctx.optimizer.param_groups, lrs):
            g["lr"] = lr
