import math

import pytest
import torch

from continual_lm.analysis.routing import separability
from continual_lm.methods.sapt import max_pool


def test_separability_of_orthogonal_groups_and_of_identical_ones():
    a = torch.tensor([[1.0, 0.0], [2.0, 0.0], [3.0, 0.0], [4.0, 0.0]])
    b = torch.tensor([[0.0, 1.0], [0.0, 5.0], [0.0, 2.0], [0.0, 3.0]])
    assert separability([a, b]) == {"cosine_within": 1.0, "cosine_across": 0.0, "nearest_centroid_accuracy": 1.0}
    # two groups of the same direction: cosine 1 everywhere; every held-out vector is nearest the first centroid
    # (argmax takes the first of equal scores), so half are right
    assert separability([a, a.clone()]) == {"cosine_within": 1.0, "cosine_across": 1.0, "nearest_centroid_accuracy": 0.5}


def test_separability_hand_computed_cosines():
    # group 0: (1, 0) and (1, 1); group 1: (0, 1) and (-1, 0). Within: cos((1,0),(1,1)) = 1/√2, cos((0,1),(-1,0)) = 0
    # → mean 1/(2√2) over the 4 ordered pairs. Across (8 ordered pairs): (1,0)·(0,1) 0, (1,0)·(-1,0) -1,
    # (1,1)·(0,1) 1/√2, (1,1)·(-1,0) -1/√2 → mean -1/4.
    g0 = torch.tensor([[1.0, 0.0], [1.0, 1.0]])
    g1 = torch.tensor([[0.0, 1.0], [-1.0, 0.0]])
    out = separability([g0, g1])
    assert out["cosine_within"] == pytest.approx(round(1 / (2 * math.sqrt(2)), 4))
    assert out["cosine_across"] == pytest.approx(-0.25)
    # centroids (1, 0) and (0, 1); held out (1, 1) ties → the first (right), (-1, 0) → cos 0 with (0,1), -1 with
    # (1,0) → group 1 (right)
    assert out["nearest_centroid_accuracy"] == 1.0


def test_max_pool_skips_padding():
    embeds = torch.tensor([[[1.0, -2.0], [3.0, -5.0], [9.0, 9.0]]])
    assert max_pool(embeds, torch.tensor([[1, 1, 0]])).tolist() == [[3.0, -2.0]]
    assert max_pool(embeds, None).tolist() == [[9.0, 9.0]]


def test_routing_probe_on_a_tiny_causal_model(cl_root):
    from conftest import tiny_config

    from continual_lm.analysis.routing import routing_probe
    from continual_lm.config import parse_config
    from continual_lm.experiments.setup import build_tasks, prepare_backbone
    from continual_lm.training.loop import make_accelerator
    cfg = parse_config(tiny_config(cl_root))
    tasks, world = build_tasks(cfg)
    backbone = prepare_backbone(cfg, tasks, world, make_accelerator())
    state = torch.get_rng_state()
    out = routing_probe(backbone, tasks, n=6)
    assert torch.equal(torch.get_rng_state(), state)  # the router is drawn from its own seed, the caller's untouched
    assert out["tasks"] == ["agnews", "amazon"] and out["inputs_per_task"] == [6, 6]
    for attention in out["untrained_attention"].values():
        assert len(attention) == 2 and sum(attention) == pytest.approx(1.0, abs=1e-3)
    assert out == routing_probe(backbone, tasks, n=6)  # seeded: the same router twice
