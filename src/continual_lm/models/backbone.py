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

import torch
import torch.nn.functional as F
from torch import nn
from transformers import PreTrainedModel, PreTrainedTokenizerBase

from ..config import ModelSettings
from ..data.task import Example
from ..errors import ConfigError
from .loading import capped_length, load_pretrained, named_model
from .prompts import PromptShaper, wants_chat_template
from .tiny import build_tiny_model
from .tokenizer import build_word_tokenizer

IGNORE_INDEX = -100
LAYER_LIST_NAMES = ("h", "layers", "layer", "block")
DEFAULT_MAX_NEW_TOKENS = 16  # tasks without labels (open answers)

try:  # transformers >= 5: ``logits_to_keep`` takes a [batch, positions] mask (the LM head on those positions only)
    from transformers.modeling_utils import slice_logits_to_keep as _slicing  # noqa: F401
    LOGITS_TO_KEEP_MASK = True
except ImportError:
    LOGITS_TO_KEEP_MASK = False


def _pad(seqs: list[list[int]], value: int, left: bool = False) -> torch.Tensor:
    width = max(len(s) for s in seqs)
    rows = [([value] * (width - len(s)) + s) if left else (s + [value] * (width - len(s))) for s in seqs]
    return torch.tensor(rows, dtype=torch.long)


class Backbone(ABC):
    kind = "base"

    def __init__(self, model: nn.Module, tokenizer: PreTrainedTokenizerBase, settings: ModelSettings,
                 device: torch.device | str = "cpu", chat: bool = False):
        self.model = model.to(device)
        self.tokenizer = tokenizer
        self.settings = settings
        self.device = torch.device(device)
        self.shaper = PromptShaper(tokenizer, chat)  # prompt → ids: the chat template, truncation (prompts.py)
        # the answer's room: generation's limit and what the prompt leaves free (set from the run's labels when None)
        self.max_new_tokens: int = settings.max_new_tokens or DEFAULT_MAX_NEW_TOKENS
        self.forward_model: nn.Module = self.model  # replaced by the accelerate-prepared wrapper (DDP)
        self._frozen_cache: dict | None = None       # values valid while the weights cannot change (inference())
        self.prompt: nn.Module | None = None         # prefix embeddings prepended to every input (attach_prompt)
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
        return self.shaper.ids(text)

    def prompt_token_ids(self, ex: Example) -> list[int]:
        """The ids of ``ex``'s prompt as the model reads them, in training and evaluation alike (prompts.py): at most
        the budget the answer leaves."""
        return self.shaper.prompt_ids(ex.prompt, ex.passage, self.token_budget - self.max_new_tokens)

    # ---------------------------------------------------------------- method modules and soft prompts
    def attach(self, name: str, module: nn.Module) -> nn.Module:
        """Register a method's own module (prompts, routers, keys) on the model as ``cl_<name>``: it moves with the
        model, trains with it (also under DDP, which wraps the model after ``setup``), and checkpoints hold it."""
        module = module.to(self.device)
        self.model.add_module(f"cl_{name}", module)
        return module

    @property
    def token_budget(self) -> int:
        """Tokens an input may have: ``model.max_length`` less the prompt's prepended positions (``module.length``)."""
        return self.settings.max_length - (getattr(self.prompt, "length", 0) if self.prompt is not None else 0)

    def attach_prompt(self, module: nn.Module) -> None:
        """``module(input_ids, attention_mask)`` → [batch, P, hidden] embeddings, prepended to every input of the
        model at the embedding level (training, evaluation and generation): soft prompts (L2P, LFPT5)."""
        self.prompt = self.attach("prompt", module)

    def model_inputs(self, input_ids: torch.Tensor, mask: torch.Tensor) -> dict[str, torch.Tensor]:
        """The keyword inputs of a forward or ``generate`` call: token ids, or, with a prompt attached, the input
        embeddings with the prompt's prepended (and the attention mask extended to cover them)."""
        if self.prompt is None:
            return {"input_ids": input_ids, "attention_mask": mask}
        prefix = self.prompt(input_ids, mask)
        embeds = torch.cat([prefix, self.input_embeddings()(input_ids)], dim=1)
        return {"inputs_embeds": embeds, "attention_mask": torch.cat([mask.new_ones(prefix.shape[:2]), mask], dim=1)}

    @torch.no_grad()
    def represent(self, input_ids: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """The mean-pooled last hidden state of the inputs without any prompt ([batch, hidden]): a query of what an
        input is (L2P's prompt selection). The encoder's for encoder-decoder models."""
        model = self.base_model
        encoder = model.get_encoder() if getattr(model.config, "is_encoder_decoder", False) else model
        out = encoder(input_ids=input_ids, attention_mask=mask, output_hidden_states=True)
        hidden = out.hidden_states[-1] if getattr(out, "hidden_states", None) is not None else out.last_hidden_state
        return (hidden * mask.unsqueeze(-1)).sum(1) / mask.sum(1, keepdim=True).clamp(min=1)

    def encode_prompts(self, examples: list[Example]) -> tuple[torch.Tensor, torch.Tensor]:
        """The examples' prompts as padded token ids and mask (as the backbone's own forward reads them)."""
        seqs = [self.prompt_token_ids(ex) or [self.tokenizer.pad_token_id] for ex in examples]
        return _pad(seqs, self.tokenizer.pad_token_id).to(self.device), _pad([[1] * len(s) for s in seqs], 0).to(self.device)

    @abstractmethod
    def output_logits(self, examples: list[Example], labels: list[str] | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """What the model puts out for ``examples``, for distillation (LwF, LFPT5): ([batch, positions, classes]
        logits, [batch, positions] mask of the positions that count). Generative backbones: the next-token logits at
        each position of the target answer (teacher-forced); encoders: the scores of ``labels``."""

    def loss_and_logits(self, examples: list[Example], labels: list[str] | None = None
                        ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """``loss(examples)`` and ``output_logits(examples, labels)`` from one forward pass (LwF's student)."""
        return (self.loss(examples), *self.output_logits(examples, labels))

    def target_room(self, prompt: str) -> int:
        """Tokens a training target (its text and the end token) may take after ``prompt``; more are cut."""
        raise ConfigError(f"model.kind: {self.kind!r} has no generated target; this method needs a causal or seq2seq model")

    def target_length(self, text: str) -> int:
        """Tokens ``text`` takes as a training target, the end token included."""
        return len(self.shaper.answer_ids(text, self.tokenizer.eos_token_id))

    def sample(self, prompts: list[str], max_new_tokens: int, top_k: int) -> list[str]:
        """Texts sampled (top-k) from the model after each prompt: pseudo-examples (LAMOL, LFPT5, SAPT)."""
        raise ConfigError(f"model.kind: {self.kind!r} cannot generate text; this method needs a causal or seq2seq model")

    # ---------------------------------------------------------------- interface
    @abstractmethod
    def loss(self, examples: list[Example]) -> torch.Tensor:
        """Mean training loss on ``examples`` (with gradients)."""

    @abstractmethod
    def predict(self, examples: list[Example]) -> list[str]:
        """One answer string per example (no gradients)."""


class CausalLMBackbone(Backbone):
    kind = "causal"

    def target_room(self, prompt: str) -> int:
        return self.token_budget - len(self.prompt_token_ids(Example(prompt, "", "room")))

    def _teacher_forced(self, examples: list[Example]) -> tuple[dict, torch.Tensor]:
        """Model inputs of prompt + answer, and the labels (the answer's tokens; IGNORE_INDEX elsewhere). The prompt
        is shaped as in evaluation; the answer gets what the prompt leaves (all of it for a text without a prompt:
        pre-training, and the long answers of generation examples)."""
        inputs, labels = [], []
        for ex in examples:
            prompt = self.prompt_token_ids(ex)
            target = self.shaper.answer_ids(ex.target, self.tokenizer.eos_token_id)[: self.token_budget - len(prompt)]
            inputs.append(prompt + target)
            labels.append([IGNORE_INDEX] * len(prompt) + target)
        input_ids = _pad(inputs, self.tokenizer.pad_token_id).to(self.device)
        mask = _pad([[1] * len(s) for s in inputs], 0).to(self.device)
        label_ids = _pad(labels, IGNORE_INDEX).to(self.device)
        kwargs = self.model_inputs(input_ids, mask)
        prefix = kwargs["attention_mask"].shape[1] - mask.shape[1]
        if prefix:
            label_ids = torch.cat([label_ids.new_full((len(examples), prefix), IGNORE_INDEX), label_ids], dim=1)
        return kwargs, label_ids

    def _answer_logits(self, examples: list[Example]) -> tuple[torch.Tensor, torch.Tensor]:
        """([answer tokens, vocabulary] next-token logits, [answer tokens] their targets), over the batch's answer
        tokens in order. The LM head runs on those positions only (49,152 logits per position for SmolLM2: 23% of a
        step at every position); the loss is the full head's (tests/test_generative.py)."""
        kwargs, labels = self._teacher_forced(examples)
        keep = F.pad(labels[:, 1:] != IGNORE_INDEX, (0, 1), value=False)  # position t predicts token t + 1
        targets = labels[:, 1:][keep[:, :-1]]
        if LOGITS_TO_KEEP_MASK:
            return self.forward_model(**kwargs, logits_to_keep=keep).logits, targets
        return self.forward_model(**kwargs).logits[keep], targets

    def loss(self, examples: list[Example]) -> torch.Tensor:
        return self.loss_and_logits(examples)[0]

    def output_logits(self, examples: list[Example], labels: list[str] | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        return self.loss_and_logits(examples)[1:]

    def loss_and_logits(self, examples: list[Example], labels: list[str] | None = None
                        ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        logits, targets = self._answer_logits(examples)
        mask = torch.ones_like(targets, dtype=torch.bool).unsqueeze(0)
        return F.cross_entropy(logits.float(), targets), logits.unsqueeze(0), mask

    def _generate(self, examples: list[Example], max_new_tokens: int, **sampling) -> list[str]:
        budget = self.token_budget - max_new_tokens
        ids = [self.shaper.prompt_ids(ex.prompt, ex.passage, budget) or [self.tokenizer.eos_token_id] for ex in examples]
        input_ids = _pad(ids, self.tokenizer.pad_token_id, left=True).to(self.device)
        mask = _pad([[1] * len(p) for p in ids], 0, left=True).to(self.device)
        kwargs = self.model_inputs(input_ids, mask)
        out = self.model.generate(**kwargs, max_new_tokens=max_new_tokens, pad_token_id=self.tokenizer.pad_token_id,
                                  eos_token_id=self.tokenizer.eos_token_id, **sampling)
        new = out if "inputs_embeds" in kwargs else out[:, input_ids.shape[1]:]  # from embeddings: new tokens only
        return self.tokenizer.batch_decode(new, skip_special_tokens=True)

    @torch.no_grad()
    def predict(self, examples: list[Example]) -> list[str]:
        # The whole generated text: each metric reads what it needs (exact match as many lines as the answer has).
        return [t.strip() for t in self._generate(examples, self.max_new_tokens, do_sample=False)]

    @torch.no_grad()
    def sample(self, prompts: list[str], max_new_tokens: int, top_k: int) -> list[str]:
        examples = [Example(p, "", "sample") for p in prompts]
        return [t.strip() for t in self._generate(examples, max_new_tokens, do_sample=True, top_k=top_k)]


class Seq2SeqBackbone(Backbone):
    kind = "seq2seq"

    def target_room(self, prompt: str) -> int:
        return self.settings.max_length  # the decoder's: max_length − 1 tokens and the end token (_teacher_forced)

    def prompt_token_ids(self, ex: Example) -> list[int]:
        """The encoder's input: the shaped prompt and EOS (the decoder has the answer's room to itself)."""
        return self.shaper.prompt_ids(ex.prompt, ex.passage, self.token_budget - 1) + [self.tokenizer.eos_token_id]

    def _teacher_forced(self, examples: list[Example]) -> tuple[dict, torch.Tensor]:
        input_ids, mask = self.encode_prompts(examples)
        targets = [self.ids(ex.target)[: self.settings.max_length - 1] + [self.tokenizer.eos_token_id] for ex in examples]
        return self.model_inputs(input_ids, mask), _pad(targets, IGNORE_INDEX).to(self.device)

    def loss(self, examples: list[Example]) -> torch.Tensor:
        kwargs, labels = self._teacher_forced(examples)
        return self.forward_model(**kwargs, labels=labels).loss

    def output_logits(self, examples: list[Example], labels: list[str] | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        return self.loss_and_logits(examples)[1:]

    def loss_and_logits(self, examples: list[Example], labels: list[str] | None = None
                        ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        kwargs, label_ids = self._teacher_forced(examples)
        out = self.forward_model(**kwargs, labels=label_ids)
        return out.loss, out.logits, label_ids != IGNORE_INDEX

    def _generate(self, examples: list[Example], max_new_tokens: int, **sampling) -> list[str]:
        input_ids, mask = self.encode_prompts(examples)
        out = self.model.generate(**self.model_inputs(input_ids, mask), max_new_tokens=max_new_tokens, **sampling)
        return [t.strip() for t in self.tokenizer.batch_decode(out, skip_special_tokens=True)]

    @torch.no_grad()
    def predict(self, examples: list[Example]) -> list[str]:
        return self._generate(examples, self.max_new_tokens, do_sample=False)

    @torch.no_grad()
    def sample(self, prompts: list[str], max_new_tokens: int, top_k: int) -> list[str]:
        return self._generate([Example(p, "", "sample") for p in prompts], max_new_tokens, do_sample=True, top_k=top_k)


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

    def embed(self, texts: list[str], prompted: bool = False) -> torch.Tensor:
        """Normalised mean-pooled embeddings; ``prompted``: with the attached prompt prepended (inputs, not labels)."""
        tok = self.tokenizer(texts, padding=True, truncation=True,
                             max_length=self.token_budget if prompted else self.settings.max_length, return_tensors="pt")
        ids, mask = tok["input_ids"].to(self.device), tok["attention_mask"].to(self.device)
        kwargs = self.model_inputs(ids, mask) if prompted else {"input_ids": ids, "attention_mask": mask}
        mask = kwargs["attention_mask"]
        hidden = self.forward_model(**kwargs).last_hidden_state
        pooled = (hidden * mask.unsqueeze(-1)).sum(1) / mask.sum(1, keepdim=True).clamp(min=1)
        return F.normalize(pooled, dim=-1)

    def encode_prompts(self, examples: list[Example]) -> tuple[torch.Tensor, torch.Tensor]:
        tok = self.tokenizer([ex.prompt for ex in examples], padding=True, truncation=True,
                             max_length=self.token_budget, return_tensors="pt")
        return tok["input_ids"].to(self.device), tok["attention_mask"].to(self.device)

    def output_logits(self, examples: list[Example], labels: list[str] | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """The scores of ``labels`` (default: each batch's candidates) as [batch, 1, labels], all positions counting."""
        prompts = self.embed([ex.prompt for ex in examples], prompted=True)
        return self._scores(prompts, examples, labels)

    def _scores(self, prompts: torch.Tensor, examples: list[Example], labels: list[str] | None):
        labels = labels or sorted({o for ex in examples for o in self.candidates(ex)})
        sims = self.settings.label_scale * prompts @ self.embed(labels).T
        return sims.unsqueeze(1), torch.ones(len(examples), 1, dtype=torch.bool, device=sims.device)

    def _logits(self, examples: list[Example], prompts: torch.Tensor | None = None) -> tuple[torch.Tensor, list[str]]:
        """Each example's scores of its candidates (-inf elsewhere) over the batch's labels; ``prompts``: the
        examples' embeddings when already computed."""
        per_example = [self.candidates(ex) for ex in examples]
        labels = sorted({o for c in per_example for o in c})
        index = {lab: i for i, lab in enumerate(labels)}
        if prompts is None:
            prompts = self.embed([ex.prompt for ex in examples], prompted=True)
        sims = self.settings.label_scale * prompts @ self._label_embeddings(labels).T
        if self.label_space is not None:
            return sims, labels
        allowed = torch.zeros_like(sims, dtype=torch.bool)
        for row, c in enumerate(per_example):
            allowed[row, [index[o] for o in c]] = True
        return sims.masked_fill(~allowed, float("-inf")), labels

    def _cross_entropy(self, examples: list[Example], prompts: torch.Tensor | None = None) -> torch.Tensor:
        logits, labels = self._logits(examples, prompts)
        target = torch.tensor([labels.index(ex.target) for ex in examples], device=self.device)
        return F.cross_entropy(logits, target)

    def loss(self, examples: list[Example]) -> torch.Tensor:
        return self._cross_entropy(examples)

    def loss_and_logits(self, examples: list[Example], labels: list[str] | None = None
                        ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        prompts = self.embed([ex.prompt for ex in examples], prompted=True)  # once, for both
        return (self._cross_entropy(examples, prompts), *self._scores(prompts, examples, labels))

    @torch.no_grad()
    def predict(self, examples: list[Example]) -> list[str]:
        logits, labels = self._logits(examples)
        return [labels[i] for i in logits.argmax(-1).tolist()]


BACKBONES = {"causal": CausalLMBackbone, "seq2seq": Seq2SeqBackbone, "encoder": EncoderBackbone}
PEFT_TASK_TYPES = {"causal": "CAUSAL_LM", "seq2seq": "SEQ_2_SEQ_LM", "encoder": "FEATURE_EXTRACTION"}


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
    named = None
    if settings.tiny is not None:
        tokenizer = build_word_tokenizer(corpus)
        model = build_tiny_model(settings.tiny, settings.kind, tokenizer, settings.max_length, seed)
    else:
        named = named_model(settings)
        model, tokenizer = load_pretrained(settings)
        settings = capped_length(settings, model)
        if named is not None and settings.lora.target_modules is None:  # the named model's usual LoRA targets
            settings = settings.model_copy(update={"lora": settings.lora.model_copy(
                update={"target_modules": list(named.target_modules)})})
    if settings.finetune == "lora":
        model = apply_lora(model, settings, settings.kind)
    else:
        for p in model.parameters():
            p.requires_grad_(True)
    chat = settings.kind != "encoder" and wants_chat_template(settings.chat_template, tokenizer,
                                                               named.instruct if named else None)
    return BACKBONES[settings.kind](model, tokenizer, settings, device, chat)
