"""Where answers go (analysis/answers.py): hand-sorted predictions, a hand-built run folder, and a real tiny run."""
import json
import shutil

import pytest

from continual_lm.analysis import run_loader
from continual_lm.analysis.answers import (answer_shares, answer_table_markdown, grid_answer_alignment,
                                           run_answer_alignment)
from continual_lm.cli import main
from continual_lm.config import parse_config
from continual_lm.errors import DataError
from continual_lm.experiments.runner import run_experiment
from conftest import tiny_config


def line(prediction: str, score: float = 0.0) -> dict:
    return {"prediction": prediction, "score": score, "gold": ["positive"]}


def test_answer_shares_sorts_each_answer_by_hand():
    records = [line("positive", 100.0), line("Negative."), line("negative"), line("World"), line("Sports"),
               line("World"), line(""), line("I think so"), line("neutral"), line("World", 100.0)]
    shares = answer_shares(records, ["positive", "negative", "neutral"], ["World", "Sports", "positive", "negative",
                                                                         "neutral", "entailment"])
    # correct: 2 (full marks wins, even for a foreign-looking answer); own: "Negative." (normalised), "negative",
    # "neutral" = 3; another task's: World, Sports, World = 3; other: "", "I think so" = 2.
    assert shares["n"] == 10
    assert (shares["correct"], shares["own_label"], shares["other_task_label"], shares["other"]) == (20.0, 30.0,
                                                                                                   30.0, 20.0)
    assert shares["top_wrong"][0] == ["World", 2]


def test_a_label_two_tasks_share_counts_as_the_tasks_own():
    shares = answer_shares([line("positive"), line("World")], ["positive", "negative"],
                           ["positive", "negative", "World"])  # yelp and amazon both have "positive"
    assert (shares["own_label"], shares["other_task_label"]) == (50.0, 50.0)
    with pytest.raises(DataError, match="no predictions"):
        answer_shares([], ["a"], ["a"])


def test_an_other_answer_that_begins_like_another_tasks_label_is_counted_apart():
    """A generative model's dbpedia answers "Science" / "Science or Art" begin like yahoo's "Science & Mathematics":
    free text by the exact classes, a garbled label of another task by this count (a part of ``other``)."""
    records = [line("Science"), line("Science or Art"), line("science."), line("Art"), line("Artist"),
               line("Sports"), line("Sports fan"), line("very good"), line(""), line("Science", 100.0)]
    shares = answer_shares(records, ["Artist", "Sports team"], ["Artist", "Sports team", "Science & Mathematics",
                                                                 "Sports", "very positive"])
    # correct 1; own "Artist" 1; another task's "Sports" 1; other: Science, Science or Art, science., Art,
    # Sports fan, very good, "" = 7. Of those, beginning like another task's label and like none of the own:
    # Science, Science or Art, science. (science), very good (very) = 4; "Sports fan" begins like the own
    # "Sports team" too, "Art" is not a first word of any label, "" has no first word.
    assert (shares["correct"], shares["own_label"], shares["other_task_label"], shares["other"]) == (10.0, 10.0,
                                                                                                   10.0, 70.0)
    assert shares["other_near_task_label"] == 40.0


def write_run(folder, stages: dict[str, dict[str, list[dict]]], tasks: list[str]) -> None:
    folder.mkdir()
    (folder / "metrics.json").write_text(json.dumps({"method": "seq", "tasks": tasks, "acc_matrix": [],
                                                     "op": None, "bwt": None, "fwt": None, "seconds": 1.0,
                                                     "stages": list(stages)}))
    for stage, per_task in stages.items():
        (folder / "predictions" / stage).mkdir(parents=True)
        for task, records in per_task.items():
            (folder / "predictions" / stage / f"{task}.jsonl").write_text("".join(json.dumps(r, ensure_ascii=False) + "\n"
                                                                                  for r in records))


def test_run_answer_alignment_averages_the_old_tasks_after_the_last_stage(tmp_path):
    news = [line("World", 100.0), line("positive"), line("positive"), line("Sports")]  # 25 / 25 / 50 / 0
    reviews = [line("negative"), line("World")]                                          # 0 / 50 / 50 / 0
    qa = [line("Paris", 100.0)]
    write_run(tmp_path / "run", {"news": {"news": news}, "reviews": {"news": news, "reviews": reviews, "qa": qa},
                                 "qa": {"news": news, "reviews": reviews, "qa": qa}}, ["news", "reviews", "qa"])
    labels = {"news": ("World", "Sports"), "reviews": ("positive", "negative"), "qa": None}
    result = run_answer_alignment(tmp_path / "run", labels)
    assert result["tasks_without_labels"] == ["qa"]
    assert result["stages"]["news"]["news"]["other_task_label"] == 50.0
    old = result["final_old"]
    # The last labelled task is reviews: the old tasks are news alone (qa has no labels and is not sorted).
    assert old["tasks"] == ["news"] and old["stage"] == "qa"
    assert (old["correct"], old["own_label"], old["other_task_label"]) == (25.0, 25.0, 50.0)
    with pytest.raises(DataError, match="no labels given for tasks \\['qa'\\]"):
        run_answer_alignment(tmp_path / "run", {"news": ("World",), "reviews": ("positive",)})
    (tmp_path / "run" / "predictions" / "qa" / "news.jsonl").write_text('{"prediction": "World", "score": 0}\n{oops\n')
    with pytest.raises(DataError, match=r"predictions/qa/news.jsonl: malformed JSON on line 2"):
        run_answer_alignment(tmp_path / "run", labels)
    (tmp_path / "run" / "predictions" / "qa" / "news.jsonl").write_text('{"prediction": "World"}\n')
    with pytest.raises(DataError, match=r"news.jsonl: line 1: a prediction line needs 'prediction' and 'score'"):
        run_answer_alignment(tmp_path / "run", labels)


def test_a_prompt_with_a_unicode_line_separator_is_one_prediction(tmp_path):
    """Predictions are written with ensure_ascii=False: a review holding U+2028 stays one line of the file."""
    write_run(tmp_path / "run", {"news": {}, "reviews": {"news": [{**line("World"), "prompt": "a\u2028b\x85c"}]}},
              ["news", "reviews"])
    result = run_answer_alignment(tmp_path / "run", {"news": ("World", "Sports"), "reviews": ("positive",)})
    assert result["final_old"]["own_label"] == 100.0


def test_grid_answer_alignment_means_over_runs_and_names_what_it_left_out(tmp_path):
    labels = {"news": ("World", "Sports"), "reviews": ("positive", "negative")}
    all_wrong = [line("positive"), line("positive")]                     # news answered with reviews' label
    half = [line("World", 100.0), line("Sports")]                       # 50 correct / 50 own
    write_run(tmp_path / "a", {"news": {}, "reviews": {"news": all_wrong}}, ["news", "reviews"])
    write_run(tmp_path / "b", {"news": {}, "reviews": {"news": half}}, ["news", "reviews"])
    write_run(tmp_path / "joint", {"joint": {"news": half}}, ["news", "reviews"])
    write_run(tmp_path / "old", {"news": {}, "reviews": {}}, ["news", "reviews"])  # no predictions written
    grid = grid_answer_alignment([("seq", tmp_path / "a"), ("seq", tmp_path / "b"), ("mtl", tmp_path / "joint"),
                                  ("ewc", tmp_path / "old")], lambda folder: labels)
    seq = grid["methods"]["seq"]
    assert seq["runs"] == 2 and (seq["correct"], seq["own_label"], seq["other_task_label"]) == (25.0, 25.0, 50.0)
    assert seq["other_task_label_by_task"] == {"news": 50.0}
    assert list(grid["methods"]) == ["seq"]
    assert [(s["method"], s["why"]) for s in grid["skipped"]] == [
        ("mtl", "one stage: no old tasks"), ("ewc", "no predictions of its old tasks after its last stage")]
    text = answer_table_markdown(grid)
    assert "| seq | 2 | 25.0 | 25.0 | 50.0 | 0.0 | 0.0 |" in text and "| seq | 50.0 |" in text
    assert "- mtl: joint (one stage: no old tasks)" in text


def test_a_run_whose_folder_is_gone_keeps_the_numbers_an_earlier_analysis_gave_it(tmp_path):
    """Run folders do not outlive their machine: the earlier result stands in for them, and a run nobody sorted is
    named, never counted as zero."""
    labels = {"news": ("World", "Sports"), "reviews": ("positive", "negative")}
    write_run(tmp_path / "a", {"news": {}, "reviews": {"news": [line("positive"), line("positive")]}},
              ["news", "reviews"])                                              # 0 / 0 / 100 / 0
    write_run(tmp_path / "joint", {"joint": {"news": [line("World", 100.0)]}}, ["news", "reviews"])
    earlier = grid_answer_alignment([("seq", tmp_path / "a"), ("mtl", tmp_path / "joint")], lambda folder: labels)
    assert [r["folder"] for r in earlier["runs"]] == [str(tmp_path / "a")]
    shutil.rmtree(tmp_path / "a")
    shutil.rmtree(tmp_path / "joint")
    write_run(tmp_path / "b", {"news": {}, "reviews": {"news": [line("World", 100.0), line("Sports")]}},
              ["news", "reviews"])                                              # 50 / 50 / 0 / 0
    runs = [("seq", tmp_path / "a"), ("seq", tmp_path / "b"), ("mtl", tmp_path / "joint"), ("ewc", tmp_path / "gone")]
    grid = grid_answer_alignment(runs, lambda folder: labels, earlier)
    seq = grid["methods"]["seq"]
    assert seq["runs"] == 2 and (seq["correct"], seq["own_label"], seq["other_task_label"]) == (25.0, 25.0, 50.0)
    assert seq["folders"] == [str(tmp_path / "a"), str(tmp_path / "b")]
    assert [(s["method"], s["why"]) for s in grid["skipped"]] == [
        ("mtl", "one stage: no old tasks"), ("ewc", "its folder is gone and no earlier analysis sorted it")]
    # Without the earlier result, the gone run is left out and named; the mean is over the run that is there.
    alone = grid_answer_alignment(runs, lambda folder: labels)
    assert alone["methods"]["seq"]["runs"] == 1 and alone["methods"]["seq"]["correct"] == 50.0
    assert ("seq", "its folder is gone and no earlier analysis sorted it") in \
        [(s["method"], s["why"]) for s in alone["skipped"]]


def test_analyze_answers_needs_no_checkpoints_and_no_model(cl_root, tmp_path, monkeypatch, capsys):
    """On a real run (no checkpoints; an encoder choosing among every label of the run), every answer is a label, and
    the correct share of every task equals the score the run recorded."""
    monkeypatch.setenv("CONTINUAL_LM_CACHE", str(tmp_path / "cache"))
    raw = tiny_config(cl_root, "bert", "encoder", max_steps=3)
    raw["model"]["label_space"] = "all"
    record, folder = run_experiment(parse_config(raw), tmp_path / "run")

    def no_model(*args, **kwargs):
        raise AssertionError("the answers analysis built a model")
    monkeypatch.setattr(run_loader, "prepare_backbone", no_model)
    assert main(["analyze", str(folder), "--what", "answers"]) == 0
    result = json.loads((folder / "analysis" / "answers.json").read_text())
    final = result["stages"][record.stages[-1]]  # a run writes the predictions of its last stage
    for j, task in enumerate(record.tasks):
        assert final[task]["correct"] == pytest.approx(record.acc_matrix[-1][j])
        assert final[task]["other"] == 0.0
    assert final["agnews"]["other_task_label"] + final["agnews"]["own_label"] > 0  # it is wrong somewhere
    assert "answers   old tasks after amazon: correct" in capsys.readouterr().out
    assert (folder / "analysis" / "answers.png").stat().st_size > 0


def test_analyze_answers_says_why_it_sorted_nothing(tmp_path, capsys):
    """Issue 29 (15): on a TRACE-like run (open answers) the console said only "answers written"."""
    import yaml
    from continual_lm.cli import main
    for name in ("qa1", "qa2"):
        (tmp_path / "data" / name).mkdir(parents=True)
        rows = [{"prompt": f"{name} question {i}\nAnswer:", "answer": f"a{i % 2}"} for i in range(6)]
        for split in ("train", "test"):
            (tmp_path / "data" / name / f"{split}.json").write_text(json.dumps(rows))
    config = {"name": "open", "seed": 0,
              "model": {"kind": "causal", "tiny": {"arch": "gpt", "layers": 1, "width": 16, "heads": 2},
                        "max_length": 32, "max_new_tokens": 3},
              "data": {"benchmark": "custom", "data_dir": str(tmp_path / "data"), "tasks": ["qa1", "qa2"]},
              "training": {"max_steps": 1, "batch_size": 2}, "method": {"name": "seq"}}
    (tmp_path / "c.yaml").write_text(yaml.safe_dump(config))
    assert main(["run", "--config", str(tmp_path / "c.yaml"), "--out", str(tmp_path / "run")]) == 0
    capsys.readouterr()
    assert main(["analyze", str(tmp_path / "run"), "--what", "answers"]) == 0
    out = capsys.readouterr().out
    assert "answers   nothing sorted: its old tasks ['qa1'] have no labels (open answers)" in out
