"""The fixes compared by Zheng et al. (ICLR 2025): each one's defining computation, and end-to-end runs."""
import json

import pytest
import torch
from conftest import tiny_config

from continual_lm.config import parse_config
from continual_lm.data.task import Example
from continual_lm.errors import ConfigError
from continual_lm.experiments.runner import run_experiment
from continual_lm.experiments.setup import build_tasks, prepare_backbone
from continual_lm.methods import create_method
from continual_lm.methods.grad_projection import project_out
from continual_lm.methods.pseudo import parse_sample, sample_quality
from continual_lm.training.loop import make_accelerator, run_sequence


def _run(cl_root, method, finetune="full", **training):
    cfg = parse_config(tiny_config(cl_root, "gpt", "causal", finetune, **training))
    tasks, world = build_tasks(cfg)
    acc = make_accelerator()
    backbone = prepare_backbone(cfg, tasks, world, acc)
    records = []
    result = run_sequence(cfg, tasks, backbone, method, records.append, acc)
    return result, backbone, records


def test_task_vector_subtracts_alpha_times_the_early_update(cl_root):
    seen = {}

    class Spy(type(create_method("task_vector"))):
        def after_stage(self, ctx):
            if ctx.stage_index == 1:
                seen["end"] = {n: p.detach().clone() for n, p in self.tracked.items()}
                seen["start"], seen["early"] = self.start, self.early
            super().after_stage(ctx)
            if ctx.stage_index == 1:
                seen["after"] = {n: p.detach().clone() for n, p in self.tracked.items()}

    _run(cl_root, Spy(alpha=0.5, end_step=2), max_steps=5)
    for n in seen["end"]:
        expected = seen["end"][n] - 0.5 * (seen["early"][n] - seen["start"][n])
        assert torch.allclose(seen["after"][n], expected)
    assert any(not torch.equal(seen["early"][n], seen["start"][n]) for n in seen["start"])


def test_project_out_removes_the_subspace():
    basis = torch.tensor([[1.0], [0.0], [0.0]])                 # output direction e0
    g = torch.tensor([[3.0, 1.0], [2.0, 5.0], [0.0, 7.0]])       # Linear: (out=3, in=2)
    assert torch.equal(project_out(g, basis, 0), torch.tensor([[0.0, 0.0], [2.0, 5.0], [0.0, 7.0]]))
    assert torch.equal(project_out(g.T, basis, 1), torch.tensor([[0.0, 2.0, 0.0], [0.0, 5.0, 7.0]]))  # Conv1D (in, out)


def test_grad_projection_later_updates_avoid_the_early_subspace(cl_root):
    captured = {}

    class Spy(type(create_method("grad_projection"))):
        def after_backward(self, ctx):
            super().after_backward(ctx)
            if self.bases:
                name = next(iter(self.bases))
                p, out_dim = self.targets[name]
                captured[name] = (self.bases[name], p.grad.clone(), out_dim)

    _run(cl_root, Spy(end_step=2, scope="attention"), max_steps=4, max_grad_norm=None)
    assert captured
    for name, (basis, grad, out_dim) in captured.items():
        assert "attn" in name
        component = basis.T @ grad if out_dim == 0 else grad @ basis
        assert torch.allclose(component, torch.zeros_like(component), atol=1e-5)


def test_freeze_early_stop_stops_and_holds_out_validation(cl_root):
    method = create_method("freeze", {"early_stop": True, "eval_every": 1, "patience": 1, "val_fraction": 0.25})
    result, _, records = _run(cl_root, method, max_steps=30, lr=1e-6)  # a tiny lr: the score cannot improve
    stops = [r for r in records if r["event"] == "early_stop"]
    assert stops and stops[0]["stage"] == "amazon" and stops[0]["step"] < 30
    assert len(method.validation[1].test) == 6
    with pytest.raises(ConfigError, match="val_source"):
        create_method("freeze", {"val_source": "test"})


def test_freeze_validation_split_is_removed_from_training(cl_root):
    method = create_method("freeze", {"early_stop": True, "val_fraction": 0.25})
    cfg = parse_config(tiny_config(cl_root))
    tasks, _ = build_tasks(cfg)
    stages = method.stages(tasks)
    val = set(method.validation[1].test)
    assert len(stages[1].examples) == 24 - 6 and not val & set(stages[1].examples)
    assert len(stages[0].examples) == 24  # before from_task: untouched


def test_lamol_parsing_and_quality_categories():
    assert parse_sample("What is the birth city of X ? Answer : Boston") == ("What is the birth city of X ?\nAnswer:", "Boston")
    assert parse_sample("no separator here") is None and parse_sample("Q? Answer:") is None
    real = [Example("What is the birth city of X?\nAnswer:", "Boston", "t0"),
            Example("What is the birth city of Y?\nAnswer:", "Omaha", "t0")]
    samples = ["What is the birth city of X ? Answer : Boston",    # correct
               "What is the birth city of X? Answer: Boston",      # duplicate of the first
               "What is the birth city of Y? Answer: Boston",      # real question, wrong answer
               "What is the birth city of Z? Answer: Tampa",       # invented question
               "garbage"]                                          # broken format
    q = sample_quality(samples, real)
    assert (q["generated"], q["valid_format"], q["after_dedup"], q["question_matches_real"],
            q["question_and_answer_correct"]) == (5, 4, 3, 2, 1)
    assert q["valid_format_pct"] == 80.0


def test_lamol_end_to_end_reports_sample_quality(cl_root, tmp_path):
    cfg = parse_config(tiny_config(cl_root, "gpt", "causal", "full", method="lamol",
                                   params={"gamma": 0.25, "max_new_tokens": 12}, max_steps=3))
    result, folder = run_experiment(cfg, tmp_path / "run")
    quality = json.loads((folder / "metrics.json").read_text())["method_report"]["pseudo_sample_quality"]
    assert quality["amazon"]["generated"] == 6  # γ × 24 training examples of the new task
    with pytest.raises(ConfigError, match="needs a causal LM"):
        run_experiment(parse_config(tiny_config(cl_root, "t5", "seq2seq", method="lamol")), tmp_path / "t5")


@pytest.mark.parametrize("name", ["task_vector", "grad_projection"])
def test_runs_under_lora_too(cl_root, tmp_path, name):
    cfg = parse_config(tiny_config(cl_root, "gpt", "causal", "lora", method=name, params={"end_step": 1}, max_steps=3))
    result, _ = run_experiment(cfg, tmp_path / name)
    assert len(result.acc_matrix) == 2
