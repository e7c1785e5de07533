"""Resume points: everything a run needs to go on exactly where it stopped, written atomically, loaded safely.

A resume point is a folder (``<run>/resume/``) of three files:

- ``tensors.safetensors`` — the trainable weights (and the parameters of modules methods attached), the torch RNG
  state, and every tensor of the method's own state;
- ``optimizer.pt`` — the optimiser's state dict, read back with ``torch.load(weights_only=True)`` (tensors and
  numbers only: loading runs no code);
- ``state.json`` — everything else (where the run is, the accuracy rows so far, the RNG states of Python's generators,
  the scheduler's state, the method's state with its tensors referenced by name) and the SHA-256 of the two other
  files, written last: a truncated or corrupt point is detected, and refused with one line.

A point is written into a temporary folder and renamed into place; the previous point is deleted only once the new
one is complete, so a kill at any moment leaves a usable point (the newest complete one).

``pack`` / ``unpack`` turn a method's state — nested dicts, lists, tuples, numbers, strings, tensors, examples — into
JSON plus named tensors and back; nothing else is stored, so nothing else can be loaded.
"""
from __future__ import annotations

import hashlib
import json
import os
import random
import shutil
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file, save_file

from ..data.task import Example
from ..errors import DataError

FILES = ("tensors.safetensors", "optimizer.pt")


def pack(obj: Any, tensors: dict[str, torch.Tensor], path: str = "s") -> Any:
    """``obj`` as JSON, its tensors moved into ``tensors`` under their path."""
    if isinstance(obj, torch.Tensor):
        tensors[path] = obj.detach().contiguous().cpu()
        return {"__tensor__": path}
    if isinstance(obj, Example):
        return {"__example__": [obj.prompt, obj.target, obj.task, list(obj.options) if obj.options else None,
                                list(obj.answers), list(obj.passage) if obj.passage else None]}
    if isinstance(obj, dict):
        if all(isinstance(k, str) for k in obj):
            return {"__dict__": {k: pack(v, tensors, f"{path}.{k}") for k, v in obj.items()}}
        return {"__items__": [[pack(k, tensors, f"{path}.k{i}"), pack(v, tensors, f"{path}.v{i}")]
                              for i, (k, v) in enumerate(obj.items())]}
    if isinstance(obj, (list, tuple)):
        items = [pack(v, tensors, f"{path}.{i}") for i, v in enumerate(obj)]
        return {"__tuple__": items} if isinstance(obj, tuple) else items
    if obj is None or isinstance(obj, (bool, int, float, str)):
        return obj
    raise TypeError(f"cannot store a {type(obj).__name__} in a resume point (at {path})")


def unpack(obj: Any, tensors: dict[str, torch.Tensor], device: torch.device | str = "cpu") -> Any:
    if isinstance(obj, list):
        return [unpack(v, tensors, device) for v in obj]
    if not isinstance(obj, dict):
        return obj
    if "__tensor__" in obj:
        return tensors[obj["__tensor__"]].to(device)
    if "__example__" in obj:
        prompt, target, task, options, answers, *passage = obj["__example__"]  # points written before passages: 5
        return Example(prompt, target, task, tuple(options) if options else None, tuple(answers),
                       tuple(passage[0]) if passage and passage[0] else None)
    if "__tuple__" in obj:
        return tuple(unpack(v, tensors, device) for v in obj["__tuple__"])
    if "__items__" in obj:
        return {unpack(k, tensors, device): unpack(v, tensors, device) for k, v in obj["__items__"]}
    return {k: unpack(v, tensors, device) for k, v in obj["__dict__"].items()}


def rng_states() -> dict:
    """Python's and torch's global generators (the torch state is a tensor: it goes with the tensors)."""
    version, state, gauss = random.getstate()
    return {"python": [version, list(state), gauss], "torch": torch.get_rng_state()}


def restore_rng(states: dict) -> None:
    version, state, gauss = states["python"]
    random.setstate((version, tuple(state), gauss))
    torch.set_rng_state(states["torch"])


def random_state(rng: random.Random) -> list:
    version, state, gauss = rng.getstate()
    return [version, list(state), gauss]


def set_random_state(rng: random.Random, state: list) -> None:
    rng.setstate((state[0], tuple(state[1]), state[2]))


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def save_point(folder: Path, state: dict, optimizer_state: dict | None) -> None:
    """Write the resume point atomically (temp folder, then rename); the old one goes once the new is complete."""
    folder = Path(folder)
    tmp = folder.with_name(f".{folder.name}.tmp{os.getpid()}")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    tensors: dict[str, torch.Tensor] = {}
    packed = pack(state, tensors)
    save_file(tensors, str(tmp / "tensors.safetensors"))
    torch.save(optimizer_state or {}, tmp / "optimizer.pt")
    meta = {"format": 1, "state": packed, "sha256": {name: _sha256(tmp / name) for name in FILES}}
    (tmp / "state.json").write_text(json.dumps(meta), encoding="utf-8")
    old = folder.with_name(f".{folder.name}.old{os.getpid()}")
    if folder.exists():
        os.replace(folder, old)
    os.replace(tmp, folder)
    shutil.rmtree(old, ignore_errors=True)


def load_point(folder: Path, device: torch.device | str = "cpu") -> tuple[dict, dict]:
    """(state, optimizer state) of a resume point; a missing, truncated or altered file is a one-line DataError."""
    folder = Path(folder)
    meta_path = folder / "state.json"
    if not meta_path.exists():
        raise DataError(f"{folder}: no resume point (state.json missing)")
    try:
        meta = json.loads(meta_path.read_text(encoding="utf-8"))
        sums, packed = meta["sha256"], meta["state"]
    except (ValueError, KeyError, TypeError) as e:
        raise DataError(f"{meta_path}: corrupt resume point ({type(e).__name__}); it cannot be used") from None
    for name in FILES:
        path = folder / name
        if not path.exists() or _sha256(path) != sums.get(name):
            raise DataError(f"{path}: corrupt resume point (missing, truncated or altered); it cannot be used")
    tensors = load_file(str(folder / "tensors.safetensors"))
    try:
        optimizer = torch.load(folder / "optimizer.pt", map_location=device, weights_only=True)
    except Exception as e:  # noqa: BLE001 - whatever refuses to load, e.g. a planted pickle payload
        raise DataError(f"{folder / 'optimizer.pt'}: refused ({type(e).__name__}): a resume point holds tensors "
                        "and numbers only") from None
    return unpack(packed, tensors), optimizer


class ResumeStore:
    """A run's resume points (``<run>/resume``); ``extra()`` adds what the run folder knows (its log's length)."""

    def __init__(self, folder: Path, extra=dict):
        self.folder, self.extra = Path(folder), extra

    def save(self, state: dict, optimizer_state: dict | None) -> None:
        save_point(self.folder, {**state, **self.extra()}, optimizer_state)

    def load(self, device: torch.device | str = "cpu") -> tuple[dict, dict]:
        return load_point(self.folder, device)

    def exists(self) -> bool:
        return (self.folder / "state.json").exists()

    def clear(self) -> None:
        shutil.rmtree(self.folder, ignore_errors=True)
