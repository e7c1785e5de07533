"""Every registered method on the smoke config (real data), and the real all-MiniLM-L6-v2 encoder."""
import pytest
import torch
from conftest import SHARED_DATA, needs_shared_data

from continual_lm.config import ModelSettings, load_config
from continual_lm.data.loaders import load_cl_benchmark_task
from continual_lm.experiments.runner import run_experiment
from continual_lm.methods import METHODS
from continual_lm.models.backbone import build_backbone
from pathlib import Path

SMOKE = Path(__file__).resolve().parents[1] / "configs" / "smoke.yaml"
needs_data = needs_shared_data()


@needs_data
@pytest.mark.parametrize("method", sorted(METHODS))
def test_every_method_runs_on_the_smoke_config(method, tmp_path):
    cfg = load_config(SMOKE, [f"data.data_dir={SHARED_DATA / 'cl_benchmark'}", f"method.name={method}"])
    result, folder = run_experiment(cfg, tmp_path / method)
    assert result.tasks == ["dbpedia", "amazon"] and (folder / "metrics.json").exists()
    assert len(result.acc_matrix) == (1 if method == "mtl" else 2)


def test_minilm_encoder_with_lora_scores_labels():
    settings = ModelSettings(kind="encoder", finetune="lora", max_length=64,
                             lora={"r": 8, "alpha": 16, "target_modules": ["query", "value"]})
    backbone = build_backbone(settings)
    trainable = backbone.trainable_parameters()
    # 6 layers × (query, value) × (A: 8×384 + B: 384×8)
    assert sum(p.numel() for p in trainable.values()) == 6 * 2 * (8 * 384 + 384 * 8)
    from continual_lm.data.task import Example
    options = ("World", "Sports")
    examples = [Example("The football team won the league title.", "Sports", "t", options),
                Example("Parliament passed a law on foreign trade.", "World", "t", options)]
    assert backbone.predict(examples) == ["Sports", "World"]  # the pretrained embeddings already know these
    loss = backbone.loss(examples)
    loss.backward()
    assert torch.isfinite(loss) and all(p.grad is not None for n, p in trainable.items() if "lora_B" in n)


@needs_data
def test_minilm_on_real_task_beats_chance_without_training():
    task = load_cl_benchmark_task(SHARED_DATA / "cl_benchmark" / "agnews", n_train=4, n_test=64)
    backbone = build_backbone(ModelSettings(kind="encoder", finetune="full", max_length=128))
    from continual_lm.evaluation.evaluate import evaluate_task
    assert evaluate_task(backbone, task).score > 25.0 + 10  # 4 labels: chance is 25%


def test_trace_runs_on_any_task_folder_in_its_layout(tmp_path):
    import json
    root = tmp_path / "mytrace"
    for name in ("FOMC", "MyNewTask"):
        (root / name).mkdir(parents=True)
        rec = [{"prompt": f"{name} question {i}\nAnswer:", "answer": "A" if i % 2 else "B"} for i in range(6)]
        for split in ("train", "test"):
            (root / name / f"{split}.json").write_text(json.dumps(rec))
    cfg = load_config(Path(__file__).resolve().parents[1] / "configs" / "trace.yaml",
                      [f"data.data_dir={root}", "data.tasks=[FOMC, MyNewTask]", "training.max_steps=2",
                       "model.max_length=64", "model.max_new_tokens=4"])
    record, _ = run_experiment(cfg, tmp_path / "run")
    assert record.task_metrics == {"FOMC": "choice_letter", "MyNewTask": "exact_match"}
    # FOMC's options are the letters A/B/C (issue 29, 12): a random one scores (50 + 50 + 0) / 3 here; MyNewTask has
    # no options to draw from
    assert record.chance == [pytest.approx(100 / 3), None] and record.majority[1] == 50.0
