import json
import logging
import re
from pathlib import Path

import pytest
from conftest import SHARED_DATA, needs_shared_data, toy_records, write_cl_task

from continual_lm.data.benchmarks import ORDERS, load_benchmark, task_order
from continual_lm.data.loaders import (cl_benchmark_prompt, load_cl_benchmark_task, load_instruction_task, read_records,
                                       load_superni_task, load_task_dir)
from continual_lm.errors import ConfigError, DataError


def test_cl_benchmark_prompt_is_the_papers(cl_root):
    task = load_cl_benchmark_task(cl_root / "agnews")
    ex = task.test[0]
    assert ex.prompt == ("What is the topic? Choose one from the option.\nOption: World, Sports \n"
                         "news item 0 is about World\nAnswer:")
    assert ex.target == "World" and ex.options == ("World", "Sports") and ex.answers == ("World",)
    assert ex.prompt[slice(*ex.passage)] == "news item 0 is about World"  # the part truncation may cut
    assert task.metric == "exact_match" and len(task.train) == 24 and len(task.test) == 8


def test_copa_prompt_has_no_instruction():
    assert cl_benchmark_prompt("", None, "Premise? A or B") == ("Premise? A or B\nAnswer:", (0, 15))


def test_label_outside_label_set_names_file_and_record(tmp_path):
    write_cl_task(tmp_path, "agnews", ["World"], [{"label": "World", "sentence": "a"}, {"label": "Sport", "sentence": "b"}],
                  [{"label": "World", "sentence": "c"}])
    with pytest.raises(DataError, match=r"agnews/train.json: record 2 \(counting from 1\): label 'Sport' is not in labels.json"):
        load_cl_benchmark_task(tmp_path / "agnews")


def test_malformed_json_names_file_and_line(tmp_path):
    d = write_cl_task(tmp_path, "agnews", ["World"], [], [])
    (d / "train.json").write_text('[\n{"label": "World", "sentence": "a"},\n{oops}\n]')
    with pytest.raises(DataError, match=r"agnews/train.json: malformed JSON at line 3"):
        load_cl_benchmark_task(d)


def test_missing_field_and_empty_split(tmp_path):
    d = write_cl_task(tmp_path, "agnews", ["World"], [{"sentence": "no label"}], [{"label": "World", "sentence": "x"}])
    with pytest.raises(DataError, match=r"train.json: record 1 \(counting from 1\): expected an object with 'label' and 'sentence'"):
        load_cl_benchmark_task(d)
    d = write_cl_task(tmp_path, "yahoo", ["World"], [{"label": "World", "sentence": "x"}], [])
    with pytest.raises(DataError, match=r"yahoo/test.json: empty split"):
        load_cl_benchmark_task(d)


def test_mnli_unlabelled_records_are_skipped_and_counted(tmp_path, caplog):
    labels = ["entailment", "neutral", "contradiction"]
    test = [{"label": "-", "sentence": "s1"}, {"label": "neutral", "sentence": "s2"}, {"label": "-", "sentence": "s3"}]
    write_cl_task(tmp_path, "MNLI", labels, [{"label": "neutral", "sentence": "t"}], test)
    (tmp_path / "instruction_config.json").write_text(json.dumps({"NLI": [{"instruction": "NLI?\n"}]}))
    with caplog.at_level(logging.INFO):
        task = load_cl_benchmark_task(tmp_path / "MNLI")
    assert [ex.target for ex in task.test] == ["neutral"]
    assert "skipped 2 records" in caplog.text


def test_sampling_is_seeded_and_stable(tmp_path):
    write_cl_task(tmp_path, "agnews", ["A", "B"], toy_records(["A", "B"], 50, "w"), toy_records(["A", "B"], 50, "w"))
    a = load_cl_benchmark_task(tmp_path / "agnews", n_train=10, n_test=5, seed=1)
    b = load_cl_benchmark_task(tmp_path / "agnews", n_train=10, n_test=5, seed=1)
    c = load_cl_benchmark_task(tmp_path / "agnews", n_train=10, n_test=5, seed=2)
    assert [e.prompt for e in a.train] == [e.prompt for e in b.train]
    assert [e.prompt for e in a.train] != [e.prompt for e in c.train]
    assert len(a.train) == 10 and len(a.test) == 5


def test_superni_list_outputs_and_errors(tmp_path):
    d = tmp_path / "task999_toy_summarization"
    d.mkdir()
    inst = [{"id": "1", "input": "long text", "output": ["short", "brief"]}, {"id": "2", "input": "x", "output": "y"},
            {"id": "3", "input": "z", "output": [""]}]  # an empty reference is skipped
    for split in ("train", "test"):
        (d / f"{split}.json").write_text(json.dumps({"Definition": ["Summarise."], "Instances": inst}))
    task = load_superni_task(d)
    assert task.metric == "rouge_l"
    assert task.train[0].prompt == "Definition: Summarise.\n\nInput: long text\nOutput:"
    assert task.train[0].answers == ("short", "brief") and task.train[1].answers == ("y",) and len(task.train) == 2
    (d / "test.json").write_text(json.dumps({"Definition": ["x"], "Instances": [{"id": "3", "input": "x"}]}))
    with pytest.raises(DataError, match=r"test.json: instance 1 \(counting from 1\): expected 'input' and 'output'"):
        load_superni_task(d)


@pytest.mark.parametrize("records,prompt,answer", [
    ([{"prompt": "P", "answer": "A"}], "P", "A"),
    ([{"input": "I", "output": "O"}], "I", "O"),
    ([{"instruction": "Do", "input": "I", "output": "O"}], "Do\nI", "O"),
])
def test_generic_instruction_files_json_and_jsonl(tmp_path, records, prompt, answer):
    (tmp_path / "train.json").write_text(json.dumps(records))
    (tmp_path / "test.jsonl").write_text("\n".join(json.dumps(r) for r in records) + "\n")
    task = load_instruction_task(tmp_path / "train.json", tmp_path / "test.jsonl", "toy")
    assert (task.train[0].prompt, task.train[0].target) == (prompt, answer)
    assert (task.test[0].prompt, task.test[0].target) == (prompt, answer)


def test_generic_bad_record_and_bad_jsonl_line(tmp_path):
    (tmp_path / "train.jsonl").write_text('{"prompt": "p", "answer": "a"}\n{"question": "q"}\n')
    (tmp_path / "test.jsonl").write_text('{"prompt": "p", "answer": "a"}\nnot json\n')
    with pytest.raises(DataError, match=r"train.jsonl: line 2: expected keys"):
        load_instruction_task(tmp_path / "train.jsonl", tmp_path / "test.jsonl")
    (tmp_path / "train.jsonl").write_text('{"prompt": "p", "answer": "a"}\n')
    with pytest.raises(DataError, match=r"test.jsonl: malformed JSON on line 2"):
        load_instruction_task(tmp_path / "train.jsonl", tmp_path / "test.jsonl")


def test_task_dir_detects_format(tmp_path, cl_root):
    assert load_task_dir(cl_root / "amazon").options == ("positive", "negative")
    with pytest.raises(DataError, match="task folder not found"):
        load_task_dir(tmp_path / "nope")


def test_benchmark_orders_and_unknown_task(cl_root):
    assert task_order("standard", 1) == ["dbpedia", "amazon", "yahoo", "agnews"]
    assert task_order("standard", 3) == ["yahoo", "amazon", "agnews", "dbpedia"]
    assert task_order("long")[:3] == ["yelp", "amazon", "MNLI"] and len(task_order("long")) == 15
    assert all(sorted(o) == sorted(ORDERS["long"][4]) for o in ORDERS["long"].values())
    with pytest.raises(ConfigError, match="orders"):
        task_order("standard", 9)
    with pytest.raises(ConfigError, match=r"task\(s\) \['yahoo'\] not in"):
        load_benchmark("standard", cl_root, tasks=["agnews", "yahoo"])
    tasks = load_benchmark("custom", cl_root, tasks=["amazon", "agnews"], n_train=4)
    assert [t.name for t in tasks] == ["amazon", "agnews"] and len(tasks[0].train) == 4


@needs_shared_data()
def test_real_cl_benchmark_and_superni():
    tasks = load_benchmark("standard", SHARED_DATA / "cl_benchmark", order=1, n_train=20, n_test=10)
    assert [t.name for t in tasks] == ["dbpedia", "amazon", "yahoo", "agnews"]
    assert tasks[3].test[0].prompt.startswith("What is the topic of the following paragraph? Choose one from the "
                                             "option.\nOption: World, Sports, Business, Science or Technology \n")
    assert all(ex.target in t.options for t in tasks for ex in t.train + t.test)
    mnli = load_cl_benchmark_task(SHARED_DATA / "cl_benchmark" / "MNLI")
    assert len(mnli.test) == 7600 - 131
    sni = load_benchmark("superni", SHARED_DATA / "superni", n_train=5, n_test=5)
    assert len(sni) == 15 and sni[1].metric == "exact_match" and sni[0].metric == "rouge_l"


# ---------------------------------------------------------------- TRACE (issue 15)

def write_trace_task(root, name, train=None, test=None):
    d = root / name
    d.mkdir(parents=True)
    rec = [{"prompt": f"{name} question {i}\nAnswer:", "answer": "A" if i % 2 else "B"} for i in range(6)]
    for split, records in (("train", train), ("test", test)):
        if records is not False:
            (d / f"{split}.json").write_text(json.dumps(records or rec))
    return d


def test_trace_layout_any_task_folder_with_per_task_metrics(tmp_path):
    write_trace_task(tmp_path, "FOMC")
    write_trace_task(tmp_path, "MyNewTask")
    tasks = load_benchmark("trace", tmp_path, tasks=["FOMC", "MyNewTask"], n_train=4)
    assert [(t.name, t.metric, len(t.train), len(t.test)) for t in tasks] == [("FOMC", "choice_letter", 4, 6),
                                                                             ("MyNewTask", "exact_match", 4, 6)]
    assert tasks[0].test[0].prompt == "FOMC question 0\nAnswer:" and tasks[0].test[0].target == "B"


def test_trace_missing_task_or_split_says_how_to_leave_it_out(tmp_path):
    write_trace_task(tmp_path, "FOMC")
    write_trace_task(tmp_path, "MeetingBank", train=False)
    with pytest.raises(ConfigError, match=re.escape("task(s) ['C-STANCE', 'Py150', 'ScienceQA', 'NumGLUE-cm', "
                                                    "'NumGLUE-ds', '20Minuten'] not in") + ".*to leave them out: "
                                          + re.escape("data.tasks: [FOMC, MeetingBank]")):
        load_benchmark("trace", tmp_path)
    with pytest.raises(DataError, match=re.escape("MeetingBank: no train.json") + ".*"
                                        + re.escape("leave the task out with data.tasks: [FOMC]")):
        load_benchmark("trace", tmp_path, tasks=["FOMC", "MeetingBank"])


def test_data_metrics_override_a_tasks_metric(cl_root):
    from conftest import tiny_config

    from continual_lm.config import parse_config
    from continual_lm.experiments.setup import build_tasks
    raw = tiny_config(cl_root)
    raw["data"]["metrics"] = {"amazon": "choice_letter"}
    tasks, _ = build_tasks(parse_config(raw))
    assert [t.metric for t in tasks] == ["exact_match", "choice_letter"]
    raw["data"]["metrics"] = {"yelp": "number"}
    with pytest.raises(ConfigError, match=re.escape("data.metrics: no task ['yelp'] in this run")):
        build_tasks(parse_config(raw))


@needs_shared_data("trace")
def test_trace_runs_end_to_end_with_a_tiny_causal_model(tmp_path):
    from continual_lm.config import load_config
    from continual_lm.experiments.runner import run_experiment
    cfg = load_config(Path(__file__).resolve().parents[1] / "configs" / "trace.yaml",
                      [f"data.data_dir={SHARED_DATA / 'trace'}", "data.n_train=8", "data.n_test=4",
                       "training.max_steps=2", "model.tiny.width=32", "model.max_new_tokens=4"])
    record, folder = run_experiment(cfg, tmp_path / "trace")
    assert record.tasks == ["C-STANCE", "FOMC", "Py150", "NumGLUE-ds", "20Minuten"]
    assert record.task_metrics == {"C-STANCE": "choice_letter", "FOMC": "choice_letter", "Py150": "edit_similarity",
                                   "NumGLUE-ds": "number", "20Minuten": "sari"}
    assert "| C-STANCE | choice_letter | 4 |" in (folder / "report.md").read_text()  # task, metric, n_test


def test_jsonl_lines_end_at_newline_only(tmp_path):
    """JSON strings may hold U+2028, U+0085 or a form feed raw (json.dumps(..., ensure_ascii=False) writes them so);
    str.splitlines() would cut a record there. Lines of JSON Lines end at "\\n" alone."""
    text = "one\u2028two\x85three\x0cfour\x1cfive"
    records = [{"prompt": text, "answer": "a"}, {"prompt": "p", "answer": "b"}]
    (tmp_path / "train.jsonl").write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in records),
                                          encoding="utf-8")
    assert read_records(tmp_path / "train.jsonl") == records


def test_one_convention_for_where_a_bad_record_is(tmp_path):
    """Issue 29 (9): a JSON Lines record is named by its line as an editor shows it (blank lines counted); a record of
    a JSON list by its position counting from 1."""
    (tmp_path / "train.jsonl").write_text('{"prompt": "p", "answer": "a"}\n\n{"question": "q"}\n')
    (tmp_path / "test.json").write_text(json.dumps([{"prompt": "p", "answer": "a"}, {"question": "q"}]))
    with pytest.raises(DataError, match=r"train.jsonl: line 3: expected keys"):
        load_instruction_task(tmp_path / "train.jsonl", tmp_path / "test.json")
    (tmp_path / "train.jsonl").write_text('{"prompt": "p", "answer": "a"}\n')
    with pytest.raises(DataError, match=r"test.json: record 2 \(counting from 1\): expected keys"):
        load_instruction_task(tmp_path / "train.jsonl", tmp_path / "test.json")


@pytest.mark.parametrize("answer", [None, "", "  "])
def test_a_missing_or_empty_answer_is_an_error_not_a_target(tmp_path, answer):
    """Issue 29 (6): "answer": null was trained as the literal 'None', "" as an empty target."""
    (tmp_path / "train.jsonl").write_text(json.dumps({"prompt": "p", "answer": "a"}) + "\n"
                                          + json.dumps({"prompt": "q", "answer": answer}) + "\n")
    (tmp_path / "test.jsonl").write_text(json.dumps({"prompt": "p", "answer": "a"}) + "\n")
    with pytest.raises(DataError, match=r"train.jsonl: line 2: empty answer"):
        load_instruction_task(tmp_path / "train.jsonl", tmp_path / "test.jsonl")


def test_a_file_that_is_not_utf8_is_named_in_one_line(tmp_path, cl_root):
    """Issue 29 (4): a UnicodeDecodeError traceback that named no file."""
    (tmp_path / "train.jsonl").write_bytes('{"prompt": "caf\u00e9", "answer": "a"}\n'.encode("latin-1"))
    (tmp_path / "test.jsonl").write_text(json.dumps({"prompt": "p", "answer": "a"}) + "\n")
    with pytest.raises(DataError, match=r"train.jsonl: not UTF-8 text \(byte 0xe9 at offset 15\)"):
        load_instruction_task(tmp_path / "train.jsonl", tmp_path / "test.jsonl")
    (cl_root / "agnews" / "train.json").write_bytes(b'[{"label": "World", "sentence": "caf\xe9"}]')
    with pytest.raises(DataError, match=r"agnews/train.json: not UTF-8 text"):
        load_cl_benchmark_task(cl_root / "agnews")
