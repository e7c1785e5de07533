"""The replay memory shared by ``replay``, ``recurrent_kif`` and other rehearsal methods."""
from __future__ import annotations

import random
from collections import Counter, defaultdict
from collections.abc import Callable

from ..data.task import Example, Task


def memory_size(n_train: int, fraction: float) -> int:
    return max(1, round(fraction * n_train))


def class_balanced_sample(task: Task, n: int, seed: int) -> list[Example]:
    """``n`` training examples, spread evenly over the labels (round robin over shuffled classes).

    Tasks without label options (generation) are sampled uniformly."""
    rng = random.Random(f"{seed}:memory:{task.name}")
    groups: dict[str, list[Example]] = defaultdict(list)
    for ex in task.train:
        groups[ex.target if task.options else ""].append(ex)
    pools = [rng.sample(g, len(g)) for _, g in sorted(groups.items())]
    chosen: list[Example] = []
    while len(chosen) < min(n, len(task.train)):
        for pool in pools:
            if pool and len(chosen) < n:
                chosen.append(pool.pop())
    return chosen


class ReplayMemory:
    def __init__(self, fraction: float = 0.02, seed: int = 0):
        self.fraction, self.seed = fraction, seed
        self.examples: list[Example] = []
        self.tasks: list[str] = []

    def add_task(self, task: Task) -> None:
        if task.name in self.tasks:
            return
        self.examples.extend(class_balanced_sample(task, memory_size(len(task.train), self.fraction), self.seed))
        self.tasks.append(task.name)

    def sample(self, k: int, rng: random.Random) -> list[Example]:
        if not self.examples:
            return []
        return [self.examples[rng.randrange(len(self.examples))] for _ in range(k)]

    def state_dict(self) -> dict:
        return {"examples": list(self.examples), "tasks": list(self.tasks)}

    def load_state_dict(self, state: dict) -> None:
        self.examples, self.tasks = list(state["examples"]), list(state["tasks"])

    def log_sizes(self, log: Callable[[dict], None]) -> None:
        """One log record with the examples held per task (a 2% memory of a small task can be a single example)."""
        log({"event": "memory", "tasks": dict(Counter(ex.task for ex in self.examples))})

    def __len__(self) -> int:
        return len(self.examples)
