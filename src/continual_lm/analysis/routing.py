"""Can a router that reads pooled input embeddings tell the tasks apart? (SAPT's query; issue 30's discussion.)

SAPT routes each input to the tasks' LoRA blocks by attention between a query and one key per task; the query is the
input's token embeddings max-pooled over its positions, through a small MLP and LayerNorm (``methods/sapt.py``). This
probe trains nothing: on each task's first ``n`` training inputs it measures how far apart the tasks' pooled vectors
are (mean cosine within a task and across tasks, and nearest-centroid accuracy: centroids from the first half of each
task's inputs, scored on the second half), and the attention an untrained router gives each task's inputs.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

from ..data.task import Task
from ..methods.sapt import ALSM, attention_over_tasks, max_pool


def separability(groups: list[torch.Tensor]) -> dict:
    """For vectors grouped by task ([n_k, d] each, n_k ≥ 2): mean cosine within a group (pairs of distinct vectors)
    and across groups, and nearest-centroid accuracy (cosine to centroids of each group's first half, scored on the
    second halves)."""
    x = torch.cat(groups)
    y = torch.cat([torch.full((len(g),), k) for k, g in enumerate(groups)])
    unit = F.normalize(x, dim=-1)
    cos = unit @ unit.T
    same = y[:, None] == y[None, :]
    within = cos[same & ~torch.eye(len(y), dtype=torch.bool)].mean()
    across = cos[~same].mean() if len(groups) > 1 else torch.tensor(float("nan"))
    centroids = F.normalize(torch.stack([g[: len(g) // 2].mean(0) for g in groups]), dim=-1)
    held = [(F.normalize(g[len(g) // 2:], dim=-1) @ centroids.T).argmax(-1) == k for k, g in enumerate(groups)]
    return {"cosine_within": round(float(within), 4), "cosine_across": round(float(across), 4),
            "nearest_centroid_accuracy": round(float(torch.cat(held).float().mean()), 4)}


@torch.no_grad()
def routing_probe(backbone, tasks: list[Task], n: int, query_hidden: int = 100, seed: int = 0) -> dict:
    """The pooled inputs' separability and an untrained router's mean attention per task (one key per task, drawn
    as SAPT draws them)."""
    embeddings = backbone.input_embeddings()
    pooled = []
    for task in tasks:
        ids, mask = backbone.encode_prompts(task.train[:n])
        pooled.append(max_pool(embeddings(ids), mask).float().cpu())
    with torch.random.fork_rng(devices=[]):  # the query MLP drawn from ``seed``, the caller's generator untouched
        torch.manual_seed(seed)
        router = ALSM(embeddings, query_hidden, torch.Generator().manual_seed(seed))  # on the CPU, as ``pooled``
    for _ in tasks:
        router.add_task()
    keys = torch.stack(list(router.keys))
    attention = {task.name: [round(float(a), 4) for a in attention_over_tasks(router.query(x), keys).mean(0)]
                 for task, x in zip(tasks, pooled)}
    return {"tasks": [t.name for t in tasks], "inputs_per_task": [len(x) for x in pooled],
            **separability(pooled), "untrained_attention": attention}
