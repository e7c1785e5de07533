"""The unit of continual learning: a task with train/test examples, a metric and optional label options."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

Metric = Literal["exact_match", "choice_letter", "number", "rouge_l", "edit_similarity", "sari"]  # evaluation/scores.py


@dataclass(frozen=True)
class Example:
    """One (prompt, target) pair. ``answers`` holds every acceptable answer (target first). ``passage``: where the
    passage (the sentence, review, input) lies in ``prompt``, as a character span — the part truncation may cut; the
    instruction, options and answer cue around it are kept (models/prompts.py). None: no known passage."""

    prompt: str
    target: str
    task: str
    options: tuple[str, ...] | None = None
    answers: tuple[str, ...] = ()
    passage: tuple[int, int] | None = None

    def __post_init__(self) -> None:
        if not self.answers:
            object.__setattr__(self, "answers", (self.target,))


@dataclass
class Task:
    name: str
    train: list[Example]
    test: list[Example]
    metric: Metric = "exact_match"
    options: tuple[str, ...] | None = None

    def __repr__(self) -> str:  # keep logs short
        return f"Task({self.name!r}, train={len(self.train)}, test={len(self.test)}, metric={self.metric})"
