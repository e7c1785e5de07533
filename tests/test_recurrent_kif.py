import pytest
import torch
from conftest import tiny_config

from continual_lm.config import parse_config
from continual_lm.errors import ConfigError
from continual_lm.experiments.runner import run_experiment
from continual_lm.experiments.setup import build_tasks, prepare_backbone
from continual_lm.methods import create_method
from continual_lm.methods.importance import ImportanceTracker, kth_largest, minmax_normalized, top_fraction_masks
from continual_lm.methods.recurrent_kif import RecurrentKIF, fuse, fusion_weights
from continual_lm.training.loop import make_accelerator, run_sequence

T = torch.tensor
ZERO = {"a": torch.zeros(5), "b": torch.zeros(5)}
TAU_IN = {"a": torch.ones(5), "b": torch.ones(5)}
TAU_OUT = {"a": torch.full((5,), 10.0), "b": torch.full((5,), 10.0)}
IMP_IN = {"a": T([1., 2, 3, 4, 5]), "b": T([6., 7, 8, 9, 10])}        # top 20% (2 of 10): b[3], b[4]
IMP_OUT = {"a": T([10., 9, 8, 7, 6]), "b": T([5., 4, 3, 2, 1])}       # top 20%: a[0], a[1]
IMP_OUT_OVERLAP = {"a": T([10., 1, 1, 1, 1]), "b": T([1., 1, 1, 1, 9.5])}  # top 20%: a[0], b[4] (b[4] shared)


def fused(theta_b, tau_in, tau_out, imp_in, imp_out, **kw):
    return fuse(theta_b, tau_in, tau_out, fusion_weights(imp_in, imp_out, **kw))


def run_fuse(imp_out=IMP_OUT, tau_out=TAU_OUT, **kw):
    return fused(ZERO, TAU_IN, tau_out, IMP_IN, imp_out, **kw)


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
    result = run_sequence(cfg, tasks, backbone, method, accelerator=acc)
    return result, backbone


def test_outer_loop_skipped_on_first_task_and_run_every_q_steps(cl_root):
    calls = []

    class Spy(RecurrentKIF):
        def _outer_step(self, ctx):
            calls.append((ctx.stage_index, ctx.step))
            super()._outer_step(ctx)

    method = Spy(q=4, m=1)
    _run_rkif(cl_root, method, max_steps=6)
    # 6 steps per task with Q = 4: cycles end at steps 4 and 6 (the partial cycle at the task's end)
    assert calls == [(1, 4), (1, 6)]
    assert method.report()["fusions"] == 2
    calls.clear()
    _run_rkif(cl_root, Spy(q=4, variant="reference_code", m=1), max_steps=6)
    assert calls == [(1, 4)]  # the authors' code fuses at multiples of Q only: the partial cycle stays unfused


def test_full_masks_leave_the_weights_where_the_outer_steps_put_them(cl_root):
    """top_fraction = 1 keeps every coordinate of τ_in and τ_out: θ_b + τ_in + τ_out is the weights after the
    outer steps, so the fusion must change nothing (its wiring adds nothing of its own)."""
    checks = []

    class Spy(RecurrentKIF):
        def fuse_cycle(self, ctx):
            original, after_outer = self._outer_step, {}

            def outer(ctx):
                original(ctx)
                after_outer.update(self._snapshot())
            self._outer_step = outer
            super().fuse_cycle(ctx)
            checks.append(all(torch.allclose(self.tracked[n], after_outer[n], atol=1e-6) for n in after_outer))

    _run_rkif(cl_root, Spy(q=3, top_fraction=1.0), max_steps=5)
    assert checks == [True, True]
    checks.clear()
    _run_rkif(cl_root, Spy(q=3, top_fraction=0.2), max_steps=5)
    assert checks == [False, False]  # 20% masks do move the weights


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


# ---------------------------------------------------------------- fidelity to the authors' code (issue 12)

def _run_logged(cl_root, method, tasks=("agnews", "amazon"), **training):
    raw = tiny_config(cl_root, "gpt", "causal", "lora", **training)
    raw["data"]["tasks"] = list(tasks)
    cfg = parse_config(raw)
    tasks, world = build_tasks(cfg)
    acc = make_accelerator()
    backbone = prepare_backbone(cfg, tasks, world, acc)
    records = []
    result = run_sequence(cfg, tasks, backbone, method, records.append, accelerator=acc)
    return result, backbone, records


@pytest.mark.parametrize("variant", ["paper", "reference_code"])
def test_first_task_is_plain_training_bit_identical_to_seq(cl_root, variant):
    """No memory on the first task: no importance, no masks, no fusion (the authors' `memory is None` branches)."""
    _, b_rkif, _ = _run_logged(cl_root, RecurrentKIF(q=2, variant=variant), tasks=("agnews",), max_steps=5)
    _, b_seq, _ = _run_logged(cl_root, create_method("seq"), tasks=("agnews",), max_steps=5)
    p1, p2 = b_rkif.trainable_parameters(), b_seq.trainable_parameters()
    assert p1.keys() == p2.keys() and all(torch.equal(p1[n], p2[n]) for n in p1)
    r_rkif, _, log = _run_logged(cl_root, RecurrentKIF(q=2, variant=variant), max_steps=5)
    r_seq, _, _ = _run_logged(cl_root, create_method("seq"), max_steps=5)
    assert r_rkif.acc_matrix[0] == r_seq.acc_matrix[0]
    fusions = [r for r in log if r["event"] == "fusion"]
    assert fusions and all(r["stage"] == "amazon" for r in fusions)


def test_outer_steps_use_only_old_memory_and_start_from_the_inner_end(cl_root, monkeypatch):
    """Outer batches come from earlier tasks' memory only; τ_out starts at θ_b(Q); I_in never sees memory batches."""
    import continual_lm.methods.recurrent_kif as rk
    events = []

    class Spy(RecurrentKIF):
        def setup(self, ctx):
            super().setup(ctx)
            loss = ctx.backbone.loss

            def spy_loss(examples):
                events.append(("loss", ctx.task.name, {ex.task for ex in examples}))
                return loss(examples)
            ctx.backbone.loss = spy_loss
            for name, tracker in (("inner", self.inner), ("outer", self.outer)):
                update = tracker.update
                tracker.update = lambda params, name=name, update=update: (events.append((name,)), update(params))

        def _outer_step(self, ctx):
            if self.cycle_outer == 0:
                starts.append(self._snapshot())
            super()._outer_step(ctx)

    starts, fused = [], []
    real_fuse = rk.fuse
    monkeypatch.setattr(rk, "fuse", lambda theta_b, tau_in, tau_out, weights: (
        fused.append((theta_b, tau_in, tau_out)), real_fuse(theta_b, tau_in, tau_out, weights))[1])
    method = Spy(q=3, m=2)
    _run_logged(cl_root, method, max_steps=6)
    last_loss = None
    for event in events:
        if event[0] == "loss":
            last_loss = event
        elif event[0] == "inner":  # the inner importance follows a loss on the current task only
            assert last_loss[2] == {last_loss[1]}
        else:  # the outer importance follows a loss on the memory: earlier tasks only
            assert last_loss[1] == "amazon" and last_loss[2] == {"agnews"}
    assert sum(e[0] == "outer" for e in events) == 2 * 2  # two cycles of M = 2 outer steps
    assert len(starts) == len(fused) == 2
    for start, (theta_b, tau_in, tau_out) in zip(starts, fused):
        assert all(torch.allclose(theta_b[n] + tau_in[n], start[n]) for n in start)  # θ_b(Q) = θ_b + τ_in
        assert any(tau_out[n].abs().sum() > 0 for n in tau_out)


def test_reference_code_resets_only_the_inner_importance(cl_root):
    states = []

    class Spy(RecurrentKIF):
        def fuse_cycle(self, ctx):
            super().fuse_cycle(ctx)
            states.append((bool(self.inner), bool(self.outer)))

    _run_logged(cl_root, Spy(q=3, variant="reference_code"), max_steps=6)
    assert states == [(False, True), (False, True)]  # --empty_inner_score_flag=1, outer flag 0
    states.clear()
    _run_logged(cl_root, Spy(q=3), max_steps=6)
    assert states == [(True, True), (True, True)]  # the paper's EMAs run on across cycles


def test_outer_iterations_default_per_variant():
    assert RecurrentKIF().params.m == 1                              # the paper's "a single training iteration"
    assert RecurrentKIF(variant="reference_code").params.m == 4      # outer_iterations=4 in run_train_KIF_t5lora.sh
    assert RecurrentKIF(variant="reference_code", m=2).params.m == 2


class _LinearBackbone:
    """loss(examples) = θ · Σ c over the examples (c = float(prompt)): ∂L/∂θ = Σ c, known by hand."""

    def __init__(self, theta: float):
        self.model = torch.nn.Module()
        self.model.theta = torch.nn.Parameter(T([theta]))

    def trainable_parameters(self):
        return {"theta": self.model.theta}

    def loss(self, examples):
        return self.model.theta.sum() * sum(float(ex.prompt) for ex in examples)


def test_no_die_importance_is_computed_per_memory_batch():
    """-DIE: the static outer importance is an EMA over memory batches, each batch's gradient on its own."""
    import random

    from continual_lm.data.task import Example, Task
    from continual_lm.methods.context import TrainContext
    backbone = _LinearBackbone(2.0)
    task = Task("t", [Example("1", "x", "t"), Example("3", "x", "t")], [])
    cfg = parse_config({"model": {"kind": "causal", "tiny": {}}, "data": {"benchmark": "biography"},
                        "training": {"batch_size": 1}})
    ctx = TrainContext(cfg, backbone, make_accelerator(), [task], lambda r: None, random.Random(0))
    ctx.stage_index, ctx.stage_task_indices = 0, [0]
    method = RecurrentKIF(ablation="-DIE", alpha_out=0.55, memory_fraction=1.0)
    method.setup(ctx)
    method.before_stage(ctx)
    method.after_stage(ctx)
    c = [float(ex.prompt) for ex in method.memory.examples]   # batches of one, in memory order
    first = 0.45 * abs(2.0 * c[0])                              # |θ·g| of batch 1, then batch 2 alone
    expected = 0.55 * first + 0.45 * abs(2.0 * c[1])
    assert method.outer.score["theta"].item() == pytest.approx(expected)
    assert backbone.model.theta.grad is None


W_IN = {"w": T([[1., 2, 3], [4, 5, 6]])}      # top 2 of 6 (a third): (1,1), (1,2)
W_OUT = {"w": T([[6., 1, 2], [3, 4, 5]])}     # top 2 of 6: (0,0), (1,2) — (1,2) is in both
TAU_IN_2x3 = {"w": torch.full((2, 3), 1.0)}
TAU_OUT_2x3 = {"w": torch.full((2, 3), 10.0)}
ZERO_2x3 = {"w": torch.zeros(2, 3)}


@pytest.mark.parametrize("kw,expected", [
    ({}, [[10., 0, 0], [0, 1, 11]]),
    ({"ablation": "no_share"}, [[10., 0, 0], [0, 1, 0]]),
    ({"ablation": "no_ki"}, [[11.] * 3, [11.] * 3]),
    ({"ablation": "global_weighting"}, [[1 * 21 / 42 + 10 * 21 / 42] * 3] * 2),   # totals 21 and 21
    ({"ablation": "adaptive"}, [[0 * 1 + 1 * 10, 0.2 * 1 + 0, 0.4 + 0.2 * 10],
                                [0.6 + 0.4 * 10, 0.8 + 0.6 * 10, 1 + 0.8 * 10]]),
    ({"variant": "reference_code"}, [[10., 5.5, 5.5], [5.5, 1, 0.4 * 1 + 0.6 * 10]]),
])
def test_fusion_weights_per_coordinate_2x3(kw, expected):
    out = fused(ZERO_2x3, TAU_IN_2x3, TAU_OUT_2x3, W_IN, W_OUT, top_fraction=1 / 3, **kw)
    assert torch.allclose(out["w"], T(expected))


def test_fusion_is_logged_and_reported(cl_root):
    method = RecurrentKIF(q=3)
    result, _, log = _run_logged(cl_root, method, max_steps=6)
    fusions = [r for r in log if r["event"] == "fusion"]
    assert [(r["stage"], r["step"]) for r in fusions] == [("amazon", 3), ("amazon", 6)]
    for r in fusions:
        assert 0 < r["kept_inner"] <= 1 and 0 < r["kept_outer"] <= 1
        assert r["mask_inner"] == pytest.approx(0.2, abs=0.02) and r["mask_outer"] == pytest.approx(0.2, abs=0.02)
        assert r["mask_inner_lora_A"] + r["mask_inner_lora_B"] == pytest.approx(1.0)
    report = result.method_report
    assert report["fusions"] == 2
    assert report["mean_kept_inner"] == pytest.approx(sum(r["kept_inner"] for r in fusions) / 2, abs=1e-4)


def test_fusion_diagnostics_by_hand():
    from continual_lm.methods.recurrent_kif import fusion_diagnostics
    names = {"x.lora_A.default.weight": T([3., 4.]), "x.lora_B.default.weight": T([0., 0.])}
    tau_in = {"x.lora_A.default.weight": T([3., 4.]), "x.lora_B.default.weight": T([0., 0.])}
    tau_out = {"x.lora_A.default.weight": T([1., 0.]), "x.lora_B.default.weight": T([0., 1.])}
    imp_in = {"x.lora_A.default.weight": T([1., 9.]), "x.lora_B.default.weight": T([2., 3.])}   # top 1 of 4: A[1]
    imp_out = {"x.lora_A.default.weight": T([5., 1.]), "x.lora_B.default.weight": T([2., 3.])}  # top 1: A[0]
    weights = fusion_weights(imp_in, imp_out, top_fraction=0.25)
    d = fusion_diagnostics(tau_in, tau_out, weights)
    assert d["kept_inner"] == pytest.approx(4 / 5)        # ‖(0, 4, 0, 0)‖ / ‖(3, 4, 0, 0)‖
    assert d["kept_outer"] == pytest.approx(1 / 2 ** 0.5)  # ‖(1, 0, 0, 0)‖ / ‖(1, 0, 0, 1)‖
    assert d["mask_inner"] == 0.25 and d["mask_outer"] == 0.25
    assert d["mask_inner_lora_A"] == 1.0 and d["mask_inner_lora_B"] == 0.0


def test_paper_preset_holds_the_papers_hyper_parameters(cl_root, tmp_path):
    from pathlib import Path

    from continual_lm.config import load_config
    preset = Path(__file__).resolve().parents[1] / "configs" / "recurrent_kif_paper.yaml"
    with pytest.raises(ConfigError, match="set model.path"):
        load_config(preset)  # no model is shipped: the user names one
    cfg = load_config(preset, ["model.path=/models/t5-large"])
    t, lora, method = cfg.training, cfg.model.lora, create_method(cfg.method.name, cfg.method.params)
    # WoodScene/Recurrent_KIF scripts/run_train_KIF_t5lora.sh and finetune_KIF_t5lora.py's defaults, exactly
    assert (t.lr, t.schedule, t.warmup_steps, t.epochs, t.batch_size * t.grad_accum, t.grad_accum) == \
        (3e-4, "linear", 50, 10, 8, 4)
    assert (lora.r, lora.alpha, lora.dropout, lora.target_modules) == (8, 32, 0.05, ["q", "v"])
    assert (cfg.model.kind, cfg.model.max_length, cfg.model.max_new_tokens) == ("seq2seq", 1024, 128)
    assert (cfg.data.benchmark, cfg.data.n_train, cfg.seed) == ("standard", 1000, 42)
    p = method.params
    assert (p.variant, p.q, p.m, p.outer_batch_size, p.platon_beta, p.top_fraction, p.memory_fraction) == \
        ("reference_code", 8, 4, 8, 0.85, 0.2, 0.02)
    # The same file runs end to end with a tiny T5 on the toy tasks.
    tiny = load_config(preset, ["model.path=null", "model.tiny={arch: t5, layers: 1, width: 32, heads: 2}",
                                "data.benchmark=custom", "data.order=null", f"data.data_dir={cl_root}",
                                "data.tasks=[agnews, amazon]",
                                "data.n_train=null", "training.epochs=0.34", "method.params.q=2",
                                "model.max_length=64", "model.max_new_tokens=4", "method.params.outer_batch_size=2"])
    result, _ = run_experiment(tiny, tmp_path / "run")
    assert len(result.acc_matrix) == 2 and result.method_report["fusions"] >= 1


def test_warmup_steps_override_the_ratio():
    from continual_lm.config import TrainSettings
    assert TrainSettings(warmup_ratio=0.1).warmup_for(200) == 20
    assert TrainSettings(warmup_ratio=0.1, warmup_steps=50).warmup_for(200) == 50
    assert TrainSettings(warmup_steps=50).warmup_for(30) == 30
