import json

import pytest
import torch

from continual_lm.analysis.analyze import analyze
from continual_lm.analysis.angles import layer_and_type, pearson, principal_angles
from continual_lm.models.weights import top_subspace
from continual_lm.analysis.landscape import project
from continual_lm.evaluation.metrics import decompose_forgetting
from continual_lm.analysis.run_loader import load_run
from continual_lm.cli import main
from continual_lm.errors import ConfigError
from conftest import tiny_config
from continual_lm.config import parse_config
from continual_lm.evaluation.evaluate import evaluate_task
from continual_lm.experiments.runner import run_experiment
from continual_lm.models.weights import effective_matrices
from test_biography import TINY_BIO


def test_principal_angles_identical_orthogonal_and_45_degrees():
    a = torch.zeros(6, 4)
    a[0, 0], a[1, 1] = 3.0, 2.0                      # column space span(e0, e1)
    assert torch.allclose(principal_angles(a, 5 * a), torch.zeros(2), atol=1e-3)
    b = torch.zeros(6, 4)
    b[2, 0], b[3, 1] = 1.0, 1.0                      # span(e2, e3): orthogonal
    assert torch.allclose(principal_angles(a, b), torch.full((2,), 90.0))
    c = torch.zeros(6, 4)
    c[0, 0] = c[2, 0] = 1.0                          # one direction at 45° to e0
    assert torch.allclose(principal_angles(a[:, :1] * 0 + a[:, :1], c[:, :1]), torch.tensor([45.0]), atol=1e-3)


def test_top_subspace_keeps_the_energy_fraction():
    m = torch.diag(torch.tensor([10.0, 2.0, 0.01]))
    assert top_subspace(m, 0.99).shape[1] == 2     # 100/104.0001 < 0.99 <= 104/104.0001
    assert top_subspace(m, 0.9).shape[1] == 1
    assert top_subspace(torch.zeros(3, 3)).shape[1] == 0


def test_layer_and_type_and_pearson():
    assert layer_and_type("transformer.h.3.attn.c_attn") == (3, "c_attn")
    assert layer_and_type("model.layers.12.self_attn.q_proj") == (12, "q_proj")
    assert layer_and_type("lm_head") == (None, "lm_head")
    assert pearson([1, 2, 3], [2, 4, 6]) == pytest.approx(1.0)
    assert pearson([1, 2, 3], [3, 2, 1]) == pytest.approx(-1.0)
    assert pearson([1, 1], [1, 2]) is None


def test_forgetting_decomposition_hand_computed():
    matrix = [[80.0, 5.0, 1.0], [50.0, 90.0, 2.0], [30.0, 60.0, 70.0]]
    rows = decompose_forgetting(matrix, {0: 70.0, 1: 60.0})
    assert rows[0] == {"task_index": 0, "after_own_training": 80.0, "final": 30.0, "recovered": 70.0, "drop": 50.0,
                       "recoverable": 40.0, "spurious_share": 0.8}
    assert rows[1]["drop"] == 30.0 and rows[1]["recoverable"] == 0.0 and rows[1]["spurious_share"] == 0.0
    assert decompose_forgetting([[50.0, 0.0], [60.0, 9.0]], {0: 61.0})[0]["spurious_share"] is None  # no drop


def test_projection_recovers_plane_coordinates():
    theta0 = {"w": torch.tensor([1.0, 1.0, 1.0])}
    d1, d2 = {"w": torch.tensor([1.0, 0.0, 1.0])}, {"w": torch.tensor([0.0, 2.0, 0.0])}
    theta = {"w": theta0["w"] + 0.3 * d1["w"] - 1.5 * d2["w"]}
    assert project(theta, theta0, d1, d2) == pytest.approx((0.3, -1.5))


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("analysis")
    import os
    os.environ["CONTINUAL_LM_CACHE"] = str(tmp / "cache")
    raw = {**TINY_BIO, "checkpoint_steps": [0, 2, 4], "forgetting_decomposition": {"steps": 3, "n_examples": 8}}
    _, folder = run_experiment(parse_config(raw), tmp / "run")
    return folder


def test_run_with_checkpoints_and_forgetting_decomposition(tiny_run):
    names = sorted(p.relative_to(tiny_run / "checkpoints").as_posix() for p in (tiny_run / "checkpoints").rglob("*.safetensors"))
    assert names == [f"{s}/{f}" for s in ("task0", "task1") for f in ("end.safetensors", "step0.safetensors",
                                                                       "step2.safetensors", "step4.safetensors")]
    metrics = json.loads((tiny_run / "metrics.json").read_text())
    row = metrics["forgetting"][0]
    assert row["drop"] == pytest.approx(metrics["acc_matrix"][0][0] - metrics["acc_matrix"][1][0])
    assert row["recoverable"] == pytest.approx(row["recovered"] - metrics["acc_matrix"][1][0])
    assert "Forgetting decomposition" in (tiny_run / "report.md").read_text()


def test_analyze_writes_json_and_plots(tiny_run, capsys):
    results = analyze(tiny_run, ["recovery", "angles", "landscape", "fisher"], split=2, grid=3, n_examples=8)
    for name in ("recovery", "angles", "landscape", "fisher_vs_angle"):
        assert (tiny_run / "analysis" / f"{name}.png").stat().st_size > 0
    assert [p["step"] for p in results["recovery"]["points"]] == [0, 2, 4, "end"]
    traj = {p["step"]: (p["x"], p["y"]) for p in results["landscape"]["trajectory"]}
    # The origin is step 0, the split checkpoint (step 2) is (1, 0) and the end is (1, 1), by construction.
    assert traj[0] == pytest.approx((0, 0), abs=1e-6) and traj[2] == pytest.approx((1, 0), abs=1e-6)
    assert traj["end"] == pytest.approx((1, 1), abs=1e-6)
    assert len(results["landscape"]["surface"]["loss"]["task0"]) == 3
    pair = results["angles"]["pairs"]["task1[0:2] vs task1[2:end]"]
    assert pair and all(0 <= r["mean_angle"] <= 90 for r in pair)
    assert results["fisher"]["matrices"] and all(r["fisher"] >= 0 for r in results["fisher"]["matrices"])
    assert main(["analyze", str(tiny_run), "--what", "angles", "--split", "4"]) == 0
    assert json.loads((tiny_run / "analysis" / "angles.json").read_text())["split_step"] == 4


def test_per_task_adapters_are_restored_from_checkpoints(tmp_path, monkeypatch):
    """An IncLoRA run's checkpoints hold one adapter per task trained so far; loading one makes exactly those
    adapters active, so the loaded model scores what the run recorded and the analyses see every task's update."""
    monkeypatch.setenv("CONTINUAL_LM_CACHE", str(tmp_path / "cache"))
    raw = {**TINY_BIO, "model": {**TINY_BIO["model"], "finetune": "lora", "lora": {"r": 4, "alpha": 8}},
           "method": {"name": "inc_lora"}, "checkpoint_steps": [0, 3], "curve_steps": []}
    _, folder = run_experiment(parse_config(raw), tmp_path / "run")
    run = load_run(folder)
    assert run.backbone.model.active_adapters == ["default"]  # as built, before any checkpoint

    run.load("task1", "end")
    assert sorted(run.backbone.model.active_adapters) == ["default", "task1"]
    scores = [evaluate_task(run.backbone, t, 64).score for t in run.tasks]
    assert scores == pytest.approx(run.record.acc_matrix[1])
    end = effective_matrices(run.backbone)

    run.load("task0", "end")
    assert run.backbone.model.active_adapters == ["default"]
    assert evaluate_task(run.backbone, run.tasks[0], 64).score == pytest.approx(run.record.acc_matrix[0][0])
    task0_end = effective_matrices(run.backbone)
    # task1's adapter starts with B = 0 and task0's is frozen: task1 step 0 is task0's end exactly.
    run.load("task1", 0)
    start = effective_matrices(run.backbone)
    assert all(torch.equal(start[n], task0_end[n]) for n in start)
    assert any(not torch.equal(start[n], end[n]) for n in start)
    assert analyze(folder, ["angles"], split=3)["angles"]["pairs"]


def test_analyze_checks_every_checkpoint_before_it_starts(tiny_run, tmp_path):
    import shutil
    copy = tmp_path / "run"
    shutil.copytree(tiny_run, copy)
    (copy / "checkpoints" / "task0" / "step0.safetensors").unlink()
    with pytest.raises(ConfigError, match=r"the analyses need checkpoints it lacks \(task0 step 0\)"):
        analyze(copy, ["angles"])
    analyze(copy, ["recovery"], grid=3)  # recovery reads only the second stage: it runs


def test_step_zero_is_saved_whenever_checkpoints_are(cl_root, tmp_path):
    raw = tiny_config(cl_root, max_steps=3)
    raw["checkpoint_steps"] = [2]
    _, folder = run_experiment(parse_config(raw), tmp_path / "run")
    assert (folder / "checkpoints" / "agnews" / "step0.safetensors").exists()
