"""User paths that used to end in a traceback or mislead (issue 15): each now ends in one line that says what to do."""
import json

import pytest
import yaml
from conftest import tiny_config, toy_records, write_cl_task

from continual_lm.config import ModelSettings, load_config, parse_config
from continual_lm.data.loaders import load_cl_benchmark_task
from continual_lm.errors import ConfigError, DataError
from continual_lm.models.backbone import load_pretrained


@pytest.fixture
def gpt2_folder(tmp_path):
    from transformers import GPT2Config, GPT2LMHeadModel, PreTrainedTokenizerFast
    from tokenizers import Tokenizer, models, pre_tokenizers
    folder = tmp_path / "gpt2"
    GPT2LMHeadModel(GPT2Config(n_layer=1, n_embd=16, n_head=2, vocab_size=20, n_positions=32)).save_pretrained(folder)
    tok = Tokenizer(models.WordLevel({f"w{i}": i for i in range(19)} | {"[UNK]": 19}, unk_token="[UNK]"))
    tok.pre_tokenizer = pre_tokenizers.Whitespace()
    PreTrainedTokenizerFast(tokenizer_object=tok, unk_token="[UNK]").save_pretrained(folder)  # no EOS, no SEP
    return folder


def test_model_folder_problems_are_one_line(gpt2_folder, tmp_path):
    with pytest.raises(ConfigError, match="has no EOS \\(and no SEP\\) token"):
        load_pretrained(ModelSettings(kind="causal", path=str(gpt2_folder)))
    with pytest.raises(ConfigError, match="is not a seq2seq model .*; set model.kind: causal"):
        load_pretrained(ModelSettings(kind="seq2seq", path=str(gpt2_folder)))
    (tmp_path / "empty").mkdir()
    with pytest.raises(ConfigError, match="has no config.json"):
        load_pretrained(ModelSettings(kind="causal", path=str(tmp_path / "empty")))


def test_yaml_errors_say_where_and_typos_say_what_was_meant(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("model:\n  kind: causal\n  tiny: [unclosed\n")
    with pytest.raises(ConfigError, match=r"bad.yaml: malformed YAML at line \d+, column \d+"):
        load_config(bad)
    bad.write_text(yaml.safe_dump({"model": {"kind": "causal", "tiny": {}}, "training": {"batch_sise": 4}}))
    with pytest.raises(ConfigError, match="training.batch_sise: Extra inputs are not permitted; did you mean 'batch_size'"):
        load_config(bad)
    bad.write_text(yaml.safe_dump({"modle": {"kind": "causal"}}))
    with pytest.raises(ConfigError, match="did you mean 'model'"):
        load_config(bad)


def test_a_relative_data_dir_says_where_it_was_read_from(cl_root, tmp_path, monkeypatch):
    raw = tiny_config(cl_root)
    raw["data"] = {"benchmark": "standard", "data_dir": "no/such/folder", "n_train": 4}
    from continual_lm.experiments.setup import build_tasks
    with pytest.raises(ConfigError, match="read from the working directory"):
        build_tasks(parse_config(raw))


def test_a_new_cl_benchmark_task_takes_its_instruction_from_its_folder_or_the_config(tmp_path):
    labels = ["yes", "no"]
    d = write_cl_task(tmp_path, "MyTask", labels, toy_records(labels, 4, "x"), toy_records(labels, 2, "x"))
    with pytest.raises(DataError, match="no instruction for task 'MyTask': add an instruction.txt"):
        load_cl_benchmark_task(d)
    config = json.loads((tmp_path / "instruction_config.json").read_text())
    (tmp_path / "instruction_config.json").write_text(json.dumps({**config, "MyTask": [{"instruction": "Is it? "}]}))
    assert load_cl_benchmark_task(d).test[0].prompt.startswith("Is it? Option: yes, no")
    (d / "instruction.txt").write_text("Own words. ")
    assert load_cl_benchmark_task(d).test[0].prompt.startswith("Own words. Option:")


def test_a_failed_run_logs_its_error(cl_root, tmp_path):
    from continual_lm.experiments.runner import run_experiment
    raw = tiny_config(cl_root)
    raw["data"]["tasks"] = ["agnews", "nosuch"]
    with pytest.raises(DataError):
        run_experiment(parse_config(raw), tmp_path / "run")
    last = json.loads((tmp_path / "run" / "log.jsonl").read_text().splitlines()[-1])
    assert last["event"] == "error" and "nosuch" in last["message"]
