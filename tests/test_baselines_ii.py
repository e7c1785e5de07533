"""L2P, LFPT5, MoELoRA, SAPT and LwF: each method's defining computation, by hand where it can be, and end to end."""
import math
import random

import pytest
import torch
from conftest import tiny_config

import continual_lm.methods.lfpt5 as lfpt5_module
import continual_lm.methods.sapt as sapt_module
from continual_lm.config import parse_config
from continual_lm.data.task import Example, Task
from continual_lm.errors import ConfigError
from continual_lm.experiments.runner import run_experiment
from continual_lm.experiments.setup import build_tasks, prepare_backbone
from continual_lm.methods import create_method
from continual_lm.methods.distill import distillation_kl, teacher_logits
from continual_lm.methods.l2p import choose_prompts, key_loss
from continual_lm.methods.base import PROMPT_LR
from continual_lm.methods.moe_lora import Router
from continual_lm.methods.pseudo import GEN, generation_example, task_start
from continual_lm.methods.sapt import attention_over_tasks
from continual_lm.reporting.run_folder import RunRecord
from continual_lm.training.loop import make_accelerator, run_sequence

T = torch.tensor


def toy_run(cl_root, method, arch="gpt", kind="causal", finetune="lora", **training):
    cfg = parse_config(tiny_config(cl_root, arch, kind, finetune, **{"max_steps": 3, **training}))
    tasks, world = build_tasks(cfg)
    acc = make_accelerator()
    backbone = prepare_backbone(cfg, tasks, world, acc)
    records = []
    result = run_sequence(cfg, tasks, backbone, method, records.append, acc)
    return result, backbone, tasks, records


# ---------------------------------------------------------------- distillation (LwF, LFPT5)

def test_distillation_kl_by_hand_on_three_labels():
    old = T([[[0.0, 0.0, math.log(2.0)]]])          # softmax: 0.25, 0.25, 0.5
    new = torch.zeros(1, 1, 3)                      # uniform
    mask = torch.ones(1, 1, dtype=torch.bool)
    kl = 0.25 * math.log(0.75) * 2 + 0.5 * math.log(1.5)   # Σ p_old log(p_old / p_new) = ½ ln 1.125
    assert distillation_kl(new, old, mask, 1.0).item() == pytest.approx(kl)
    # T = 2 on logits twice as large: the same distributions, times T² = 4
    assert distillation_kl(new, 2 * old, mask, 2.0).item() == pytest.approx(4 * kl)
    # positions outside the mask do not count
    two = torch.cat([old, torch.full((1, 1, 3), 9.0)], dim=1)
    assert distillation_kl(torch.zeros(1, 2, 3), two, T([[True, False]]), 1.0).item() == pytest.approx(kl)
    # without the T² factor (LwF's paper weight); summed over positions (LFPT5's code)
    assert distillation_kl(new, 2 * old, mask, 2.0, t_squared=False).item() == pytest.approx(kl)
    both = torch.cat([old, old], dim=1)
    assert distillation_kl(torch.zeros(1, 2, 3), both, torch.ones(1, 2, dtype=torch.bool), 1.0,
                           reduction="sum").item() == pytest.approx(2 * kl)


def test_lwf_weighs_distillation_as_the_paper_does(monkeypatch):
    """Li & Hoiem weigh the distillation term by λ_o = 1 with no T² factor; at T = 2 ours used to weigh it 4."""
    import continual_lm.methods.lwf as lwf

    class Backbone:
        kind = "causal"

        def loss_and_logits(self, examples, labels=None):
            return torch.tensor(0.5), torch.zeros(1, 1, 3), torch.ones(1, 1, dtype=torch.bool)

    class Ctx:
        backbone = Backbone()
    monkeypatch.setattr(lwf, "teacher_logits", lambda *a, **k: 2 * T([[[0.0, 0.0, math.log(2.0)]]]))
    kl = 0.25 * math.log(0.75) * 2 + 0.5 * math.log(1.5)  # the same distributions as above at T = 2
    for params, weight in (({}, 1.0), ({"t_squared": True}, 4.0)):
        method = create_method("lwf", params)
        assert method.params.temperature == 2.0 and method.params.lambda_kd == 1.0
        method.teacher, method.tracked = {}, {}
        assert method.loss(Ctx(), []).item() == pytest.approx(0.5 + weight * kl)


# ---------------------------------------------------------------- LwF

def test_lwf_teacher_is_the_model_before_the_task(cl_root):
    checks = []

    class Spy(type(create_method("lwf"))):
        def after_stage(self, ctx):
            self.end = {n: p.detach().clone() for n, p in ctx.backbone.trainable_parameters().items()}

        def loss(self, ctx, examples):
            if ctx.stage_index == 1 and ctx.step == 0 and not checks:
                assert all(torch.equal(self.teacher[n], self.end[n]) for n in self.end)  # weights at task 0's end
                old = teacher_logits(ctx.backbone, self.tracked, self.teacher, examples)
                with ctx.backbone.inference():
                    now, _ = ctx.backbone.output_logits(examples)  # before its first step: the same model
                checks.append(torch.allclose(old, now, atol=1e-5))
            return super().loss(ctx, examples)

    toy_run(cl_root, Spy())
    assert checks == [True]


def test_lwf_on_an_encoder_distils_the_old_tasks_labels(cl_root):
    method = create_method("lwf")
    toy_run(cl_root, method, "bert", "encoder")
    assert method.old_labels == ["Sports", "World"]  # agnews' labels, while amazon trains


# ---------------------------------------------------------------- L2P

def test_l2p_chooses_the_closest_keys_and_its_key_loss_by_hand():
    query = T([[1.0, 0.0], [0.0, 2.0]])
    keys = T([[1.0, 0.0], [0.6, 0.8], [0.0, 1.0], [-1.0, 0.0]])
    indices, sims = choose_prompts(query, keys, 2)
    assert indices.tolist() == [[0, 1], [2, 1]]
    assert torch.allclose(sims, T([[1.0, 0.6], [1.0, 0.8]]))
    assert key_loss(sims).item() == pytest.approx(((0 + 0.4) + (0 + 0.2)) / 2)


@pytest.mark.parametrize("arch,kind", [("gpt", "causal"), ("t5", "seq2seq"), ("bert", "encoder")])
def test_l2p_trains_only_prompts_and_keys(cl_root, arch, kind):
    cfg = parse_config(tiny_config(cl_root, arch, kind, "lora", max_steps=3))
    tasks, world = build_tasks(cfg)
    backbone = prepare_backbone(cfg, tasks, world, make_accelerator())
    before = {n: p.detach().clone() for n, p in backbone.model.named_parameters()}
    method = create_method("l2p", {"pool_size": 4, "prompt_length": 2, "top_n": 2})
    run_sequence(cfg, tasks, backbone, method)
    after = dict(backbone.model.named_parameters())
    trainable = sorted(n for n, p in after.items() if p.requires_grad)
    assert trainable == ["cl_prompt.keys", "cl_prompt.prompts"]
    assert all(torch.equal(before[n], after[n]) for n in before)                       # the backbone is untouched
    assert not torch.equal(method.pool.prompts, method.pool.prompts.detach() * 0)      # and the prompts exist
    assert method.pool.matched.shape[1] == 2


def test_prompt_methods_train_at_their_own_learning_rate(cl_root, monkeypatch):
    # Prompt tuning needs a far larger learning rate than fine-tuning: L2P and LFPT5 carry their own (null: training.lr).
    seen = []
    adamw = torch.optim.AdamW
    monkeypatch.setattr(torch.optim, "AdamW", lambda params, lr, **kw: (seen.append(lr), adamw(params, lr=lr, **kw))[1])
    cfg = parse_config(tiny_config(cl_root, "gpt", "causal", "lora", max_steps=1, lr=0.002))
    tasks, world = build_tasks(cfg)
    for own, expected in [(0.05, 0.05), (None, 0.002)]:
        seen.clear()
        backbone = prepare_backbone(cfg, tasks, world, make_accelerator())
        run_sequence(cfg, tasks, backbone, create_method("l2p", {"pool_size": 2, "prompt_length": 1, "top_n": 1,
                                                                 "lr": own}))
        assert seen == [expected] * len(tasks)
    assert create_method("seq").learning_rate(0.002) == 0.002
    assert create_method("l2p").learning_rate(1e-4) == create_method("lfpt5").learning_rate(1e-4) == PROMPT_LR


# ---------------------------------------------------------------- MoELoRA

def test_router_weights_sum_to_one_and_top_k_keeps_k():
    router = Router(6, 4, None, per_sequence=False)
    torch.nn.init.normal_(router.linear.weight)
    x = torch.randn(2, 5, 6)
    gate = router(x)
    assert gate.shape == (2, 5, 4) and torch.allclose(gate.sum(-1), torch.ones(2, 5))
    router.top_k = 2
    gate = router(x)
    assert torch.allclose(gate.sum(-1), torch.ones(2, 5)) and ((gate > 0).sum(-1) == 2).all()
    router.per_sequence = True
    assert router(x).shape == (2, 1, 4)


def test_moe_lora_with_one_expert_is_plain_lora(cl_root):
    r1, b1, _, _ = toy_run(cl_root, create_method("moe_lora", {"experts": 1}))
    r2, b2, _, _ = toy_run(cl_root, create_method("seq"))
    assert r1.acc_matrix == r2.acc_matrix
    lora = {n: p for n, p in b2.model.named_parameters() if ".lora_" in n}
    moe = {n.replace(".layer.", "."): p for n, p in b1.model.named_parameters() if ".lora_" in n}
    assert lora.keys() == moe.keys() and all(torch.equal(lora[n], moe[n]) for n in lora)


def test_moe_lora_gradients_reach_only_the_selected_expert(cl_root):
    cfg = parse_config(tiny_config(cl_root, "gpt", "causal", "lora"))
    tasks, world = build_tasks(cfg)
    backbone = prepare_backbone(cfg, tasks, world, make_accelerator())
    method = create_method("moe_lora", {"experts": 3, "top_k": 1})
    from continual_lm.methods.context import TrainContext
    import random
    ctx = TrainContext(cfg, backbone, make_accelerator(), tasks, lambda r: None, random.Random(0))
    method.setup(ctx)
    for mixture in method.mixtures.values():
        torch.nn.init.constant_(mixture.cl_gate.linear.bias, 0.0)
        mixture.cl_gate.linear.bias.data[2] = 10.0                    # every token goes to expert 2
    backbone.loss(tasks[0].train[:4]).backward()
    grads = {n: p.grad for n, p in backbone.model.named_parameters() if ".lora_B." in n}
    chosen = [g for n, g in grads.items() if ".expert2." in n]
    others = [g for n, g in grads.items() if ".expert2." not in n]
    assert chosen and all(g is not None and g.abs().sum() > 0 for g in chosen)
    assert others and all(g is None or g.abs().sum() == 0 for g in others)


# ---------------------------------------------------------------- SAPT

def test_sapt_attention_over_task_blocks_by_hand():
    a = attention_over_tasks(T([[1.0, 0.0]]), T([[1.0, 0.0], [0.0, 1.0]]))
    e = math.exp(1 / math.sqrt(2))
    assert torch.allclose(a, T([[e / (e + 1), 1 / (e + 1)]]))


def fake_samples(examples_by_task):
    """A stand-in for the model's sampler: well-formed pseudo-examples of the task the start text names."""
    def sample(backbone, start, n, *args):
        task = start.split()[-1]
        return [f"{examples_by_task[task][i % 4].prompt} {examples_by_task[task][i % 4].target}" for i in range(n)]
    return sample


def test_sapt_freezes_old_blocks_and_keys_and_reflects_on_pseudo_examples(cl_root, monkeypatch):
    cfg = parse_config(tiny_config(cl_root, "gpt", "causal", "lora", max_steps=3))
    tasks, world = build_tasks(cfg)
    monkeypatch.setattr(sapt_module, "sample_texts", fake_samples({t.name: t.train for t in tasks}))
    backbone = prepare_backbone(cfg, tasks, world, make_accelerator())
    seen = {}

    class Spy(type(create_method("sapt"))):
        def after_stage(self, ctx):
            super().after_stage(ctx)
            seen[ctx.stage_index] = {n: p.detach().clone() for n, p in ctx.backbone.model.named_parameters()
                                     if ".default." in n or n.endswith("cl_sapt.keys.0")}
            seen[f"trainable{ctx.stage_index}"] = {n for n, p in ctx.backbone.model.named_parameters() if p.requires_grad}
            seen[f"record{ctx.stage_index}"] = {k: v.clone() for k, v in self.records.items()}

        def loss(self, ctx, examples):
            if ctx.stage_index == 1:
                seen.setdefault("reflection", len(self.reflection))
            return super().loss(ctx, examples)

    method = Spy(gamma=0.5)
    logged = []
    run_sequence(cfg, tasks, backbone, method, log=logged.append)
    assert all(torch.equal(seen[0][n], seen[1][n]) for n in seen[0])  # task 0's block and key untouched by task 1
    # the reflection's log says how many samples parsed, per old task, and shows one
    reflection = next(r for r in logged if r["event"] == "sapt_reflection")
    assert reflection["pseudo_examples"] == 12 and reflection["per_task"]["agnews"]["sampled"] == 12
    assert reflection["per_task"]["agnews"]["parsed"] == 12 and "Answer" in reflection["per_task"]["agnews"]["first_sample"]
    assert seen["trainable1"] and all(".task1." in n or "cl_sapt.query." in n or n.endswith("cl_sapt.keys.1")
                                      for n in seen["trainable1"])
    assert any(n.endswith("cl_sapt.keys.1") for n in seen["trainable1"])
    assert seen["reflection"] == 12                                  # 0.5 · 24 pseudo-examples of the 1 old task
    # agnews' record is taken once, at its end, over one key, and stays as it was
    assert seen["record0"]["agnews"].shape == (1,) and torch.equal(seen["record1"]["agnews"], seen["record0"]["agnews"])
    assert seen["record1"]["amazon"].shape == (2,) and float(seen["record1"]["amazon"].sum()) == pytest.approx(1.0)
    assert [len(m.adapters) for m in method.mixtures.values()][0] == 2
    assert len(method.alsm.keys) == 2 and method.alsm.current.shape[-1] == 2
    # the routing report: after each stage, every task seen so far → its inputs' mean attention over the blocks; the
    # finished task's row is its record, an old task's row is re-measured (where the router now sends it)
    routing = method.report()["routing"]
    assert list(routing) == ["agnews", "amazon"] and list(routing["amazon"]) == ["agnews", "amazon"]
    assert routing["agnews"]["agnews"] == [1.0]
    assert routing["amazon"]["amazon"] == [round(float(a), 4) for a in seen["record1"]["amazon"]]
    assert len(routing["amazon"]["agnews"]) == 2 and sum(routing["amazon"]["agnews"]) == pytest.approx(1.0, abs=1e-3)


def test_sapt_query_max_pools_unpadded_embeddings_and_reflection_is_kl_to_the_padded_record():
    from continual_lm.methods.sapt import ALSM, reflection_loss
    embeddings = torch.nn.Embedding(4, 2)
    with torch.no_grad():
        embeddings.weight.copy_(T([[0.0, 0.0], [1.0, -1.0], [-2.0, 3.0], [9.0, 9.0]]))  # token 3 is padding below
    alsm = ALSM(embeddings, 3, torch.Generator().manual_seed(0))
    alsm.add_task()
    alsm.add_task()
    assert all(bool((k.abs() <= 1).all()) for k in alsm.keys)  # keys uniform in [−1, 1]
    seen = {}
    alsm.query.register_forward_hook(lambda m, args, out: seen.setdefault("pooled", args[0]))
    a = alsm.attention(torch.tensor([[1, 2, 3]]), torch.tensor([[1, 1, 0]]))
    assert torch.equal(seen["pooled"], T([[1.0, 3.0]]))  # the max over tokens 1 and 2; the padding's 9s never count
    x = alsm.query(T([[1.0, 3.0]]))
    keys = torch.stack(list(alsm.keys))
    assert torch.allclose(a, torch.softmax(x @ keys.T / math.sqrt(2), -1))
    # KL(record ⊕ 0 ‖ a), batch mean: a one-key record [1] padded to [1, 0] gives −log a₀
    now = T([[0.25, 0.75], [0.5, 0.5]])
    kl = (-math.log(0.25) + (0.5 * math.log(0.5 / 0.5) + 0.5 * math.log(0.5 / 0.5))) / 2
    assert reflection_loss(now, [T([1.0]), T([0.5, 0.5])]).item() == pytest.approx(kl)


def test_generative_methods_refuse_an_encoder_before_training(cl_root, tmp_path):
    for name in ("sapt", "lfpt5"):
        cfg = parse_config(tiny_config(cl_root, "bert", "encoder", "lora", method=name))
        with pytest.raises(ConfigError, match=f"method '{name}' generates pseudo-examples: it needs model.kind"):
            run_experiment(cfg, tmp_path / name)


# ---------------------------------------------------------------- LFPT5

def test_generation_example_format(cl_root):
    cfg = parse_config(tiny_config(cl_root, "gpt", "causal", "lora"))
    tasks, world = build_tasks(cfg)
    backbone = prepare_backbone(cfg, tasks, world, make_accelerator())
    ex = Example("What is it?\nAnswer:", "World", "agnews")
    assert task_start("agnews") == f"{GEN} agnews"
    assert generation_example(ex, task_start("agnews"), backbone) == \
        Example("__gen__ agnews", "What is it?\nAnswer: World", "agnews")


def test_generation_examples_keep_their_answer_when_the_prompt_is_long(cl_root):
    """The model learns to generate a whole example: a prompt too long for the room after the start text loses the end
    of its passage (as an input does), never its head, its cue or the answer — cut from the end, most Standard CL
    examples lost their answer on SmolLM2 and no sample parsed. One that fits is unchanged."""
    cfg = parse_config(tiny_config(cl_root, "gpt", "causal", "lora"))
    tasks, world = build_tasks(cfg)
    backbone = prepare_backbone(cfg, tasks, world, make_accelerator())
    real = tasks[0].train[0]
    head, passage = real.prompt.split()[0] + " ", " ".join(real.prompt.split() * 20)
    long = Example(head + passage + "\nAnswer:", real.target, real.task, passage=(len(head), len(head) + len(passage)))
    assert len(backbone.ids(long.prompt)) > cfg.model.max_length
    gen = generation_example(long, task_start(real.task), backbone)
    labels = [i for i in backbone._teacher_forced([gen])[1][0].tolist() if i != -100]
    answer = backbone.shaper.answer_ids(real.target, backbone.tokenizer.eos_token_id)
    assert labels[-len(answer):] == answer
    assert backbone.ids(gen.target)[:1] == backbone.ids(head) and "Answer" in gen.target
    assert generation_example(real, task_start(real.task), backbone).target == f"{real.prompt} {real.target}"


def test_lfpt5_generates_old_pseudo_examples_mixes_them_in_and_trains_only_the_prompt(cl_root, monkeypatch):
    cfg = parse_config(tiny_config(cl_root, "t5", "seq2seq", "lora", max_steps=2))
    tasks, world = build_tasks(cfg)
    monkeypatch.setattr(lfpt5_module, "sample_texts", fake_samples({t.name: t.train for t in tasks}))
    backbone = prepare_backbone(cfg, tasks, world, make_accelerator())
    batches = []
    real_loss = backbone.loss
    backbone.loss = lambda examples: (batches.append(list(examples)), real_loss(examples))[1]
    method = create_method("lfpt5", {"prompt_length": 3, "gamma": 0.5})
    before = {n: p.detach().clone() for n, p in backbone.model.named_parameters() if not n.startswith("cl_")}
    logged = []
    run_sequence(cfg, tasks, backbone, method, log=logged.append)
    # 0.5 · 24 sampled and parsed before amazon; the fake samples carry agnews' own labels: 2 kept per label
    assert method.counts == {"amazon": {"agnews": {"sampled": 12, "parsed": 12, "kept": 4}}}
    pseudo_log = next(r for r in logged if r["event"] == "lfpt5_pseudo")  # the log shows one sample per old task
    assert pseudo_log["first_samples"]["agnews"] == f"{tasks[0].train[0].prompt} {tasks[0].train[0].target}"[:300]
    assert sorted(ex.target for ex in method.pseudo) == ["Sports", "Sports", "World", "World"]
    assert {ex.task for ex in method.pseudo} == {"agnews"}
    gen = [b for b in batches if b and b[0].prompt.startswith(GEN)]
    assert gen and {b[0].prompt for b in gen} >= {"__gen__ agnews", "__gen__ amazon"}
    after = dict(backbone.model.named_parameters())
    assert [n for n, p in after.items() if p.requires_grad] == ["cl_prompt.prompt"]
    assert all(torch.equal(before[n], after[n]) for n in before)


def test_lfpt5_keeps_only_samples_labelled_with_the_tasks_labels_two_per_label():
    """The authors keep a generated sample only if its label is one of the task's, then 2 per label."""
    from continual_lm.methods.lfpt5 import keep_per_label
    labels = ("World", "Sports")
    parsed = [Example(f"q{i}\nAnswer:", a, "agnews") for i, a in
              enumerate(["World", "Sports", "Business", "World", "World\nmore", "", "Sports", "sports"])]
    kept = keep_per_label(parsed, labels, 2, random.Random(0))
    assert sorted((ex.target, ex.options) for ex in kept) == [("Sports", labels)] * 2 + [("World", labels)] * 2
    assert len(keep_per_label(parsed, labels, None, random.Random(0))) == 5  # 3 World (one multi-line) + 2 Sports
    assert [ex.target for ex in keep_per_label(parsed, None, 2, random.Random(0))] == \
        ["World", "Sports", "Business", "World", "World\nmore", "Sports", "sports"]  # no labels: non-empty answers


def test_lfpt5_loss_is_the_authors_convex_combination(monkeypatch):
    """(1 − λ_kd)(task + λ_lm·gen) + λ_kd·KD, the KD summed over the pseudo-examples' positions at T = 1."""
    method = create_method("lfpt5")
    p = method.params
    assert (p.kd_weight, p.lm_weight, p.temperature, p.kd_reduction, p.per_class) == (0.01, 0.25, 1.0, "sum", 2)

    class Backbone:
        def loss(self, examples):
            return torch.tensor(2.0 if examples[0].prompt.startswith(GEN) else 1.0)

        def output_logits(self, examples, labels=None):
            return torch.zeros(1, 2, 3), torch.ones(1, 2, dtype=torch.bool)

        def target_room(self, prompt):  # every generation example fits
            return 100

        def target_length(self, text):
            return len(text.split()) + 1

    class Ctx:
        backbone = Backbone()
        task = Task("amazon", [], [])
    monkeypatch.setattr(lfpt5_module, "teacher_logits", lambda *a, **k: T([[[0.0, 0.0, math.log(2.0)]] * 2]))
    method.tracked, method.teacher = {}, {}
    kl = 0.25 * math.log(0.75) * 2 + 0.5 * math.log(1.5)
    batch = [Example("a", "x", "amazon"), Example("b", "y", "agnews")]  # one pseudo-example of the old task
    assert method.loss(Ctx(), batch).item() == pytest.approx(0.99 * (1.0 + 0.25 * 2.0) + 0.01 * 2 * kl)
    assert method.loss(Ctx(), batch[:1]).item() == pytest.approx(1.0 + 0.25 * 2.0)  # no pseudo-example: no KD


def test_lfpt5_authors_preset():
    from transformers.optimization import Adafactor
    ours, authors = create_method("lfpt5"), create_method("lfpt5", {"variant": "authors"})
    assert (ours.params.prompt_length, ours.params.optimizer, ours.params.lr) == (20, "adamw", PROMPT_LR)
    assert (authors.params.prompt_length, authors.params.optimizer, authors.params.lr) == (300, "adafactor", 0.5)
    assert create_method("lfpt5", {"variant": "authors", "prompt_length": 40}).params.prompt_length == 40
    param = torch.nn.Parameter(torch.zeros(2))
    optimizer = authors.make_optimizer([param], authors.learning_rate(1e-3), 1e-5)
    assert isinstance(optimizer, Adafactor) and optimizer.defaults["lr"] == 0.5
    assert optimizer.defaults["decay_rate"] == -0.8 and optimizer.defaults["relative_step"] is False
    assert isinstance(ours.make_optimizer([param], 1e-3, 0.0), torch.optim.AdamW)


@pytest.mark.parametrize("name,arch,kind", [("l2p", "gpt", "causal"), ("lwf", "t5", "seq2seq"),
                                            ("moe_lora", "bert", "encoder"), ("lfpt5", "gpt", "causal"),
                                            ("sapt", "t5", "seq2seq"), ("lwf", "gpt", "causal")])
def test_new_methods_run_end_to_end(cl_root, tmp_path, name, arch, kind):
    cfg = parse_config(tiny_config(cl_root, arch, kind, "lora", method=name, max_steps=2,
                                   params={"max_new_tokens": 6} if name in ("lfpt5", "sapt") else {}))
    record, folder = run_experiment(cfg, tmp_path / name)
    assert len(record.acc_matrix) == 2 and (folder / "metrics.json").exists()
    assert RunRecord.read(folder).method_params == create_method(name, cfg.method.params).params.model_dump(mode="json")


def test_pseudo_examples_get_as_many_tokens_as_the_model_trains_on():
    """A pseudo-example is a whole prompt and its answer. The old fixed 48 new tokens (tuned on Biography's short
    questions) cut every Standard CL sample before its "Answer:" — on SmolLM2, LFPT5 parsed 1 of 100 and kept none,
    SAPT reflected on 0 — so by default the budget is model.max_length."""
    import contextlib
    from types import SimpleNamespace
    from continual_lm.methods import create_method
    from continual_lm.methods.pseudo import sample_texts
    asked = []

    class Backbone:
        settings = SimpleNamespace(max_length=128)

        def inference(self):
            return contextlib.nullcontext()

        def sample(self, prompts, max_new_tokens, top_k):
            asked.append(max_new_tokens)
            return ["Question?\nAnswer: yes"] * len(prompts)
    assert sample_texts(Backbone(), "__gen__ t", 3, None, 20, 2, 0) == ["Question?\nAnswer: yes"] * 3
    assert sample_texts(Backbone(), "__gen__ t", 1, 48, 20, 2, 0) and asked == [128, 128, 48]
    for name in ("lamol", "lfpt5", "sapt"):
        assert create_method(name).params.max_new_tokens is None


@pytest.mark.parametrize("name", ["sapt", "lfpt5"])
def test_no_pseudo_examples_at_gamma_zero_still_logs(cl_root, name):
    """gamma 0 samples nothing: the reflection's log shows an empty sample, it does not fail on the first one."""
    cfg = parse_config(tiny_config(cl_root, "gpt", "causal", "lora", max_steps=1))
    tasks, world = build_tasks(cfg)
    logged = []
    method = create_method(name, {"gamma": 0, "max_new_tokens": 4})
    run_sequence(cfg, tasks, prepare_backbone(cfg, tasks, world, make_accelerator()), method, log=logged.append)
    record = next(r for r in logged if r["event"] in ("sapt_reflection", "lfpt5_pseudo"))
    shown = [v["first_sample"] for v in record.get("per_task", {}).values()] + list(record.get("first_samples", {}).values())
    assert shown == [""]  # one old task, nothing sampled
