"""Saving and loading trainable weights, and the effective weight matrices of a (possibly LoRA) model."""
from __future__ import annotations

from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file
from torch import nn
from transformers.pytorch_utils import Conv1D

from ..errors import DataError
from .adapters import activate_adapters, adapter_of
from .backbone import Backbone


def tracked_parameters(backbone: Backbone) -> dict[str, nn.Parameter]:
    """What a checkpoint holds: the LoRA matrices of the active adapters under LoRA (every adapter of IncLoRA and
    O-LoRA is active) and the parameters of modules methods attached, every parameter under full fine-tuning (so a
    checkpoint is complete even if a method freezes some of them later)."""
    named = dict(backbone.model.named_parameters())  # tied weights appear once
    if backbone.settings.finetune == "lora":
        active = set(backbone.model.active_adapters)
        return {n: p for n, p in named.items() if adapter_of(n) in active or is_method_parameter(n)}
    return named


def is_method_parameter(name: str) -> bool:
    """A parameter of a module a method attached to the model (``Backbone.attach``: prompts, routers, keys)."""
    return name.startswith("cl_") or ".cl_" in name


def save_checkpoint(backbone: Backbone, path: str | Path) -> None:
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(str(path) + ".tmp")
    save_file({n: p.detach().contiguous().cpu() for n, p in tracked_parameters(backbone).items()}, str(tmp))
    tmp.replace(path)


def load_checkpoint(backbone: Backbone, path: str | Path) -> None:
    path = Path(path)
    if not path.exists():
        raise DataError(f"{path}: checkpoint not found")
    state = load_file(str(path))
    if backbone.settings.finetune == "lora":
        # The checkpoint's adapters become the active ones (IncLoRA/O-LoRA: as many as tasks trained by then).
        adapters = list(dict.fromkeys(a for a in map(adapter_of, state) if a is not None))
        if adapters:
            activate_adapters(backbone, adapters)
    params = tracked_parameters(backbone)
    missing = sorted(set(state) - set(params))
    if missing:
        raise DataError(f"{path}: parameters not in this model (e.g. {missing[0]})")
    with torch.no_grad():
        for n, t in state.items():
            params[n].copy_(t.to(params[n].device))


def snapshot(params: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Detached copies of named parameters (a point in weight space to return to or diff against)."""
    return {n: p.detach().clone() for n, p in params.items()}


def assign_(params: Mapping[str, torch.Tensor], values: Mapping[str, torch.Tensor]) -> None:
    """In place, without autograd: each named parameter takes its value from ``values`` (names it lacks stay)."""
    with torch.no_grad():
        for n, p in params.items():
            if n in values:
                p.copy_(values[n])


@contextmanager
def trainable_as(backbone: Backbone, params: Mapping[str, nn.Parameter]) -> Iterator[None]:
    """Inside: exactly ``params`` of the backbone's model are trainable (e.g. to take gradients of frozen weights);
    every parameter's ``requires_grad`` is restored on leaving."""
    was = {n: p.requires_grad for n, p in backbone.model.named_parameters()}
    chosen = {id(p) for p in params.values()}
    try:
        for p in backbone.model.parameters():
            p.requires_grad_(id(p) in chosen)
        yield
    finally:
        for n, p in backbone.model.named_parameters():
            p.requires_grad_(was[n])


def flat_weights(backbone: Backbone) -> dict[str, torch.Tensor]:
    return snapshot(tracked_parameters(backbone))


def _clean(name: str) -> str:
    return name.replace("base_model.model.", "").replace(".base_layer", "")


def effective_matrices(backbone: Backbone) -> dict[str, torch.Tensor]:
    """Every 2-D weight of a Linear/Conv1D layer as (out, in), with any active LoRA update merged in."""
    out: dict[str, torch.Tensor] = {}
    for name, module in backbone.model.named_modules():
        if hasattr(module, "lora_B") and hasattr(module, "base_layer"):
            base = module.base_layer
            w = base.weight.detach().clone()
            w = w.T if isinstance(base, Conv1D) else w
            for adapter in module.active_adapters:
                if adapter in module.lora_B:
                    delta = module.get_delta_weight(adapter).detach()
                    w = w + (delta.T if isinstance(base, Conv1D) else delta)
            out[_clean(name)] = w
        elif isinstance(module, (nn.Linear, Conv1D)) and ".lora_" not in name and "base_layer" not in name:
            w = module.weight.detach().clone()
            out[_clean(name)] = w.T if isinstance(module, Conv1D) else w
    return out


def top_subspace(matrix: torch.Tensor, energy: float = 0.99) -> torch.Tensor:
    """The left singular vectors of ``matrix`` (e.g. a weight update) that carry ``energy`` of its squared spectrum:
    the update's main directions (gradient projection records them; the update-angle analysis compares them)."""
    u, s, _ = torch.linalg.svd(matrix.double(), full_matrices=False)
    power = s.pow(2)
    if power.sum() == 0:
        return u[:, :0]
    k = int(torch.searchsorted(power.cumsum(0) / power.sum(), torch.tensor(energy, dtype=power.dtype)).item()) + 1
    return u[:, : min(k, u.shape[1])]
