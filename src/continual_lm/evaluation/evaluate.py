"""Evaluate a backbone on a task's test split: batched prediction, then the task's metric on every example; and
the scores a task gives without any learning (chance, majority class)."""
from __future__ import annotations

from collections import Counter
from dataclasses import dataclass

from ..data.task import Example, Task
from ..models.backbone import Backbone
from .metrics import cell_interval
from .scores import example_scores


@dataclass
class Evaluation:
    score: float                 # the mean of example_scores (%)
    predictions: list[str]
    example_scores: list[float]  # in the test split's order
    examples: list[Example]

    @property
    def interval(self) -> dict:
        """n, mean, standard error and 95% interval of the score (evaluation/metrics.py)."""
        return cell_interval(self.example_scores)

    def records(self) -> list[dict]:
        """One line per example for predictions/<stage>/<task>.jsonl: its index in the test split, the prompt, the
        prediction, the acceptable answers and the score."""
        return [{"id": i, "prompt": ex.prompt, "prediction": p, "gold": list(ex.answers), "score": s}
                for i, (ex, p, s) in enumerate(zip(self.examples, self.predictions, self.example_scores))]


def test_examples(task: Task, max_examples: int | None = None) -> list[Example]:
    """The test examples an evaluation scores: the first ``max_examples`` (None: all)."""
    return task.test[:max_examples] if max_examples else task.test


def evaluate_task(backbone: Backbone, task: Task, batch_size: int = 64, max_examples: int | None = None) -> Evaluation:
    examples = test_examples(task, max_examples)
    # Batches of similar length pad less; the predictions are put back in the examples' order.
    order = sorted(range(len(examples)), key=lambda i: len(examples[i].prompt))
    predictions: list[str] = [""] * len(examples)
    with backbone.inference():
        for start in range(0, len(order), batch_size):
            chunk = order[start:start + batch_size]
            for i, answer in zip(chunk, backbone.predict([examples[i] for i in chunk])):
                predictions[i] = answer
    scores = example_scores(task.metric, predictions, [ex.answers for ex in examples], [ex.prompt for ex in examples])
    return Evaluation(sum(scores) / len(scores), predictions, scores, list(examples))


def reference_scores(task: Task, max_examples: int | None = None) -> dict[str, float | None]:
    """What a task scores without learning, by its own metric on its test examples:

    - ``chance``: the expected score of an option drawn uniformly at random (tasks with options; else None);
    - ``majority``: the score of always answering the most frequent answer of the training split (ties: the first
      seen; None without training examples)."""
    examples = test_examples(task, max_examples)
    if not examples:
        return {"chance": None, "majority": None}
    golds, sources = [ex.answers for ex in examples], [ex.prompt for ex in examples]

    def constant(answer: str) -> float:
        scores = example_scores(task.metric, [answer] * len(examples), golds, sources)
        return sum(scores) / len(scores)

    options = task.options or examples[0].options
    chance = sum(constant(o) for o in options) / len(options) if options else None
    train_answers = Counter(ex.answers[0] if ex.answers else ex.target for ex in task.train)
    majority = constant(train_answers.most_common(1)[0][0]) if train_answers else None
    return {"chance": chance, "majority": majority}
