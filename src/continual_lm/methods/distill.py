"""Knowledge distillation between the model before a task (the teacher) and the model learning it (LwF, LFPT5).

    KD = [T²] · mean (or sum) over counted positions of KL( softmax(z_old / T) ‖ softmax(z_new / T) )

The T² factor (Hinton et al., 2015: it keeps the gradient's scale independent of T) is optional: LwF (Li & Hoiem)
weighs the term without it. ``reduction: sum`` adds the positions' divergences up (LFPT5's code:
``kl_div(..., reduction='sum')``). Positions are an encoder's one label distribution per example, or a generative
model's next-token distribution at each answer token."""
from __future__ import annotations

from collections.abc import Iterator, Mapping
from contextlib import contextmanager

import torch
import torch.nn.functional as F

from ..models.weights import assign_, snapshot


def distillation_kl(new_logits: torch.Tensor, old_logits: torch.Tensor, mask: torch.Tensor,
                    temperature: float, t_squared: bool = True, reduction: str = "mean") -> torch.Tensor:
    """``*_logits``: [batch, positions, classes]; ``mask``: [batch, positions], True where a position counts."""
    t = temperature
    old = F.log_softmax(old_logits.detach() / t, dim=-1)
    new = F.log_softmax(new_logits / t, dim=-1)
    per_position = (old.exp() * (old - new)).sum(-1)
    counted = mask.to(per_position.dtype)
    total = (per_position * counted).sum()
    kd = total if reduction == "sum" else total / counted.sum().clamp(min=1)
    return kd * t * t if t_squared else kd


@contextmanager
def weights_of(params: Mapping[str, torch.nn.Parameter], values: Mapping[str, torch.Tensor]) -> Iterator[None]:
    """Inside: the parameters hold ``values`` (e.g. the teacher's weights); their own values come back on leaving."""
    own = snapshot(params)
    assign_(params, values)
    try:
        yield
    finally:
        assign_(params, own)


@torch.no_grad()
def teacher_logits(backbone, params: Mapping[str, torch.nn.Parameter], teacher: Mapping[str, torch.Tensor],
                   examples, labels=None) -> torch.Tensor:
    """The teacher's ``output_logits`` on ``examples``: the same model with the teacher's weights, in eval mode."""
    was = backbone.model.training
    backbone.model.eval()
    try:
        with weights_of(params, teacher):
            return backbone.output_logits(examples, labels)[0]
    finally:
        backbone.model.train(was)
