import json
import re

import pytest

from continual_lm.config import parse_config
from continual_lm.data.biography import ATTRIBUTES, QUESTIONS, TEMPLATES, build_world, parse_settings
from continual_lm.errors import ConfigError
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
    for name in DEFAULT_METHODS:
        metrics = json.loads((tmp_path / "out" / name / "metrics.json").read_text())
        assert len(metrics["acc_matrix"]) == 2 and len(metrics["acc_matrix"][0]) == 2
        row = summary["tasks"][name]
        assert row["task0_final"]["mean"] == round(metrics["acc_matrix"][1][0], 2)
        assert row["task0_after_task0"]["mean"] == round(metrics["acc_matrix"][0][0], 2)
        assert list(row["curve"]) == ["0", "2", "4", "end"]
    table = (tmp_path / "out" / "summary.md").read_text()
    assert all(f"| {m} |" in table for m in DEFAULT_METHODS)
    assert json.loads((tmp_path / "out" / "summary.json").read_text())["tasks"].keys() == set(DEFAULT_METHODS)
    # Pre-training happened once; every later run found the cached checkpoint.
    records = [json.loads(l) for m in DEFAULT_METHODS for l in (tmp_path / "out" / m / "log.jsonl").read_text().splitlines()]
    cached = [r for r in records if r["event"] == "pretrain"]
    assert len(cached) == len(DEFAULT_METHODS)
    assert "saved" in cached[0] and all("cached" in c for c in cached[1:])
    assert len(list((tmp_path / "cache").iterdir())) == 1
