"""User paths that used to end in a traceback or mislead (issue 15): each now ends in one line that says what to do."""
import json
import re

import pytest
import yaml
from conftest import tiny_config, toy_records, write_cl_task

from continual_lm.config import ModelSettings, load_config, parse_config
from continual_lm.data.loaders import load_cl_benchmark_task
from continual_lm.errors import ConfigError, DataError
from continual_lm.models.loading import load_pretrained


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


@pytest.mark.parametrize("item,key", [("training.lr=-0.001", "training.lr"), ("training.epochs=0", "training.epochs"),
                                      ("model.lora.r=0", "model.lora.r"), ("data.n_train=0", "data.n_train"),
                                      ("training.warmup_ratio=1.5", "training.warmup_ratio"),
                                      ("model.lora.dropout=1", "model.lora.dropout")])
def test_numeric_settings_out_of_range_are_one_line_naming_the_set(cl_root, tmp_path, item, key):
    """Issue 29 (5, 9): a negative lr gave torch's traceback; a --set error blamed the YAML file."""
    path = tmp_path / "c.yaml"
    path.write_text(yaml.safe_dump(tiny_config(cl_root)))
    with pytest.raises(ConfigError, match=rf"^--set {re.escape(item)}: {re.escape(key)}: Input should be"):
        load_config(path, [item])
    with pytest.raises(ConfigError, match=r"^--set training\.lr=\[: the value is not valid YAML"):
        load_config(path, ["training.lr=["])
    with pytest.raises(ConfigError, match=r"c\.yaml: training\.lr: Input should be greater than 0"):
        bad = tiny_config(cl_root)
        bad["training"]["lr"] = 0
        path.write_text(yaml.safe_dump(bad))
        load_config(path)


def test_max_length_beyond_the_models_positions_is_capped_in_one_line(gpt2_folder, caplog):
    """Issue 29 (7): model.max_length 1000000 was accepted silently."""
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast
    from continual_lm.models.backbone import build_backbone
    tok = Tokenizer(models.WordLevel({f"w{i}": i for i in range(18)} | {"[EOS]": 18, "[UNK]": 19}, unk_token="[UNK]"))
    tok.pre_tokenizer = pre_tokenizers.Whitespace()
    PreTrainedTokenizerFast(tokenizer_object=tok, unk_token="[UNK]", eos_token="[EOS]").save_pretrained(gpt2_folder)
    with caplog.at_level("WARNING"):
        backbone = build_backbone(ModelSettings(kind="causal", path=str(gpt2_folder), max_length=1000000,
                                                max_new_tokens=4))
    assert backbone.settings.max_length == 32 and backbone.token_budget == 32
    assert [r.getMessage() for r in caplog.records] == [
        "model.max_length 1000000 is above the 32 positions of the model: capped at 32"]


@pytest.mark.parametrize("benchmark,order", [("custom", 2), ("trace", 2), ("biography", 1)])
def test_an_order_for_a_benchmark_without_orders_is_an_error(cl_root, benchmark, order):
    """Issue 29 (8): data.order was ignored with trace/custom, and recorded as if it applied."""
    cfg = tiny_config(cl_root)
    cfg["data"] |= {"benchmark": benchmark, "order": order}
    if benchmark == "biography":
        cfg["data"].pop("data_dir")
    with pytest.raises(ConfigError, match=rf"data\.order: benchmark '{benchmark}' has (no orders|one order \(1\))"):
        parse_config(cfg)
