"""Loading a pretrained model and its tokenizer: a named model (``models/named.py``), a local GGUF file's conversion,
a local folder or a hub id; each problem is one line naming ``model.path`` or ``model.kind``."""
from __future__ import annotations

import logging
from pathlib import Path

from transformers import (AutoModel, AutoModelForCausalLM, AutoModelForSeq2SeqLM, AutoTokenizer, PreTrainedModel,
                          PreTrainedTokenizerBase)

from ..config import ModelSettings
from ..errors import ConfigError
from .named import DEFAULT_ENCODER, NAMED_MODELS, NamedModel, cache_root, converted_gguf, gguf_cache_folder, resolve_named

log = logging.getLogger(__name__)
AUTO_CLASSES = {"causal": AutoModelForCausalLM, "seq2seq": AutoModelForSeq2SeqLM, "encoder": AutoModel}


def named_model(settings: ModelSettings) -> NamedModel | None:
    """The row of ``models/named.py`` that ``model.path`` names (the encoder's default when it names none)."""
    name = settings.path or (DEFAULT_ENCODER if settings.kind == "encoder" and settings.gguf_file is None else None)
    named = NAMED_MODELS.get(name or "")
    if named is not None and named.kind != settings.kind:
        raise ConfigError(f"model.kind: {named.name} is a {named.kind} model, not {settings.kind}; set model.kind: "
                          f"{named.kind}")
    return named


def model_location(settings: ModelSettings) -> str:
    """Where the weights load from: a named model's folder (its GGUF converted on first use), a local GGUF file's
    conversion, or ``model.path`` itself (a local folder or a hub id)."""
    named = named_model(settings)
    if named is not None:
        return str(resolve_named(named.name, cache_root()))
    if settings.gguf_file is not None:
        gguf = Path(settings.gguf_file).expanduser()
        if not gguf.is_absolute() and settings.path:
            gguf = Path(settings.path).expanduser() / gguf
        if not gguf.is_file():
            raise ConfigError(f"model.gguf_file: {gguf} is not a file")
        if settings.kind != "causal":
            raise ConfigError("model.gguf_file: GGUF files load as causal models; set model.kind: causal")
        return str(converted_gguf(gguf, gguf_cache_folder(gguf, cache_root())))
    assert settings.path is not None  # ModelSettings guarantees a path, a GGUF file or a tiny model
    return settings.path


def load_pretrained(settings: ModelSettings) -> tuple[PreTrainedModel, PreTrainedTokenizerBase]:
    path = model_location(settings)
    # A hub id is "name" or "org/name"; anything else is a local path and must exist.
    is_hub_id = not path.startswith((".", "/", "~")) and path.count("/") <= 1
    local = Path(path).expanduser()
    if not local.exists() and not is_hub_id:
        raise ConfigError(f"model.path: {path} does not exist")
    if local.is_dir() and not (local / "config.json").exists():
        raise ConfigError(f"model.path: {path} has no config.json: give the folder a Hugging Face model was saved "
                          "to (save_pretrained)")
    try:
        tokenizer = AutoTokenizer.from_pretrained(path)
        model = AUTO_CLASSES[settings.kind].from_pretrained(path)
    except OSError as e:
        raise ConfigError(f"model.path: cannot load {path!r} as a {settings.kind} model: {str(e).splitlines()[0]}") from None
    except ValueError as e:  # e.g. a GPT-2 folder asked for as seq2seq: "Unrecognized configuration class ..."
        detail = (str(e).splitlines() or [type(e).__name__])[0][:120]
        fits = [k for k, auto in AUTO_CLASSES.items() if k != settings.kind and _loadable(auto, path)]
        hint = f"; set model.kind: {fits[0]}" if fits else ""
        raise ConfigError(f"model.path: {path!r} is not a {settings.kind} model ({detail}){hint}") from None
    if settings.kind != "encoder" and tokenizer.eos_token is None:
        # A generative model must end its answers: fall back to the separator token, which plays that part in
        # BERT-style vocabularies (documented in the README).
        if tokenizer.sep_token is None:
            raise ConfigError(f"model.path: the tokenizer of {path!r} has no EOS (and no SEP) token: a {settings.kind} "
                              "model needs one to end its answers; add one to the tokenizer (tokenizer.eos_token)")
        tokenizer.eos_token = tokenizer.sep_token
    return model, tokenizer


def capped_length(settings: ModelSettings, model: PreTrainedModel) -> ModelSettings:
    """``model.max_length`` capped at the positions the model has (one line says so): a longer one would fail or,
    for models without a limit in their config, only slow training down."""
    limit = getattr(model.config, "max_position_embeddings", None) or getattr(model.config, "n_positions", None)
    if not limit or settings.max_length <= limit:
        return settings
    log.warning("model.max_length %d is above the %d positions of the model: capped at %d", settings.max_length,
                limit, limit)
    return settings.model_copy(update={"max_length": limit})


def _loadable(auto, path: str) -> bool:
    from transformers import AutoConfig
    try:
        return type(AutoConfig.from_pretrained(path)) in auto._model_mapping
    except Exception:  # noqa: BLE001 - only a hint
        return False
