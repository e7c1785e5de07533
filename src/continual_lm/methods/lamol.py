"""LAMOL (Sun et al., "LAMOL: LAnguage MOdeling for Lifelong Language Learning", ICLR 2020).

The model also learns to *generate* its tasks' examples: every training example is also a language-modelling
target "<eos> prompt answer" (weight ``lm_weight``). Before each new task it samples γ × n pseudo-examples of the
earlier tasks from itself (starting from <eos>), and trains on them together with the new data (γ pseudo per
real example in each batch). The quality of the samples is reported in the paper's categories: valid format,
after de-duplication, question matches a real one, question and answer both correct. Causal LMs only."""
from __future__ import annotations

from pydantic import Field

import math
import re

import torch

from ..data.task import Example
from ..errors import ConfigError
from ..evaluation.metrics import normalize_answer
from .base import Count, Method, MethodParams, Real, register

ANSWER = re.compile(r"Answer\s*:", re.IGNORECASE)


def parse_sample(text: str) -> tuple[str, str] | None:
    """(prompt ending in "Answer:", answer) from a generated text, or None when the format is broken."""
    matches = list(ANSWER.finditer(text))
    if not matches:
        return None
    cut = matches[-1]
    question, answer = text[: cut.start()].strip(), text[cut.end():].strip()
    if not question or not answer:
        return None
    return question + "\nAnswer:", answer


def sample_quality(samples: list[str], real: list[Example]) -> dict:
    """Counts in LAMOL's categories (each a subset of the one before)."""
    parsed = [p for p in (parse_sample(s) for s in samples) if p is not None]
    unique = {(normalize_answer(q), normalize_answer(a)) for q, a in parsed}
    answers_of: dict[str, set[str]] = {}
    for ex in real:
        answers_of.setdefault(normalize_answer(ex.prompt), set()).update(normalize_answer(a) for a in ex.answers)
    real_question = {(q, a) for q, a in unique if q in answers_of}
    correct = {(q, a) for q, a in real_question if a in answers_of[q]}
    n = max(len(samples), 1)
    counts = {"generated": len(samples), "valid_format": len(parsed), "after_dedup": len(unique),
              "question_matches_real": len(real_question), "question_and_answer_correct": len(correct)}
    return {**counts, **{f"{k}_pct": round(100 * v / n, 1) for k, v in counts.items() if k != "generated"}}


@register
class LAMOL(Method):
    name = "lamol"
    description = "LAMOL (Sun et al., 2020): the LM generates pseudo-examples of old tasks to rehearse them."

    class Params(MethodParams):
        gamma: Real = Field(0.2, ge=0, description="pseudo-examples per real example")
        lm_weight: Real = Field(0.25, ge=0, description="weight of the generation (LM) loss")
        max_new_tokens: Count = Field(48, ge=1, description="length of a generated pseudo-example")
        top_k: Count = Field(20, ge=1, description="top-k sampling of pseudo-examples")
        generation_batch_size: Count = Field(64, ge=1, description="pseudo-examples generated at once")

    def setup(self, ctx) -> None:
        super().setup(ctx)
        if ctx.backbone.kind != "causal":
            raise ConfigError(f"method 'lamol' needs a causal LM (model.kind: causal), not {ctx.backbone.kind!r}")
        self.start = ctx.backbone.tokenizer.eos_token
        self.pseudo: list[Example] = []
        self.quality: dict[str, dict] = {}

    def generation_example(self, ex: Example) -> Example:
        return Example(self.start, f"{ex.prompt} {ex.target}", ex.task)

    def before_stage(self, ctx) -> None:
        if ctx.stage_index == 0:
            return
        n = math.ceil(self.params.gamma * len(ctx.task.train))
        samples = self.generate(ctx, n)
        old = [ex for t in ctx.tasks[: ctx.stage_index] for ex in t.train]
        self.quality[ctx.task.name] = sample_quality(samples, old)
        ctx.log({"event": "lamol_samples", "task": ctx.task.name, **self.quality[ctx.task.name]})
        self.pseudo = [Example(q, a, "pseudo") for q, a in (p for p in map(parse_sample, samples) if p)]

    @torch.no_grad()
    def generate(self, ctx, n: int) -> list[str]:
        backbone = ctx.backbone
        tok = backbone.tokenizer
        was_training = backbone.model.training
        backbone.model.eval()
        texts: list[str] = []
        start = tok(self.start, add_special_tokens=False)["input_ids"]
        torch.manual_seed(ctx.config.seed + ctx.stage_index)
        while len(texts) < n:
            bs = min(self.params.generation_batch_size, n - len(texts))
            ids = torch.tensor([start] * bs, device=backbone.device)
            out = backbone.model.generate(input_ids=ids, attention_mask=torch.ones_like(ids), do_sample=True,
                                          top_k=self.params.top_k, max_new_tokens=self.params.max_new_tokens,
                                          pad_token_id=tok.pad_token_id, eos_token_id=tok.eos_token_id)
            texts.extend(t.strip() for t in tok.batch_decode(out[:, ids.shape[1]:], skip_special_tokens=True))
        backbone.model.train(was_training)
        return texts

    def loss(self, ctx, examples: list[Example]) -> torch.Tensor:
        if self.pseudo:
            k = math.ceil(self.params.gamma * len(examples))
            examples = examples + [self.pseudo[ctx.rng.randrange(len(self.pseudo))] for _ in range(k)]
        qa = ctx.backbone.loss(examples)
        lm = ctx.backbone.loss([self.generation_example(ex) for ex in examples])
        return qa + self.params.lm_weight * lm

    def report(self) -> dict:
        return {"pseudo_sample_quality": self.quality} if self.quality else {}
