"""model.label_space for label-scoring encoders: each example's own options, or every label of the run."""
import pytest
import torch
from conftest import tiny_config

from continual_lm.config import parse_config
from continual_lm.data.task import Example, Task
from continual_lm.evaluation.evaluate import evaluate_task
from continual_lm.experiments.runner import run_experiment
from continual_lm.experiments.setup import build_tasks, prepare_backbone
from continual_lm.training.loop import make_accelerator


def encoder(cl_root, label_space):
    raw = tiny_config(cl_root, "bert", "encoder", "lora")
    raw["model"]["label_space"] = label_space
    cfg = parse_config(raw)
    tasks, world = build_tasks(cfg)
    return prepare_backbone(cfg, tasks, world, make_accelerator()), tasks


def test_candidates_per_mode(cl_root):
    backbone, tasks = encoder(cl_root, "options")
    ex = tasks[0].test[0]
    assert backbone.candidates(ex) == ("World", "Sports")
    backbone, tasks = encoder(cl_root, "all")
    # every label of every task in the run, in a fixed (sorted) order, for every example
    assert backbone.candidates(tasks[0].test[0]) == ("Sports", "World", "negative", "positive")
    assert backbone.candidates(tasks[1].test[0]) == ("Sports", "World", "negative", "positive")


def test_a_label_of_another_task_is_a_wrong_answer_under_all(cl_root, monkeypatch):
    """Make the encoder prefer 'negative' (an amazon label) for every prompt: under 'all' an agnews example is
    answered 'negative' and scored 0; under 'options' the same model can only answer World or Sports."""
    for label_space, expected in (("all", 0.0), ("options", None)):
        backbone, tasks = encoder(cl_root, label_space)
        real = backbone.embed

        def embed(texts, prompted=False, real=real):
            out = real(texts)
            hot = torch.zeros_like(out)
            for i, t in enumerate(texts):
                hot[i, 0] = 1.0 if t in ("negative",) or "Answer" in t else 0.0
                hot[i, 1] = 0.0 if t in ("negative",) or "Answer" in t else 1.0
            return hot
        monkeypatch.setattr(backbone, "embed", embed)
        result = evaluate_task(backbone, tasks[0])
        if expected is not None:
            assert set(result.predictions) == {"negative"} and result.score == expected
        else:
            assert set(result.predictions) <= {"World", "Sports"}


def test_training_loss_is_over_the_whole_label_space(cl_root):
    """Cross-entropy over every label of the run: with equal similarities the loss is log(4), not log(2)."""
    for label_space, classes in (("options", 2), ("all", 4)):
        backbone, tasks = encoder(cl_root, label_space)
        backbone.embed = lambda texts, prompted=False: torch.nn.functional.normalize(torch.ones(len(texts), 3), dim=-1)
        loss = backbone.loss(tasks[0].train[:4])
        assert loss.item() == pytest.approx(torch.log(torch.tensor(float(classes))).item(), abs=1e-5)


def test_label_embeddings_are_computed_once_per_evaluation(cl_root):
    backbone, tasks = encoder(cl_root, "all")
    calls = []
    real = backbone.embed
    backbone.embed = lambda texts, prompted=False: (calls.append(len(texts)), real(texts))[1]
    evaluate_task(backbone, tasks[0], batch_size=2)  # 8 test examples: 4 batches
    assert calls.count(4) == 1                         # the 4 labels, embedded once
    assert sum(n for n in calls if n != 4) == 8


def test_label_space_all_runs_end_to_end(cl_root, tmp_path):
    raw = tiny_config(cl_root, "bert", "encoder", "lora", max_steps=3)
    raw["model"]["label_space"] = "all"
    result, _ = run_experiment(parse_config(raw), tmp_path / "run")
    assert len(result.acc_matrix) == 2
