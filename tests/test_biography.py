import json
import re

import pytest

from continual_lm.config import parse_config
from continual_lm.data.biography import ATTRIBUTES, QUESTIONS, TEMPLATES, build_world, parse_settings
from continual_lm.errors import ConfigError
from continual_lm.experiments.grid import folder_safe
from continual_lm.experiments.spurious import DEFAULT_METHODS, run_default_experiment
from continual_lm.models.tokenizer import build_word_tokenizer, words

# One regex per template: which attribute a sentence states, and its value.
PATTERNS = [(a, re.compile("^" + re.escape(t).replace(r"\{name\}", "(?P<name>.+?)").replace(r"\{v\}", "(?P<v>.+)")
                           + "$")) for a, ts in TEMPLATES.items() for t in ts]


def parse_sentence(sentence: str):
    for attribute, pattern in PATTERNS:
        m = pattern.match(sentence)
        if m:
            return attribute, m["name"], m["v"]
    raise AssertionError(f"no template matches {sentence!r}")


def test_generator_is_deterministic_and_seeded():
    a, b = build_world({"n_pretrain_persons": 30, "seed": 3}), build_world({"n_pretrain_persons": 30, "seed": 3})
    c = build_world({"n_pretrain_persons": 30, "seed": 4})
    assert a.pretrain_persons == b.pretrain_persons and a.pretrain_corpus == b.pretrain_corpus
    assert a.pretrain_persons != c.pretrain_persons


def test_names_unique_and_new_persons_disjoint():
    world = build_world({"n_pretrain_persons": 300, "n_new_persons": 100, "n_new_tasks": 2})
    everyone = world.pretrain_persons + [p for g in world.new_persons for p in g]
    assert len({p.name for p in everyone}) == len(everyone) == 500


def test_every_attribute_once_per_biography_with_the_full_name():
    world = build_world({"n_pretrain_persons": 20, "bios_per_person": 3})
    bios = world.pretrain_corpus
    assert len(bios) == 60
    for i, bio in enumerate(bios):
        person = world.pretrain_persons[i // 3]
        sentences = [s if s.endswith(".") else s + "." for s in bio.split(". ")]
        parsed = [parse_sentence(s) for s in sentences]
        assert sorted(a for a, _, _ in parsed) == sorted(ATTRIBUTES)
        assert all(name == person.name and value == person.attribute(attr) for attr, name, value in parsed)
    assert len(set(bios[:3])) > 1  # paraphrases and order vary between a person's biographies


def test_company_city_follows_company_and_qa_answers_match():
    world = build_world({"n_pretrain_persons": 40, "n_new_persons": 10})
    tasks = world.tasks()
    assert [t.name for t in tasks] == ["task0", "task1"]
    task0, task1 = tasks
    assert len(task0.train) == 20 * 6 and len(task0.test) == 20 * 6
    train_names = {ex.prompt for ex in task0.train}
    assert not train_names & {ex.prompt for ex in task0.test}  # tested on the other half of the persons
    assert task1.train == task1.test
    second = world.pretrain_persons[20:]
    for k, ex in enumerate(task0.test):
        person, attr = second[k // 6], ATTRIBUTES[k % 6]
        assert ex.prompt == QUESTIONS[attr].format(name=person.name) + "\nAnswer:"
        assert ex.target == person.attribute(attr)
    first = world.pretrain_persons[0]
    assert task0.train[1].prompt == f"What is the birth city of {first.name}?\nAnswer:"
    assert task0.train[1].target == first.birth_city
    from continual_lm.data.biography import COMPANIES
    assert all(p.company_city == COMPANIES[p.company] for p in world.pretrain_persons)


def test_word_tokenizer_round_trip():
    world = build_world({"n_pretrain_persons": 10})
    tok = build_word_tokenizer(world.vocabulary_corpus())
    for text in world.pretrain_corpus[:5] + ["What is the birth city of X?\nAnswer: Boston"]:
        ids = tok(text, add_special_tokens=False)["input_ids"]
        decoded = tok.decode(ids)
        assert decoded.split() == words(text) or "[UNK]" in decoded
        assert tok(decoded, add_special_tokens=False)["input_ids"] == ids
    assert tok.convert_ids_to_tokens(tok("Boston", add_special_tokens=False)["input_ids"]) == ["Boston"]


def test_bad_biography_settings():
    with pytest.raises(ConfigError, match="data.biography.n_persons"):
        parse_settings({"n_persons": 3})
    with pytest.raises(ConfigError, match="exceed the name pool"):
        parse_settings({"n_pretrain_persons": 40000})


TINY_BIO = {
    "name": "bio", "seed": 0,
    "model": {"kind": "causal", "tiny": {"arch": "gpt", "layers": 1, "width": 32, "heads": 2}, "finetune": "full",
              "max_length": 96, "max_new_tokens": 6},
    "data": {"benchmark": "biography", "biography": {"n_pretrain_persons": 12, "bios_per_person": 2, "n_new_persons": 4}},
    "pretrain": {"epochs": 1, "batch_size": 8, "lr": 0.002},
    "training": {"max_steps": 6, "batch_size": 8, "lr": 0.001, "eval_batch_size": 64},
    "curve_steps": [0, 2, 4],
}


def test_default_experiment_tiny_end_to_end(tmp_path, monkeypatch):
    monkeypatch.setenv("CONTINUAL_LM_CACHE", str(tmp_path / "cache"))
    lines = []
    summary = run_default_experiment(tmp_path / "out", parse_config(TINY_BIO), echo=lines.append)
    assert list(summary["methods"]) == list(summary["tasks"]) == DEFAULT_METHODS
    assert "recurrent_kif:reference_code" in DEFAULT_METHODS  # issue 29 (17): the authors' code beside the paper's
    assert any(line.startswith("recurrent_kif (the paper's text) keeps only the top 20%") for line in lines)
    for name in DEFAULT_METHODS:
        metrics = json.loads((tmp_path / "out" / folder_safe(name) / "metrics.json").read_text())
        assert len(metrics["acc_matrix"]) == 2 and len(metrics["acc_matrix"][0]) == 2
        row = summary["tasks"][name]
        assert row["task0_final"]["mean"] == round(metrics["acc_matrix"][1][0], 2)
        assert row["task0_after_task0"]["mean"] == round(metrics["acc_matrix"][0][0], 2)
        assert list(row["curve"]) == ["0", "2", "4", "end"]
    table = (tmp_path / "out" / "summary.md").read_text()
    assert all(f"| {m} |" in table for m in DEFAULT_METHODS)
    assert json.loads((tmp_path / "out" / "summary.json").read_text())["tasks"].keys() == set(DEFAULT_METHODS)
    # Pre-training happened once; every later run found the cached checkpoint.
    records = [json.loads(l) for m in DEFAULT_METHODS
               for l in (tmp_path / "out" / folder_safe(m) / "log.jsonl").read_text().splitlines()]
    cached = [r for r in records if r["event"] == "pretrain"]
    assert len(cached) == len(DEFAULT_METHODS)
    assert "saved" in cached[0] and all("cached" in c for c in cached[1:])
    assert len(list((tmp_path / "cache").iterdir())) == 1
    # issue 29 (2): interrupted after some methods finished, the same command goes on (here: nothing left to run)
    (tmp_path / "out" / "summary.json").unlink()
    again = run_default_experiment(tmp_path / "out", parse_config(TINY_BIO), echo=lines.append)
    assert again["tasks"] == summary["tasks"]


# ---------------------------------------------------------------- the demo's pre-training (issue 18)

def test_a_text_without_prompt_is_trained_whole_and_a_long_prompt_keeps_its_end():
    """Format 1 cut every biography (47-66 tokens) to its first 48 tokens (half of max_length 96)."""
    from continual_lm.config import ModelSettings
    from continual_lm.data.task import Example
    from continual_lm.models.backbone import build_backbone
    text = " ".join(f"w{i}" for i in range(80))
    settings = ModelSettings(kind="causal", tiny={"arch": "gpt", "layers": 1, "width": 16, "heads": 2},
                             finetune="full", max_length=96)
    long = " ".join(f"w{i}" for i in range(120))
    backbone = build_backbone(settings, [long + " Answer : yes"], seed=0, device="cpu")
    _, labels = backbone._teacher_forced([Example("", text, "t")])
    assert int((labels != -100).sum()) == 81                      # 80 words and EOS, none cut
    kwargs, labels = backbone._teacher_forced([Example(long + " Answer :", "yes", "t")])
    # the prompt keeps its end within the budget evaluation gives it too (96 less the answer's room, 16 tokens): its
    # start goes, "yes" + EOS stay
    assert labels.shape[1] == 80 + 2 and int((labels != -100).sum()) == 2
    assert backbone.tokenizer.decode(kwargs["input_ids"][0, 78:80]) == "Answer :"


def test_length_grouped_batches_cover_every_example_once_an_epoch_and_pad_less():
    from continual_lm.data.task import Example
    from continual_lm.training.loop import batches, make_accelerator
    examples = [Example("", "x" * (1 + (i * 37) % 100), "t") for i in range(400)]
    acc = make_accelerator()
    for grouped in (False, True):
        it = batches(examples, 4, seed=3, accelerator=acc, group_by_length=grouped)
        epoch = [next(it) for _ in range(100)]
        assert sorted(id(e) for b in epoch for e in b) == sorted(id(e) for e in examples)
        pad = sum(max(len(e.target) for e in b) * len(b) - sum(len(e.target) for e in b) for b in epoch)
        if grouped:
            assert pad < ungrouped_pad / 10
            again = batches(examples, 4, seed=3, accelerator=acc, group_by_length=True)
            assert [[e.target for e in next(again)] for _ in range(3)] == [[e.target for e in b] for b in epoch[:3]]
        ungrouped_pad = pad


def test_the_pretraining_cache_key_follows_what_changes_the_checkpoint_only(monkeypatch):
    import continual_lm.experiments.setup as setup
    from continual_lm.experiments.setup import pretrain_key
    from continual_lm.experiments.spurious import default_config_path
    from continual_lm.config import load_config
    base = load_config(default_config_path())
    world = build_world(base.data.biography)
    key = pretrain_key(base, world)
    for same in ("training.report_to=[tensorboard]", "pretrain.num_threads=1", "pretrain.save_every=10",
                 "pretrain.predictions=none", "method.name=replay", "curve_steps=[]"):
        assert pretrain_key(load_config(default_config_path(), [same]), world) == key, same
    for other in ("pretrain.lr=0.003", "pretrain.epochs=13", "pretrain.group_by_length=false", "model.tiny.width=128",
                  "seed=1"):
        assert pretrain_key(load_config(default_config_path(), [other]), world) != key, other
    monkeypatch.setattr(setup, "PRETRAIN_FORMAT", 1)  # a checkpoint of the previous format is never reused
    assert pretrain_key(base, world) != key


def test_the_default_generation_length_fits_every_biography_answer_and_its_eos():
    """max_new_tokens is cut to the longest answer + EOS: an exact-match decision reads no token beyond it."""
    from continual_lm.config import load_config
    from continual_lm.experiments.spurious import default_config_path
    cfg = load_config(default_config_path())
    world = build_world(cfg.data.biography)
    tok = build_word_tokenizer(world.vocabulary_corpus())
    longest = max(len(tok(" " + a, add_special_tokens=False)["input_ids"])
                  for t in world.tasks() for ex in t.train + t.test for a in ex.answers)
    assert longest + 1 == cfg.model.max_new_tokens
