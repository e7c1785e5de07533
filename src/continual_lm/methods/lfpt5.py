"""LFPT5 (Qin & Joty, "LFPT5: A Unified Framework for Lifelong Few-shot Language Learning Based on Prompt Tuning of
T5", ICLR 2022), as its authors' code runs it (qcwthu/Lifelong-Fewshot-Language-Learning, ``Classification/``:
``Classification.py``, ``model.py``, ``Classification.sh``).

Prompt tuning: the backbone (and any LoRA on it) is frozen and a soft prompt of ``prompt_length`` vectors is all that
trains. The same prompt also learns to *generate* the task's examples: each training example (x, y) is also the
generation example "__gen__ <task>" → "x y" (weight ``lm_weight`` = 0.25). Before each new task the model samples
examples of every old task from itself ("__gen__ <old task>"); a sample is kept only if its generated label is one
of that task's labels (the code's ``if thissampletype in alllabelthistask``), and at most ``per_class`` = 2 per label
(``memnumforeveryclass``). These pseudo-examples join the new task's training data (the code writes them into its
train file), and on the pseudo-examples of each batch the prompt is distilled from the prompt as it was before the
task:

    L = (1 − λ_kd) · (L_task + λ_lm · L_gen) + λ_kd · KD,    KD = Σ KL( p_old ‖ p )        (λ_kd = 0.01, T = 1)

summed over the pseudo-examples' answer positions (``kl_div(..., reduction='sum')``, no temperature). Generative
backbones only (causal or seq2seq). Tasks without labels keep every parsed sample, up to the generation budget.

Where our port differs, and why:
- ``variant: ours`` (default) runs a prompt of 20 vectors with AdamW at ``PROMPT_LR`` (swept on Biography) — a CPU's
  budget; the authors' T5-large prompt is 300 vectors trained with Adafactor at lr 0.5 (clip 1.0, decay −0.8,
  weight decay 1e-5 from ``training.weight_decay``). ``lfpt5:authors`` sets those three (each may still be set).
- The code prepends nothing: its prompt follows the input tokens in T5's encoder; ours is prepended to the input
  (the same position for every input, which a causal model needs to read it before the text).
- The code samples from T5 with ``repetition_penalty`` 2.5 and top-k 64, several sequences per prompt; ours samples
  top-k (``top_k``) without a repetition penalty, ``gamma`` × the new task's examples in all (the budget from which
  the per-label memory is chosen).
- The code's KD runs over every decoder position of T5 (padding included); ours over the answer tokens."""
from __future__ import annotations

import math
import random
from typing import Literal

import torch
from pydantic import Field, model_validator
from torch import nn

from ..data.task import Example
from ..errors import ConfigError
from ..models.weights import snapshot
from .base import PROMPT_LR, Count, Method, MethodParams, Real, register
from .distill import distillation_kl, teacher_logits
from .pseudo import first_sample, generation_example, pseudo_examples, sample_texts, task_start


class SoftPrompt(nn.Module):
    """One prompt for every input: ``forward(input_ids, mask)`` → [batch, length, hidden]."""

    def __init__(self, backbone, length: int, generator: torch.Generator):
        super().__init__()
        embeddings = backbone.input_embeddings().weight.detach()
        drawn = torch.randint(0, embeddings.shape[0], (length,), generator=generator)
        self.prompt = nn.Parameter(embeddings[drawn].clone())
        self.length = length

    def forward(self, input_ids: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        return self.prompt.unsqueeze(0).expand(input_ids.shape[0], -1, -1)


def generative_only(ctx, name: str) -> None:
    if ctx.backbone.kind not in ("causal", "seq2seq"):
        raise ConfigError(f"method {name!r} generates pseudo-examples: it needs model.kind causal or seq2seq, "
                          f"not {ctx.backbone.kind!r}")


@register
class LFPT5(Method):
    name = "lfpt5"
    extra_work = ('the generation task: a second forward-backward per batch on generation examples (the whole '
                  "example as the target), the old prompt's forward for the distillation, and sampling pseudo-"
                  'examples before each task')
    description = "LFPT5 (Qin & Joty, 2022): prompt tuning that generates and distils pseudo-examples of old tasks."

    class Params(MethodParams):
        variant: Literal["ours", "authors"] = Field(
            "ours", description="ours: 20 vectors, AdamW at PROMPT_LR; authors: 300 vectors, Adafactor at 0.5")
        prompt_length: Count | None = Field(None, ge=1, description="soft prompt vectors (null: 20; authors: 300)")
        optimizer: Literal["adamw", "adafactor"] | None = Field(None, description="null: adamw; authors: adafactor")
        per_class: Count | None = Field(2, ge=1, description="pseudo-examples kept per label of an old task "
                                                              "(null: every sample whose label is the task's)")
        gamma: Real = Field(0.2, ge=0, description="samples generated per new example, over all old tasks")
        lm_weight: Real = Field(0.25, ge=0, description="λ_lm, weight of the generation loss")
        kd_weight: Real = Field(0.01, ge=0, le=1, description="λ_kd of (1 − λ_kd)(task + λ_lm·gen) + λ_kd·KD")
        temperature: Real = Field(1.0, gt=0, description="T of the distillation (the code: none, i.e. 1)")
        kd_reduction: Literal["sum", "mean"] = Field("sum", description="KD summed over positions (the code) or averaged")
        max_new_tokens: Count | None = Field(None, ge=1, description="length of a generated pseudo-example (None: model.max_length)")
        top_k: Count = Field(20, ge=1, description="top-k sampling of pseudo-examples")
        generation_batch_size: Count = Field(64, ge=1, description="pseudo-examples generated at once")
        lr: Real | None = Field(None, gt=0, description=f"the prompt's learning rate (null: {PROMPT_LR}; authors: 0.5)")

        @model_validator(mode="after")
        def _variant_defaults(self) -> "LFPT5.Params":
            authors = self.variant == "authors"
            for key, ours, theirs in (("prompt_length", 20, 300), ("optimizer", "adamw", "adafactor"),
                                      ("lr", PROMPT_LR, 0.5)):
                if getattr(self, key) is None:
                    object.__setattr__(self, key, theirs if authors else ours)
            return self

    state_attributes = ("teacher", "pseudo", "counts")

    def after_load(self, ctx) -> None:
        self.tracked = {"prompt": self.prompt.prompt}

    def setup(self, ctx) -> None:
        super().setup(ctx)
        generative_only(ctx, self.name)
        for param in ctx.backbone.model.parameters():
            param.requires_grad_(False)
        self.prompt = SoftPrompt(ctx.backbone, self.params.prompt_length,
                                 torch.Generator().manual_seed(ctx.config.seed))
        ctx.backbone.attach_prompt(self.prompt)
        self.pseudo: list[Example] = []
        self.counts: dict[str, dict[str, dict[str, int]]] = {}

    def make_optimizer(self, params, lr: float, weight_decay: float) -> torch.optim.Optimizer:
        if self.params.optimizer == "adafactor":  # the authors' settings (Classification.py)
            from transformers.optimization import Adafactor
            return Adafactor(params, lr=lr, clip_threshold=1.0, decay_rate=-0.8, weight_decay=weight_decay,
                             scale_parameter=False, relative_step=False)
        return super().make_optimizer(params, lr, weight_decay)

    def before_stage(self, ctx) -> None:
        self.tracked = {"prompt": self.prompt.prompt}
        self.teacher = snapshot(self.tracked)
        old = ctx.tasks[: ctx.stage_task_indices[0]]
        self.pseudo = []
        if not old:
            return
        p = self.params
        per_task = math.ceil(p.gamma * len(ctx.task.train) / len(old))
        first_samples = {}  # one per old task in the log: when few parse or are kept, it says why
        for i, task in enumerate(old):
            samples = sample_texts(ctx.backbone, task_start(task.name), per_task, p.max_new_tokens, p.top_k,
                                   p.generation_batch_size, ctx.config.seed * 1000 + ctx.stage_index * 100 + i)
            parsed = pseudo_examples(samples, task.name)
            kept = keep_per_label(parsed, task.options, p.per_class, random.Random(f"{ctx.config.seed}:lfpt5:{i}"))
            self.pseudo += kept
            self.counts.setdefault(ctx.task.name, {})[task.name] = {"sampled": len(samples), "parsed": len(parsed),
                                                                    "kept": len(kept)}
            first_samples[task.name] = first_sample(samples)
        ctx.log({"event": "lfpt5_pseudo", "stage": ctx.task.name, "counts": self.counts[ctx.task.name],
                 "first_samples": first_samples})

    def stage_examples(self, ctx, stage) -> list[Example]:
        return stage.examples + self.pseudo  # the pseudo-examples join the new task's data

    def loss(self, ctx, examples: list[Example]) -> torch.Tensor:
        p = self.params
        pseudo = [ex for ex in examples if ex.task != ctx.task.name]
        kd = None
        if pseudo and p.kd_weight:  # the teacher first: it swaps the prompt in place
            old = teacher_logits(ctx.backbone, self.tracked, self.teacher, pseudo)
            new, mask = ctx.backbone.output_logits(pseudo)
            kd = distillation_kl(new, old, mask, p.temperature, t_squared=False, reduction=p.kd_reduction)
        loss = ctx.backbone.loss(examples)
        if p.lm_weight:
            generation = [generation_example(ex, task_start(ex.task), ctx.backbone) for ex in examples]
            loss = loss + p.lm_weight * ctx.backbone.loss(generation)
        return loss if kd is None else (1 - p.kd_weight) * loss + p.kd_weight * kd

    def report(self) -> dict:
        return {"pseudo_examples": self.counts} if self.counts else {}


def keep_per_label(parsed: list[Example], labels: tuple[str, ...] | None, per_class: int | None,
                   rng: random.Random) -> list[Example]:
    """The samples whose generated answer is one of ``labels``, at most ``per_class`` per label (drawn with ``rng``);
    without labels, every sample with a non-empty answer."""
    if not labels:
        return [ex for ex in parsed if ex.target.strip()]
    by_label: dict[str, list[Example]] = {}
    for ex in parsed:
        answer = ex.target.strip().split("\n")[0].strip()
        if answer in labels:
            by_label.setdefault(answer, []).append(Example(ex.prompt, answer, ex.task, labels))
    kept = []
    for label in labels:
        group = by_label.get(label, [])
        kept += group if per_class is None or len(group) <= per_class else rng.sample(group, per_class)
    return kept
