"""Each baseline's defining computation on a toy model, plus an end-to-end run on the smoke setting."""
import random
import re

import pytest
import torch
from conftest import tiny_config
from torch import nn

from continual_lm.config import parse_config
from continual_lm.data.task import Example, Task
from continual_lm.errors import ConfigError
from continual_lm.experiments.runner import run_experiment
from continual_lm.experiments.setup import build_tasks, prepare_backbone
from continual_lm.methods import create_method
from continual_lm.methods.base import PROMPT_LR
from continual_lm.methods.ewc import ewc_penalty
from continual_lm.methods.migu import code_unit_masks, unit_masks
from continual_lm.methods.o_lora import orthogonality_loss
from continual_lm.methods.tasl import consolidate, pool_units
from continual_lm.models.adapters import adapter_names
from continual_lm.methods.context import TrainContext
from continual_lm.training.loop import make_accelerator, run_sequence

T = torch.tensor


class ToyBackbone:
    """y = w·x with squared error; an example's prompt holds x ("1 2"), its target y."""

    def __init__(self, w):
        self.model = nn.Linear(len(w), 1, bias=False)
        with torch.no_grad():
            self.model.weight.copy_(T([w]))

    def trainable_parameters(self):
        return {n: p for n, p in self.model.named_parameters() if p.requires_grad}

    def loss(self, examples):
        x = T([[float(v) for v in ex.prompt.split()] for ex in examples])
        y = T([float(ex.target) for ex in examples])
        return (self.model(x).squeeze(-1) - y).pow(2).mean()


def toy_ctx(backbone, task, batch_size=1):
    cfg = parse_config({"model": {"kind": "causal", "tiny": {}}, "data": {"benchmark": "biography"},
                        "training": {"batch_size": batch_size, "lr": 0.1}})
    ctx = TrainContext(cfg, backbone, make_accelerator(), [task], lambda r: None, random.Random(0))
    ctx.stage_index, ctx.stage_task_indices = 0, [0]
    return ctx


def test_ewc_fisher_hand_computed_and_penalty_gradient():
    # w = [1, 1]; examples x=(1,0),y=0 → grad 2(w·x−y)x = (2, 0); x=(0,2),y=1 → 2·(2−1)·(0,2) = (0, 4)
    task = Task("t", [Example("1 0", "0", "t"), Example("0 2", "1", "t")], [])
    backbone = ToyBackbone([1.0, 1.0])
    ewc = create_method("ewc", {"lambda_ewc": 3.0, "gamma": 0.5})
    ctx = toy_ctx(backbone, task)
    ewc.setup(ctx)
    ewc.after_stage(ctx)
    assert torch.allclose(ewc.fisher["weight"], T([[(4 + 0) / 2, (0 + 16) / 2]]))  # mean of squared grads
    assert torch.equal(ewc.anchor["weight"], T([[1.0, 1.0]]))
    ewc.after_stage(ctx)  # online: F ← γ·F + F_task
    assert torch.allclose(ewc.fisher["weight"], T([[0.5 * 2 + 2, 0.5 * 8 + 8]]))
    # The penalty's gradient is λ·F ⊙ (θ − θ*)
    with torch.no_grad():
        backbone.model.weight.copy_(T([[2.0, -1.0]]))
    backbone.model.zero_grad()
    ewc_penalty(backbone.trainable_parameters(), ewc.fisher, ewc.anchor, 3.0).backward()
    expected = 3.0 * ewc.fisher["weight"] * (T([[2.0, -1.0]]) - T([[1.0, 1.0]]))
    assert torch.allclose(backbone.model.weight.grad, expected)


def test_ewc_fisher_normalised_by_its_mean():
    """fisher_norm: mean divides each task's Fisher by its mean over all parameters, so that λ means the same on
    any backbone: the task Fisher of the hand-computed example (2, 8) becomes (0.4, 1.6)."""
    task = Task("t", [Example("1 0", "0", "t"), Example("0 2", "1", "t")], [])
    backbone = ToyBackbone([1.0, 1.0])
    ewc = create_method("ewc", {"fisher_norm": "mean"})
    ctx = toy_ctx(backbone, task)
    ewc.setup(ctx)
    ewc.after_stage(ctx)
    assert torch.allclose(ewc.fisher["weight"], T([[2 / 5, 8 / 5]]))


def test_o_lora_orthogonality_loss():
    a_old = {"layer": T([[1.0, 0.0, 0.0]])}                   # r=1, in=3
    assert orthogonality_loss([a_old], {"layer": T([[0.0, 2.0, 3.0]])}).item() == 0.0
    a_new = {"layer": T([[2.0, 1.0, 0.0], [1.0, 0.0, 1.0]])}  # r=2: A_old·A_newᵀ = [[2, 1]] → ‖·‖² = 5
    assert orthogonality_loss([a_old], a_new, "frobenius").item() == pytest.approx(5.0)
    a_old2 = {"layer": T([[0.0, 1.0, 1.0]])}                  # [[1, 1]] → 2
    assert orthogonality_loss([a_old, a_old2], a_new, "frobenius").item() == pytest.approx(7.0)


def test_o_lora_default_penalty_is_the_authors_l1():
    """cmnfriend/O-LoRA's trainer adds Σ|A_old·A_newᵀ| (not the square): with a negative entry the two differ."""
    a_old = {"layer": T([[1.0, 0.0, -1.0]])}
    a_new = {"layer": T([[2.0, 1.0, 0.0], [1.0, 0.0, 3.0]])}  # A_old·A_newᵀ = [[2, −2]] → L1 4, Frobenius² 8
    assert orthogonality_loss([a_old], a_new).item() == pytest.approx(4.0)
    assert orthogonality_loss([a_old], a_new, "frobenius").item() == pytest.approx(8.0)
    assert create_method("o_lora").params.penalty == "l1"
    assert create_method("o_lora", {"penalty": "frobenius"}).params.penalty == "frobenius"


def test_tasl_units_and_consolidation():
    imp = {"w": T([[1.0, 3.0], [5.0, 7.0]])}
    assert torch.equal(pool_units(imp, "row")["w"], T([[2.0, 2.0], [6.0, 6.0]]))
    prev, new = {"w": T([0.0, 0.0, 0.0, 0.0, 0.0])}, {"w": T([10.0, 10.0, 10.0, 10.0, 10.0])}
    past = {"w": T([9.0, 1.0, 1.0, 3.0, 0.0])}   # top 20% (1 of 5): unit 0
    cur = {"w": T([1.0, 8.0, 1.0, 1.0, 0.0])}    # top 20%: unit 1
    out = consolidate(prev, new, past, cur, 0.2)["w"]
    # unit 0: past only → prev (0); unit 1: new only → new (10); the rest: w = past/(past+cur) on prev
    assert torch.allclose(out, T([0.0, 10.0, 10 * 0.5, 10 * 0.25, 5.0]))


def test_migu_masks_and_gradient_zeroing(cl_root):
    """ours: masks from the first task on, units by the whole layer's output, top ratio by count."""
    masks = unit_masks({"l": T([1.0, 4.0, 2.0, 3.0])}, 0.5)
    assert masks["l"].tolist() == [False, True, False, True]
    cfg = parse_config(tiny_config(cl_root, "gpt", "causal", "full", method="migu", max_steps=1))
    tasks, world = build_tasks(cfg)
    acc = make_accelerator()
    backbone = prepare_backbone(cfg, tasks, world, acc)
    migu = create_method("migu", {"ratio": 0.25, "variant": "ours"})
    ctx = TrainContext(cfg, backbone, acc, tasks, lambda r: None, random.Random(0))
    ctx.stage_index = 0
    migu.setup(ctx)
    migu.before_stage(ctx)
    backbone.model.train()
    backbone.loss(tasks[0].train[:4]).backward()
    recorded = {n: m.clone() for n, m in migu.magnitudes.items()}
    migu.after_backward(ctx)
    layer = "transformer.h.0.mlp.c_fc"
    keep = unit_masks(recorded, 0.25)[layer]
    grad = backbone.model.get_submodule(layer).weight.grad  # Conv1D: (in, out), output units on dim 1
    assert keep.sum() == keep.numel() // 4
    assert torch.all(grad[:, ~keep] == 0) and torch.any(grad[:, keep] != 0)
    assert migu.magnitudes == {}


def test_migu_code_quantile_rule():
    # ratio 0.3 → keep units ≥ the 0.7 quantile: of 8 values 0..7 the quantile is 4.9, so 5, 6, 7 are kept (3 of 8)
    masks = code_unit_masks({"l": torch.arange(8.0)}, 0.3)
    assert masks["l"].tolist() == [False] * 5 + [True] * 3


def test_migu_paper_code_first_task_is_seq_then_lora_a_and_b_are_masked(cl_root):
    """The authors' code: stage 0 unmasked (bit-identical to seq); from stage 1, A's rank units and B's output units
    are masked by the magnitudes of A's and B's own outputs."""
    def run(method, spy=None):
        cfg = parse_config(tiny_config(cl_root, "gpt", "causal", "lora", max_steps=3))
        tasks, world = build_tasks(cfg)
        acc = make_accelerator()
        backbone = prepare_backbone(cfg, tasks, world, acc)
        ends = []

        class Wrapped(type(method)):
            def after_stage(self, ctx):
                super().after_stage(ctx)
                ends.append({n: p.detach().clone() for n, p in ctx.backbone.trainable_parameters().items()})
        wrapped = Wrapped(**method.params.model_dump())
        if spy:
            wrapped.after_backward = spy(wrapped)
        run_sequence(cfg, tasks, backbone, wrapped, accelerator=acc)
        return ends

    checked = []

    def spy(migu):
        original = migu.after_backward

        def after_backward(ctx):
            if migu.masking:
                masks = code_unit_masks({n: m.clone() for n, m in migu.magnitudes.items()}, migu.params.ratio)
                before = {n: [p.grad.clone() for _, p, _ in migu.layers[n]] for n in masks}
                original(ctx)
                for n, keep in masks.items():
                    (module, p, dim), = migu.layers[n]
                    assert ".lora_A." in n or ".lora_B." in n
                    assert keep.numel() == p.shape[0]  # rank units of A, output units of B
                    assert torch.equal(p.grad[~keep], torch.zeros_like(p.grad[~keep]))
                    assert torch.equal(p.grad[keep], before[n][0][keep])
                checked.append(ctx.stage_index)
            else:
                assert migu.magnitudes == {}
                original(ctx)
        return after_backward

    migu_ends = run(create_method("migu"), spy)
    seq_ends = run(create_method("seq"))
    assert all(torch.equal(migu_ends[0][n], seq_ends[0][n]) for n in seq_ends[0])   # stage 0: plain training
    assert not all(torch.equal(migu_ends[1][n], seq_ends[1][n]) for n in seq_ends[1])
    assert checked == [1, 1, 1]


def test_inc_lora_adds_a_frozen_stack_of_adapters(cl_root):
    cfg = parse_config(tiny_config(cl_root, "gpt", "causal", "lora", method="inc_lora", max_steps=3))
    tasks, world = build_tasks(cfg)
    acc = make_accelerator()
    backbone = prepare_backbone(cfg, tasks, world, acc)
    seen = {}

    class Spy(type(create_method("inc_lora"))):
        def after_stage(self, ctx):
            seen[ctx.stage_index] = {n: p.detach().clone() for n, p in ctx.backbone.model.named_parameters() if ".default." in n}

    run_sequence(cfg, tasks, backbone, Spy(), accelerator=acc)
    assert adapter_names(backbone) == ["default", "task1"]
    assert all(torch.equal(seen[0][n], seen[1][n]) for n in seen[0])  # task 0's adapter untouched by task 1
    trainable = [n for n, p in backbone.model.named_parameters() if p.requires_grad]
    assert trainable and all(".task1." in n for n in trainable)
    assert set(backbone.model.base_model.active_adapters) == {"default", "task1"}


def test_vr_mcl_variance_reduced_estimate(monkeypatch):
    """ĝ_t = g_t(θ_t) + (1 − r)(ĝ_{t−1} − g_t(θ_{t−1})), with the meta-gradients stubbed."""
    task = Task("t", [Example("1 0", "0", "t")], [])
    backbone = ToyBackbone([1.0, 1.0])
    vr = create_method("vr_mcl", {"momentum_r": 0.25})
    ctx = toy_ctx(backbone, task)
    vr.setup(ctx)
    vr.before_stage(ctx)
    vr.memory.add_task(task)
    answers = iter([T([[1.0, 2.0]]), T([[3.0, 5.0]]), T([[0.5, 0.5]])])  # g_1(θ_1), g_2(θ_2), g_2(θ_1)
    monkeypatch.setattr(vr, "_meta_gradient", lambda ctx, at, inner=None: {"weight": next(answers)})
    vr.loss(ctx, task.train).backward()
    vr.after_backward(ctx)
    assert torch.equal(backbone.model.weight.grad, T([[1.0, 2.0]]))  # first estimate: the plain meta-gradient
    vr.loss(ctx, task.train).backward()
    vr.after_backward(ctx)
    expected = T([[3.0, 5.0]]) + 0.75 * (T([[1.0, 2.0]]) - T([[0.5, 0.5]]))
    assert torch.allclose(backbone.model.weight.grad, expected)


def test_lora_only_methods_refuse_full_finetuning(cl_root, tmp_path):
    for name in ("inc_lora", "o_lora"):
        cfg = parse_config(tiny_config(cl_root, "gpt", "causal", "full", method=name))
        with pytest.raises(ConfigError, match=f"method '{name}' needs LoRA: set model.finetune: lora"):
            run_experiment(cfg, tmp_path / name)


@pytest.mark.parametrize("name", ["inc_lora", "ewc", "o_lora", "tasl", "migu", "vr_mcl"])
def test_baselines_run_end_to_end(cl_root, tmp_path, name):
    cfg = parse_config(tiny_config(cl_root, "gpt", "causal", "lora", method=name, max_steps=3))
    result, folder = run_experiment(cfg, tmp_path / name)
    assert len(result.acc_matrix) == 2 and (folder / "metrics.json").exists()


def test_method_parameters_are_checked_when_the_method_is_created():
    from continual_lm.methods import METHODS
    for name in METHODS:
        create_method(name)  # every method's defaults satisfy its own bounds and choices
    for name, params, message in [
        ("recurrent_kif", {"top_fraction": 2}, "method.params.top_fraction: 2: Input should be less than or equal to 1"),
        ("recurrent_kif", {"top_fraction": 0}, "method.params.top_fraction: 0: Input should be greater than 0"),
        ("recurrent_kif", {"q": 2.5}, "method.params.q: 2.5: Input should be a valid integer"),
        ("recurrent_kif", {"q": 0}, "method.params.q: 0: Input should be greater than or equal to 1"),
        ("recurrent_kif", {"outer_batch_size": 1.5}, "method.params.outer_batch_size: 1.5: Input should be a valid integer"),
        ("recurrent_kif", {"variant": "papr"}, "method.params.variant: 'papr': Input should be 'paper' or 'reference_code'"),
        ("recurrent_kif", {"qq": 1}, "method.params: unknown key(s) ['qq'] for method 'recurrent_kif'"),
        ("tasl", {"granularity": "rows"}, "method.params.granularity: 'rows': Input should be 'row' or 'element'"),
        ("ewc", {"lambda_ewc": "big"}, "method.params.lambda_ewc: 'big': Input should be a valid number"),
        ("ewc", {"lambda_ewc": True}, "method.params.lambda_ewc: True: True is not a number"),
        ("migu", {"ratio": 1.5}, "method.params.ratio: 1.5: Input should be less than or equal to 1"),
        ("replay", {"replay_batch_size": 0}, "method.params.replay_batch_size: 0: Input should be greater than or equal to 1"),
    ]:
        with pytest.raises(ConfigError, match=re.escape(message)):
            create_method(name, params)
    # The edges of closed intervals and None are allowed.
    assert create_method("recurrent_kif", {"top_fraction": 1, "alpha_in": 0.0, "outer_batch_size": None}).params.top_fraction == 1


# ---------------------------------------------------------------- TaSL variants (issue 13)

def test_tasl_paper_code_consolidation_per_tensor():
    """skill_consolidation.py: units are whole tensors; past-only → old, new-only → new, both → 0.3 new + 0.7 old,
    neither → 0.5 / 0.5. Importance = min-max normalised mean score per tensor; important = above the 80th
    percentile (linear interpolation, strict)."""
    from continual_lm.methods.tasl import consolidate_tensors, tensor_scores
    names = ["a", "b", "c", "d", "e"]
    prev = {n: torch.zeros(2) for n in names}
    new = {n: torch.full((2,), 10.0) for n in names}
    past = dict(zip(names, [1.0, 0.0, 0.95, 0.2, 0.1]))     # 80th pct of [1, 0, .95, .2, .1] = .96 → only a
    present = dict(zip(names, [1.0, 1.0, 0.0, 0.5, 0.2]))    # 80th pct = 1.0 → none strictly above...
    out = consolidate_tensors(prev, new, past, present, top_fraction=0.2)
    # present: percentile 80 of [1, 1, 0, .5, .2] is 1.0, nothing is strictly above it: no present-important tensor
    assert torch.allclose(out["a"], torch.zeros(2))          # past only → old
    for n in "bcde":
        assert torch.allclose(out[n], torch.full((2,), 5.0))  # neither → 0.5 / 0.5
    present = dict(zip(names, [1.0, 0.9, 0.0, 0.5, 0.2]))    # 80th pct = 0.92 → a
    out = consolidate_tensors(prev, new, past, present, top_fraction=0.2)
    assert torch.allclose(out["a"], torch.full((2,), 3.0))   # both → 0.3·10 + 0.7·0
    present = dict(zip(names, [0.0, 1.0, 0.0, 0.5, 0.2]))    # 80th pct = 0.6 → b
    out = consolidate_tensors(prev, new, past, present, top_fraction=0.2)
    assert torch.allclose(out["b"], torch.full((2,), 10.0))  # new only → new
    scores = tensor_scores({"x": T([[1.0, 3.0]]), "y": T([5.0, 7.0, 9.0])})
    assert scores == {"x": 0.0, "y": 1.0}                    # means 2 and 7, min-max normalised


def test_tasl_tas_lora_rank1_units_with_softmax_weights():
    """skill_consolidation_TasLoRA.py: unit i of a LoRA module = row i of A and column i of B; its score is the mean
    of outer(score(B[:, i]), score(A[i, :])); weights softmax((past, present) / τ) per unit."""
    from continual_lm.methods.tasl import consolidate_rank1, rank1_scores
    a, b = "m.lora_A.default.weight", "m.lora_B.default.weight"
    scores = rank1_scores({a: T([[1.0, 3.0], [0.0, 2.0]]), b: T([[2.0, 1.0], [4.0, 1.0]])})
    # unit 0: mean(B[:,0]) · mean(A[0,:]) = 3 · 2 = 6; unit 1: 1 · 1 = 1 → normalised 1, 0
    assert scores == {("m", 0): 1.0, ("m", 1): 0.0}
    prev = {a: torch.zeros(2, 2), b: torch.zeros(2, 2)}
    new = {a: torch.ones(2, 2), b: torch.ones(2, 2)}
    past, present = {("m", 0): 0.0, ("m", 1): 1.0}, {("m", 0): 1.0, ("m", 1): 1.0}
    out = consolidate_rank1(prev, new, past, present, tau=0.25)
    w0 = torch.exp(T(4.0)) / (torch.exp(T(0.0)) + torch.exp(T(4.0)))   # unit 0: present weight e^4 / (1 + e^4)
    assert torch.allclose(out[a][0], torch.full((2,), float(w0))) and torch.allclose(out[b][:, 0], torch.full((2,), float(w0)))
    assert torch.allclose(out[a][1], torch.full((2,), 0.5)) and torch.allclose(out[b][:, 1], torch.full((2,), 0.5))


def test_tasl_past_importance_accumulates_as_in_the_code():
    from continual_lm.methods.tasl import accumulate
    past = {"a": 0.0, "b": 1.0, "c": 0.5}
    present = {"a": 1.0, "b": 0.0, "c": 1.0}
    # minmax(0.3·present + 0.7·past) = minmax(0.3, 0.7, 0.65) = 0, 1, 0.875
    assert accumulate(past, present, gamma=0.7) == pytest.approx({"a": 0.0, "b": 1.0, "c": 0.875})


def test_tasl_tas_lora_needs_lora(cl_root, tmp_path):
    cfg = parse_config(tiny_config(cl_root, "gpt", "causal", "full", method="tasl", params={"variant": "tas_lora"}))
    with pytest.raises(ConfigError, match="tas_lora"):
        run_experiment(cfg, tmp_path / "run")


@pytest.mark.parametrize("variant", ["paper_code", "tas_lora", "ours"])
def test_tasl_variants_run_end_to_end(cl_root, tmp_path, variant):
    cfg = parse_config(tiny_config(cl_root, "gpt", "causal", "lora", method="tasl", params={"variant": variant},
                                   max_steps=3))
    result, _ = run_experiment(cfg, tmp_path / variant)
    assert len(result.acc_matrix) == 2


# ---------------------------------------------------------------- replay modes (issue 13)

def _replay_run(cl_root, params, **training):
    cfg = parse_config(tiny_config(cl_root, "gpt", "causal", "lora", **training))
    tasks, world = build_tasks(cfg)
    acc = make_accelerator()
    backbone = prepare_backbone(cfg, tasks, world, acc)
    seen = []
    real = backbone.loss
    backbone.loss = lambda examples: (seen.append((len(seen), list(examples))), real(examples))[1]
    records = []
    method = create_method("replay", params)
    run_sequence(cfg, tasks, backbone, method, records.append, accelerator=acc)
    return tasks, method, seen, records


def test_replay_memory_holds_only_earlier_tasks_class_balanced(cl_root):
    tasks, method, seen, records = _replay_run(cl_root, {"memory_fraction": 0.25, "mode": "concat"}, epochs=1,
                                               max_steps=None)
    memory = [ex for ex in method.memory.examples if ex.task == "agnews"]  # the run's end adds amazon's too
    assert len(memory) == 6 == round(0.25 * len(tasks[0].train))      # 24 agnews examples → 6
    assert sorted(ex.target for ex in memory) == ["Sports"] * 3 + ["World"] * 3   # class-balanced
    stage1 = [ex for _, batch in seen[-(30 // 4 + 1):] for ex in batch]  # ⌈(24 + 6) / 4⌉ = 8 steps
    assert {ex.task for ex in stage1} == {"agnews", "amazon"} and set(stage1) - set(tasks[1].train) == set(memory)
    logged = [r for r in records if r["event"] == "memory"]
    assert [r["tasks"] for r in logged] == [{}, {"agnews": 6}]      # the memory size is logged at every stage


def test_replay_concat_shows_each_memory_example_once_per_epoch(cl_root):
    tasks, method, seen, _ = _replay_run(cl_root, {"memory_fraction": 0.25, "mode": "concat"}, epochs=2,
                                         max_steps=None)
    batches = [batch for _, batch in seen]
    n0 = -(-len(tasks[0].train) * 2 // 4)                              # stage 0: 12 steps of 4
    later = [ex for batch in batches[n0:] for ex in batch]
    assert len(later) == 2 * (24 + 6)                                  # 2 epochs of the task + its memory
    memory = [ex for ex in method.memory.examples if ex.task == "agnews"]
    assert len(memory) == 6
    for ex in memory:
        assert later.count(ex) == 2                                     # once per epoch
    for ex in tasks[1].train:
        assert later.count(ex) == 2
    assert all(len(batch) <= 4 for batch in batches)                   # no extra examples in a batch


def test_replay_mix_adds_a_memory_batch_to_every_step(cl_root):
    tasks, method, seen, _ = _replay_run(cl_root, {"memory_fraction": 0.25, "mode": "mix", "replay_batch_size": 2},
                                         max_steps=3)
    batches = [batch for _, batch in seen]
    assert [len(b) for b in batches] == [4, 4, 4, 6, 6, 6]
    assert all({ex.task for ex in b[4:]} == {"agnews"} for b in batches[3:])


def test_o_lora_old_adapters_receive_no_gradient(cl_root):
    """In task 1 only the new adapter learns: the old adapter's parameters get no gradient at all (not only an
    orthogonality loss computed on detached copies), and stay bit-identical."""
    cfg = parse_config(tiny_config(cl_root, "gpt", "causal", "lora", method="o_lora", max_steps=3))
    tasks, world = build_tasks(cfg)
    acc = make_accelerator()
    backbone = prepare_backbone(cfg, tasks, world, acc)
    grads, ends = [], []

    class Spy(type(create_method("o_lora"))):
        def after_backward(self, ctx):
            if ctx.stage_index == 1:
                grads.append({n: p.grad for n, p in ctx.backbone.model.named_parameters() if ".default." in n})
                assert any(p.grad is not None for n, p in ctx.backbone.model.named_parameters() if ".task1." in n)

        def after_stage(self, ctx):
            ends.append({n: p.detach().clone() for n, p in ctx.backbone.model.named_parameters() if ".default." in n})

    run_sequence(cfg, tasks, backbone, Spy(), accelerator=acc)
    assert len(grads) == 3 and all(g is None for step in grads for g in step.values())
    assert all(torch.equal(ends[0][n], ends[1][n]) for n in ends[0])


def test_vr_mcl_meta_gradient_by_hand():
    """First-order meta-gradient on a 2-parameter linear model: θ' = θ − α∇L_cur(θ), g = ∇L_{cur∪mem}(θ')."""
    task = Task("t", [Example("1 0", "0", "t")], [])
    backbone = ToyBackbone([1.0, 1.0])
    vr = create_method("vr_mcl", {"inner_lr": 0.1})
    ctx = toy_ctx(backbone, task)
    vr.setup(ctx)
    vr.before_stage(ctx)
    vr.batch = [Example("1 0", "0", "t")]            # L_cur = (w1 − 0)²: ∇ = (2·w1, 0) = (2, 0) at w = (1, 1)
    vr.replayed = [Example("0 1", "3", "m")]         # L_mem = (w2 − 3)²
    g = vr._meta_gradient(ctx, {"weight": T([[1.0, 1.0]])})
    # θ' = (1 − 0.1·2, 1) = (0.8, 1); on cur ∪ mem (mean of 2): ∇ = ((2·0.8)/2, (2·(1 − 3))/2) = (0.8, −2)
    assert torch.allclose(g["weight"], T([[0.8, -2.0]]))


def test_every_method_takes_its_own_learning_rate():
    """Issue 28 (5): MIGU's authors run LoRA at 1e-4 where our configs use 1e-3; any method's paper rate must be
    expressible per method."""
    from continual_lm.methods import METHODS
    for name in METHODS:
        assert create_method(name).learning_rate(1e-3) == (1e-3 if name not in ("l2p", "lfpt5") else PROMPT_LR)
        assert create_method(name, {"lr": 1e-4}).learning_rate(1e-3) == 1e-4
    with pytest.raises(ConfigError, match=r"method.params.lr: -1: Input should be greater than 0"):
        create_method("migu", {"lr": -1})


def test_vr_mcl_step_does_the_authors_four_passes():
    """The cost of a VR-MCL step, pinned: the passes of the authors' ``observe`` (WuYichen-97/Meta-Continual-Learning-
    Revisited-ICLR2024, models/vrmcl.py: inner_loop, inner_loop_last_step, meta_loss_compute,
    meta_loss_compute_last_step) — batch, batch ∪ memory at θ_t, batch and batch ∪ memory at θ_{t−1}: 6 examples'
    forward-backward per batch example where replay does 2 (the issue's 1.3 × replay cannot hold; see vr_mcl.py)."""
    task = Task("t", [Example("1 0", "0", "t")], [])
    backbone = ToyBackbone([1.0, 1.0])
    vr = create_method("vr_mcl")
    ctx = toy_ctx(backbone, task)
    vr.setup(ctx)
    vr.before_stage(ctx)
    vr.memory.add_task(Task("m", [Example("0 1", "3", "m")], []))
    sizes: list[int] = []
    plain_loss = backbone.loss
    backbone.loss = lambda examples: (sizes.append(len(examples)), plain_loss(examples))[1]
    for _ in range(2):
        vr.loss(ctx, task.train).backward()
        vr.after_backward(ctx)
    assert sizes == [1, 2] + [1, 2, 1, 2]  # first step: no θ_{t−1} yet; then the four passes
