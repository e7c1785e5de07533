import pytest
import torch
from conftest import tiny_config

from continual_lm.config import parse_config
from continual_lm.errors import ConfigError
from continual_lm.experiments.runner import build_tasks, prepare_backbone, run_experiment
from continual_lm.methods import create_method
from continual_lm.methods.importance import kth_largest, minmax_normalized, top_fraction_masks
from continual_lm.methods.recurrent_kif import ImportanceTracker, RecurrentKIF, fuse
from continual_lm.training.loop import make_accelerator, train_sequence

T = torch.tensor
ZERO = {"a": torch.zeros(5), "b": torch.zeros(5)}
TAU_IN = {"a": torch.ones(5), "b": torch.ones(5)}
TAU_OUT = {"a": torch.full((5,), 10.0), "b": torch.full((5,), 10.0)}
IMP_IN = {"a": T([1., 2, 3, 4, 5]), "b": T([6., 7, 8, 9, 10])}        # top 20% (2 of 10): b[3], b[4]
IMP_OUT = {"a": T([10., 9, 8, 7, 6]), "b": T([5., 4, 3, 2, 1])}       # top 20%: a[0], a[1]
IMP_OUT_OVERLAP = {"a": T([10., 1, 1, 1, 1]), "b": T([1., 1, 1, 1, 9.5])}  # top 20%: a[0], b[4] (b[4] shared)


def run_fuse(imp_out=IMP_OUT, tau_out=TAU_OUT, **kw):
    return fuse(ZERO, TAU_IN, tau_out, IMP_IN, imp_out if tau_out is not None else None, **kw)


def test_masks_select_exactly_the_top_fraction():
    values = torch.randperm(1000).float()
    maps = {"x": values[:300].reshape(10, 30), "y": values[300:]}
    masks = top_fraction_masks(maps, 0.2)
    chosen = torch.cat([maps["x"][masks["x"]], maps["y"][masks["y"]]])
    assert chosen.numel() == 200 and chosen.min() == 800
    per = top_fraction_masks(maps, 0.2, "per_tensor")
    assert int(per["x"].sum()) == 60 and int(per["y"].sum()) == 140
    assert maps["y"][per["y"]].min() == kth_largest(maps["y"], 140)


def test_paper_fusion_exact():
    out = run_fuse()
    assert torch.equal(out["a"], T([10., 10, 0, 0, 0])) and torch.equal(out["b"], T([0., 0, 0, 1, 1]))


def test_per_tensor_scope_fusion_exact():
    out = run_fuse(scope="per_tensor")  # 1 of 5 per tensor: in → a[4], b[4]; out → a[0], b[0]
    assert torch.equal(out["a"], T([10., 0, 0, 0, 1])) and torch.equal(out["b"], T([10., 0, 0, 0, 1]))


def test_no_ki_is_plain_sum():
    out = run_fuse(ablation="no_ki")
    assert torch.equal(out["a"], torch.full((5,), 11.0)) and torch.equal(out["b"], torch.full((5,), 11.0))


def test_global_weighting_uses_total_importance():
    out = run_fuse(ablation="global_weighting")  # both totals are 55: weights 0.5 / 0.5
    assert torch.allclose(out["a"], torch.full((5,), 5.5))
    imp_out = {"a": IMP_OUT["a"] * 3, "b": IMP_OUT["b"] * 3}  # totals 55 vs 165: weights 0.25 / 0.75
    out = run_fuse(imp_out=imp_out, ablation="global_weighting")
    assert torch.allclose(out["b"], torch.full((5,), 0.25 * 1 + 0.75 * 10))


def test_adaptive_soft_masks():
    out = run_fuse(ablation="adaptive")
    m_in = (torch.arange(1., 11) - 1) / 9
    m_out = (torch.arange(10., 0, -1) - 1) / 9
    expected = m_in * 1 + m_out * 10
    assert torch.allclose(torch.cat([out["a"], out["b"]]), expected)


def test_no_share_drops_coordinates_in_both_masks():
    paper = run_fuse(imp_out=IMP_OUT_OVERLAP)
    assert torch.equal(paper["a"], T([10., 0, 0, 0, 0])) and torch.equal(paper["b"], T([0., 0, 0, 1, 11]))
    out = run_fuse(imp_out=IMP_OUT_OVERLAP, ablation="no_share")
    assert torch.equal(out["a"], T([10., 0, 0, 0, 0])) and torch.equal(out["b"], T([0., 0, 0, 1, 0]))


def test_reference_code_weights():
    out = run_fuse(imp_out=IMP_OUT_OVERLAP, variant="reference_code")
    # a[0]: outer only → 10; b[3]: inner only → 1; b[4]: both → 0.4·1 + 0.6·10; the rest: 0.5·1 + 0.5·10
    assert torch.allclose(out["a"], T([10., 5.5, 5.5, 5.5, 5.5]))
    assert torch.allclose(out["b"], T([5.5, 5.5, 5.5, 1, 6.4]))


def test_first_task_has_no_outer_vector():
    out = run_fuse(tau_out=None)
    assert torch.equal(out["a"], torch.zeros(5)) and torch.equal(out["b"], T([0., 0, 0, 1, 1]))
    ref = run_fuse(tau_out=None, variant="reference_code")  # unmasked coordinates get 0.5·τ_in
    assert torch.allclose(ref["b"], T([0.5, 0.5, 0.5, 1, 1])) and torch.allclose(ref["a"], torch.full((5,), 0.5))


def _param_with_grad(value, grad):
    p = torch.nn.Parameter(T(value))
    p.grad = T(grad)
    return {"p": p}


def test_importance_ema_follows_the_formula():
    tracker = ImportanceTracker(alpha=0.55, kind="weight_grad", use_ema=True)
    tracker.update(_param_with_grad([1., -2], [3., 1]))       # Ī = |θ⊙g| = [3, 2]
    assert torch.allclose(tracker.score["p"], T([0.45 * 3, 0.45 * 2]))
    tracker.update(_param_with_grad([1., -2], [1., 1]))       # Ī = [1, 2]
    assert torch.allclose(tracker.score["p"], T([0.55 * 1.35 + 0.45 * 1, 0.55 * 0.9 + 0.45 * 2]))
    grad_only = ImportanceTracker(0.55, "grad", use_ema=False)
    grad_only.update(_param_with_grad([5., 5], [-3., 1]))
    grad_only.update(_param_with_grad([5., 5], [-1., 2]))
    assert torch.equal(grad_only.score["p"], T([1., 2]))     # no EMA: the latest |g| only


def test_platon_score_of_the_reference_code():
    tracker = ImportanceTracker(0.55, "weight_grad", True, platon_beta=0.85)
    tracker.update(_param_with_grad([1., -2], [3., 1]))       # Ī = [3, 2]
    ema = 0.15 * T([3., 2])
    unc = 0.15 * (T([3., 2]) - ema).abs()
    assert torch.allclose(tracker.score["p"], ema * unc)


def test_minmax_normalized_constant_map_is_ones():
    assert torch.equal(minmax_normalized({"x": torch.full((3,), 2.0)})["x"], torch.ones(3))


def _run_rkif(cl_root, method, tasks=("agnews", "amazon"), **training):
    raw = tiny_config(cl_root, "gpt", "causal", "lora", **training)
    raw["data"]["tasks"] = list(tasks)
    cfg = parse_config(raw)
    tasks, world = build_tasks(cfg)
    acc = make_accelerator()
    backbone = prepare_backbone(cfg, tasks, world, acc)
    result = train_sequence(cfg, tasks, backbone, method, accelerator=acc)
    return result, backbone


def test_outer_loop_skipped_on_first_task_and_run_every_q_steps(cl_root):
    calls = []

    class Spy(RecurrentKIF):
        def _outer_step(self, ctx):
            calls.append((ctx.task_index, ctx.step))
            super()._outer_step(ctx)

    method = Spy(q=4, m=1)
    _run_rkif(cl_root, method, max_steps=6)
    # 6 steps per task with Q = 4: cycles end at steps 4 and 6 (the partial cycle at the task's end)
    assert calls == [(1, 4), (1, 6)]
    assert method.fusions == 4


def test_full_masks_on_one_task_equal_plain_training(cl_root):
    """top_fraction = 1 keeps every coordinate of τ_in and the first task has no outer step: Recurrent-KIF
    must then reproduce sequential training exactly (the fusion wiring adds nothing of its own)."""
    _, b1 = _run_rkif(cl_root, RecurrentKIF(q=3, top_fraction=1.0), tasks=("agnews",), max_steps=5)
    _, b2 = _run_rkif(cl_root, create_method("seq"), tasks=("agnews",), max_steps=5)
    p1, p2 = b1.trainable_parameters(), b2.trainable_parameters()
    assert p1.keys() == p2.keys()
    assert all(torch.allclose(p1[n], p2[n], atol=1e-6) for n in p1)
    _, b3 = _run_rkif(cl_root, RecurrentKIF(q=3, top_fraction=0.2), tasks=("agnews",), max_steps=5)
    p3 = b3.trainable_parameters()
    assert any(not torch.allclose(p3[n], p2[n], atol=1e-6) for n in p3)  # 20% masks do change the result


def test_bad_params_are_config_errors():
    with pytest.raises(ConfigError, match="ablation"):
        RecurrentKIF(ablation="-XYZ")
    with pytest.raises(ConfigError, match="reference_code"):
        RecurrentKIF(variant="reference_code", ablation="-KI")
    with pytest.raises(ConfigError, match="threshold_scope"):
        RecurrentKIF(threshold_scope="layer")


@pytest.mark.parametrize("params", [{}, {"ablation": "-DIE"}, {"ablation": "+Adaptive"}, {"variant": "reference_code"},
                                    {"importance": "grad", "ema": False}])
def test_end_to_end_variants(cl_root, tmp_path, params):
    cfg = parse_config(tiny_config(cl_root, method="recurrent_kif", params={"q": 2, **params}, max_steps=4))
    result, _ = run_experiment(cfg, tmp_path / "run")
    assert len(result.acc_matrix) == 2
