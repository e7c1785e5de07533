"""Grids (experiments/grid.py): cells and their configs, method entries, resuming, merging, and the CLI."""
import json
import re

import pytest
import yaml
from conftest import tiny_config

from continual_lm.cli import main
from continual_lm.errors import ConfigError, DataError
from continual_lm.experiments import grid as grid_module
from continual_lm.experiments.grid import Grid, folder_safe, grid_from_file, merge_runs, run_grid
from continual_lm.experiments.runner import configured_method
from continual_lm.methods import split_method_spec
from continual_lm.reporting.run_folder import RunRecord


def test_method_entries():
    assert split_method_spec("seq") == ("seq", {})
    assert split_method_spec("recurrent_kif:reference_code") == ("recurrent_kif", {"variant": "reference_code"})
    assert split_method_spec("task_vector(end_step=20, alpha=0.2)") == ("task_vector", {"end_step": 20, "alpha": 0.2})
    assert split_method_spec("freeze(early_stop=true,val_source=train)") == ("freeze", {"early_stop": True,
                                                                                        "val_source": "train"})
    assert split_method_spec("tasl:ours(top_fraction=0.3)") == ("tasl", {"variant": "ours", "top_fraction": 0.3})
    with pytest.raises(ConfigError, match="is not KEY=VALUE"):
        split_method_spec("ewc(1000)")
    assert folder_safe("task_vector(end_step=20,alpha=0.2)") == "task_vector-end_step20-alpha0.2"
    from continual_lm.experiments.benchmark import method_entries
    assert method_entries("seq, task_vector(end_step=20,alpha=0.2),ewc") == ["seq", "task_vector(end_step=20,alpha=0.2)",
                                                                             "ewc"]


def test_cell_configs_carry_axes_entries_and_overrides(cl_root):
    base = tiny_config(cl_root, method="recurrent_kif", params={"q": 3})
    grid = Grid(base, "toy.yaml", ["recurrent_kif", "recurrent_kif:reference_code", "ewc(lambda_ewc=5)"], [0, 1],
                overrides=["training.lr=0.01"], threads=1)
    assert len(grid.cells()) == 6
    cfg = grid.config(None, 1, "recurrent_kif")
    assert (cfg.seed, cfg.method.name, cfg.method.params, cfg.training.lr, cfg.training.num_threads) == \
        (1, "recurrent_kif", {"q": 3}, 0.01, 1)                              # the config's own method keeps its params
    assert grid.config(None, 0, "recurrent_kif:reference_code").method.params == {"q": 3, "variant": "reference_code"}
    assert grid.config(None, 0, "ewc(lambda_ewc=5)").method.params == {"lambda_ewc": 5}  # another method: its own
    assert "seed" not in grid.setting()["resolved"] and "data_dir" not in grid.setting()["resolved"]["data"]


class FakeRecord:
    pass


def fake_run_experiment(cfg, folder, resume=False):
    from continual_lm.config import dump_config
    folder.mkdir(parents=True)
    acc = [[80.0, 10.0], [60.0, 90.0]]
    record = RunRecord(method=cfg.method.name, tasks=["a", "b"], stages=["a", "b"], acc_matrix=acc, initial=[0.0, 0.0],
                       op=75.0, bwt=-20.0, fwt=10.0, seconds=1.0,
                       method_params=configured_method(cfg).params.model_dump(mode="json"))
    (folder / "config.yaml").write_text(dump_config(cfg))
    (folder / "metrics.json").write_text(json.dumps(record.to_json()))
    return record, folder


def test_grid_runs_resumes_and_refuses_unlisted_finished_folders(cl_root, tmp_path, monkeypatch):
    monkeypatch.setattr(grid_module, "run_experiment", fake_run_experiment)
    base = tiny_config(cl_root)
    out = tmp_path / "res.json"
    first = run_grid(Grid(base, "toy.yaml", ["seq", "mtl"], [0]), out, tmp_path / "runs", echo=lambda line: None)
    assert [(r["seed"], r["method"]) for r in first["runs"]] == [(0, "seq"), (0, "mtl")]
    assert sorted(p.name for p in (tmp_path / "runs").iterdir()) == ["seed0-mtl", "seed0-seq"]
    run_grid(Grid(base, "toy.yaml", ["seq"], [0]), tmp_path / "cmp.json", tmp_path / "cmp", folder_per_method=True)
    assert [p.name for p in (tmp_path / "cmp").iterdir()] == ["seq"]
    with pytest.raises(ConfigError, match="exists; pass --resume"):
        run_grid(Grid(base, "toy.yaml", ["seq"], [0]), out, tmp_path / "runs2")
    calls = []
    monkeypatch.setattr(grid_module, "run_experiment", lambda cfg, folder, resume=False: (calls.append(folder.name),
                                                                            fake_run_experiment(cfg, folder))[1])
    second = run_grid(Grid(base, "toy.yaml", ["seq", "mtl"], [0, 1]), out, tmp_path / "runs3", resume=True,
                      echo=lambda line: None)
    assert calls == ["seed1-seq", "seed1-mtl"]                                      # seed 0 was done
    assert len(second["runs"]) == 4 and second["runs"][1]["la"] == 85.0
    assert json.loads(out.read_text())["methods"]["seq"]["runs"] == 2
    (tmp_path / "runs4" / "seed2-seq").mkdir(parents=True)
    (tmp_path / "runs4" / "seed2-seq" / "metrics.json").write_text("{}")
    with pytest.raises(ConfigError, match="holds a finished run that .* does not list.*pass --resume to adopt it"):
        run_grid(Grid(base, "toy.yaml", ["seq"], [2]), tmp_path / "other.json", tmp_path / "runs4")
    # A finished folder the results file does not list (a grid stopped between the run and the write) is adopted by
    # --resume when its config is the cell's; another config is refused.
    monkeypatch.setattr(grid_module, "run_experiment", lambda cfg, folder, resume=False: pytest.fail("adopted runs do not run"))
    adopted = run_grid(Grid(base, "toy.yaml", ["seq", "mtl"], [0]), tmp_path / "again.json", tmp_path / "runs",
                       resume=True, echo=lambda line: None)
    assert [r["method"] for r in adopted["runs"]] == ["seq", "mtl"] and adopted["runs"][0]["op"] == 75.0
    with pytest.raises(ConfigError, match="whose config.yaml is not this cell's"):
        run_grid(Grid(base, "toy.yaml", ["seq"], [0], overrides=["training.lr=0.5"]), tmp_path / "o2.json",
                 tmp_path / "runs", resume=True)
    with pytest.raises(DataError, match="another setting .*'training'"):
        run_grid(Grid(base, "toy.yaml", ["seq"], [0], overrides=["training.lr=0.5"]), out, resume=True)
    # Another method's parameters cannot change a run: a folder made before they were added is still this cell's;
    # the run's own method's parameters can.
    tuned = {**base, "method_params": {"ewc": {"lambda_ewc": 5.0}}}
    again = run_grid(Grid(tuned, "toy.yaml", ["seq"], [0]), tmp_path / "tuned.json", tmp_path / "runs", resume=True,
                     echo=lambda line: None)
    assert [r["method"] for r in again["runs"]] == ["seq"]
    monkeypatch.setattr(grid_module, "run_experiment", fake_run_experiment)
    run_grid(Grid(tuned, "toy.yaml", ["ewc"], [0]), tmp_path / "ewc.json", tmp_path / "runs5", echo=lambda line: None)
    with pytest.raises(ConfigError, match="whose config.yaml is not this cell's"):
        run_grid(Grid({**base, "method_params": {"ewc": {"lambda_ewc": 7.0}}}, "toy.yaml", ["ewc"], [0]),
                 tmp_path / "ewc2.json", tmp_path / "runs5", resume=True)
    # A run records its method's parameters with their defaults: one made under another default is not this cell's.
    metrics = tmp_path / "runs5" / "seed0-ewc" / "metrics.json"
    made = json.loads(metrics.read_text())
    assert made["method_params"] == {"lr": None, "lambda_ewc": 5.0, "gamma": 1.0, "fisher_batches": 16,
                                     "fisher_norm": "none"}
    run_grid(Grid(tuned, "toy.yaml", ["ewc"], [0]), tmp_path / "ewc3.json", tmp_path / "runs5", resume=True,
             echo=lambda line: None)
    metrics.write_text(json.dumps({**made, "method_params": {**made["method_params"], "lambda_ewc": 6.0}}))
    with pytest.raises(ConfigError, match="whose config.yaml is not this cell's"):
        run_grid(Grid(tuned, "toy.yaml", ["ewc"], [0]), tmp_path / "ewc4.json", tmp_path / "runs5", resume=True)


def test_a_bad_override_or_parameter_stops_before_any_run(cl_root, tmp_path, monkeypatch):
    def must_not_run(cfg, folder, resume=False):
        raise AssertionError("a run started")
    monkeypatch.setattr(grid_module, "run_experiment", must_not_run)
    base = tiny_config(cl_root)
    for grid, message in [(Grid(base, "t", ["seq"], [0], overrides=["trainin.lr=2"]), "trainin: Extra inputs"),
                          (Grid(base, "t", ["seq", "recurrent_kif(top_fraction=2)"], [0]),
                           "method.params.top_fraction: 2"),
                          (Grid(base, "t", ["seq", "nosuch"], [0]), "unknown method 'nosuch'")]:
        with pytest.raises(ConfigError, match=re.escape(message)):
            run_grid(grid, tmp_path / "x.json", tmp_path / "runs")


def results_file(path, setting, cells):
    rows = [{"order": o, "seed": s, "method": m, "op": op, "bwt": None, "fwt": None, "la": None, "f": None, "ap": None,
             "seconds": 1.0, "run": f"{m}{o}{s}", "tasks": ["a"], "acc_matrix": [[op]], "initial": [0.0]}
            for o, s, m, op in cells]
    path.write_text(json.dumps({"setting": setting, "runs": rows}))
    return path


def test_merge_pools_complete_cells_and_refuses_duplicates_and_other_settings(tmp_path):
    setting = {"config": "c.yaml", "overrides": [], "resolved": {"training": {"lr": 0.1}}}
    a = results_file(tmp_path / "a.json", setting, [(2, 0, "mtl", 1.0), (2, 0, "seq", 2.0)])
    b = results_file(tmp_path / "b.json", setting, [(1, 1, "seq", 3.0), (1, 0, "mtl", 6.0), (1, 0, "seq", 5.0)])
    lines = []
    merged_setting, rows = merge_runs([a, b], echo=lines.append)
    assert sorted((r["order"], r["seed"], r["method"]) for r in rows) == [(1, 0, "mtl"), (1, 0, "seq"), (2, 0, "mtl"),
                                                                          (2, 0, "seq")]
    assert lines == ["left out order1-seed1: no run of mtl"] and merged_setting == setting
    with pytest.raises(DataError, match="a.json: run order2-seed0-mtl is also in an earlier file"):
        merge_runs([a, a])
    other = results_file(tmp_path / "o.json", {**setting, "resolved": {"training": {"lr": 0.2}}}, [(3, 0, "seq", 1.0)])
    with pytest.raises(DataError, match=re.escape("o.json: its runs were made with another setting (config keys ['training']")):
        merge_runs([a, other])
    (tmp_path / "bad.json").write_text("{")
    with pytest.raises(DataError, match="bad.json: not a grid results file"):
        merge_runs([tmp_path / "bad.json"])
    # A setting added since a file was written takes its default there: at the default it pools, otherwise not.
    newer = {**setting, "resolved": {"training": {"lr": 0.1, "save_every": 50, "report_to": []}}}
    n = results_file(tmp_path / "n.json", newer, [(3, 0, "mtl", 1.0), (3, 0, "seq", 1.0)])
    assert len(merge_runs([a, n])[1]) == 4 and len(merge_runs([n, a])[1]) == 4
    changed = results_file(tmp_path / "c.json", {**setting, "resolved": {"training": {"lr": 0.1, "save_every": 7}}},
                           [(3, 0, "seq", 1.0)])
    with pytest.raises(DataError, match="another setting"):
        merge_runs([a, changed])


def test_grid_command_end_to_end_and_merge(cl_root, tmp_path, capsys):
    cfg = tmp_path / "c.yaml"
    cfg.write_text(yaml.safe_dump(tiny_config(cl_root, max_steps=2)))
    for seeds, out in (("0", "s0.json"), ("1", "s1.json")):
        assert main(["grid", str(cfg), "--methods", "seq,ewc", "--seeds", seeds, "--runs", str(tmp_path / "runs"),
                     "--out", str(tmp_path / out)]) == 0
    assert main(["grid", "--merge", str(tmp_path / "s0.json"), str(tmp_path / "s1.json"),
                 "--out", str(tmp_path / "all.json")]) == 0
    merged = json.loads((tmp_path / "all.json").read_text())
    assert merged["methods"]["ewc"]["runs"] == 2 and merged["paired_vs_seq"]["ewc"]["cells"] == 2
    assert "| ewc | 2 |" in (tmp_path / "all.md").read_text()
    assert (tmp_path / "all_methods.png").stat().st_size > 0 and not (tmp_path / "all_curve.png").exists()
    assert main(["grid", "--merge", str(tmp_path / "s0.json"), str(tmp_path / "s0.json"), "--out",
                 str(tmp_path / "dup.json")]) == 2
    assert "is also in an earlier file" in capsys.readouterr().err
    # the run folders are ordinary run folders: compare reads them
    assert main(["compare", *map(str, sorted((tmp_path / "runs").iterdir())), "--paired", "seq"]) == 0
    assert "| ewc | 2 |" in capsys.readouterr().out


def test_grid_from_file_names_a_bad_file(tmp_path):
    with pytest.raises(ConfigError, match="config file not found"):
        grid_from_file(tmp_path / "none.yaml", ["seq"], [0])


def test_method_parameters_are_per_label_not_per_setting(tmp_path):
    setting = {"config": "c.yaml", "overrides": [], "resolved": {"training": {"lr": 0.1}}}
    a = results_file(tmp_path / "a.json", {**setting, "resolved": {**setting["resolved"], "method_params": {"x": 1}}},
                     [(1, 0, "seq", 1.0)])
    b = results_file(tmp_path / "b.json", setting, [(1, 0, "ewc", 2.0)])
    assert len(merge_runs([a, b], echo=lambda line: None)[1]) == 2       # an older file's method_params do not count
    rows = json.loads(b.read_text())
    rows["runs"][0]["method_params"] = {"lambda_ewc": 1.0}
    b.write_text(json.dumps(rows))
    c = results_file(tmp_path / "c.json", setting, [(2, 0, "ewc", 3.0), (2, 0, "seq", 3.0)])
    rows = json.loads(c.read_text())
    rows["runs"][0]["method_params"] = {"lambda_ewc": 5.0}
    c.write_text(json.dumps(rows))
    with pytest.raises(DataError, match="runs labelled 'ewc' were made with different method parameters"):
        merge_runs([b, c])


def test_grid_resume_continues_unfinished_runs_from_their_resume_point(cl_root, tmp_path, monkeypatch):
    from continual_lm.config import dump_config
    base = tiny_config(cl_root)
    grid = Grid(base, "toy.yaml", ["seq", "mtl"], [0])
    runs = tmp_path / "runs"
    for method, with_point in (("seq", True), ("mtl", False)):
        folder = runs / f"seed0-{method}"
        (folder / "resume").mkdir(parents=True)
        (folder / "config.yaml").write_text(dump_config(grid.config(None, 0, method)))
        if with_point:
            (folder / "resume" / "state.json").write_text("{}")
    calls = []

    def fake(cfg, folder, resume=False):
        calls.append((folder.name, resume, (folder / "config.yaml").exists()))
        return fake_run_experiment(cfg, folder / "done")[0], folder
    monkeypatch.setattr(grid_module, "run_experiment", fake)
    run_grid(grid, tmp_path / "r.json", runs, resume=True, echo=lambda line: None)
    # seq goes on from its point; mtl, killed before its first point, starts again in a cleared folder
    assert calls == [("seed0-seq", True, True), ("seed0-mtl", False, False)]
    # a resumed run's seconds are the whole run's (its record counts the time before the interruption), not the rest's
    seconds = {r["method"]: r["seconds"] for r in json.loads((tmp_path / "r.json").read_text())["runs"]}
    assert seconds["seq"] == 1.0 and seconds["mtl"] < 1.0


def test_two_task_grids_with_a_curve_plot_it(tmp_path):
    from continual_lm.experiments.grid import summarise
    rows = [{"run": f"seed{s}-{m}", "method": m, "seed": s, "order": None, "tasks": ["task0", "task1"],
             "acc_matrix": [[60.0, 5.0], [v, 95.0]], "initial": [0.0, 0.0], "op": (v + 95) / 2, "bwt": v - 60,
             "fwt": 5.0, "la": 77.5, "f": 60 - v, "ap": 70.0, "seconds": 1.0 + 10.0 * (s == 0),
             "curve": {"task1": {"0": 60.0, "10": v + 5, "end": v}},
             "timing": {"pretrain": 10.0 * (s == 0), "train": 0.5, "evaluation": 0.25, "curve": 0.125}}
            for s in (0, 1) for m, v in (("seq", 20.0), ("replay", 30.0))]
    summary = summarise(rows, {"config": "bio.yaml", "overrides": []}, tmp_path / "g.json", echo=lambda s: None)
    assert summary["tasks"]["replay"]["curve"]["10"]["mean"] == 35.0
    assert (tmp_path / "g_curve.png").stat().st_size > 0 and (tmp_path / "g_methods.png").stat().st_size > 0
    # pretrain (10 + 0) / 2; total (11 + 1) / 2; other: 6 − 5 − 0.875
    assert summary["timing"]["seq"] == {"pretrain": 5.0, "train": 0.5, "evaluation": 0.2, "curve": 0.1, "other": 0.1,
                                        "total": 6.0, "runs": 2}


def test_the_phase_table_says_how_many_runs_it_averages(tmp_path):
    """Runs made before runs recorded phase timings are left out of the phase table; it says so, so its totals are not
    read as the same mean as the "seconds / run" column."""
    from continual_lm.experiments.grid import summarise
    rows = [{"run": f"seed{s}-seq", "method": "seq", "seed": s, "order": None, "tasks": ["task0", "task1"],
             "acc_matrix": [[60.0, 5.0], [20.0, 95.0]], "initial": [0.0, 0.0], "op": 57.5, "bwt": -40.0, "fwt": 5.0,
             "la": 77.5, "f": 40.0, "ap": 70.0, "seconds": 4.0 + 8.0 * s,
             **({"timing": {"train": 3.0, "evaluation": 1.0}} if s else {})} for s in (0, 1)]
    summary = summarise(rows, {"config": "bio.yaml", "overrides": []}, tmp_path / "g.json", echo=lambda s: None)
    assert summary["methods"]["seq"]["seconds"]["mean"] == 8.0
    assert summary["timing"]["seq"] == {"pretrain": 0.0, "train": 3.0, "evaluation": 1.0, "curve": 0.0, "other": 8.0,
                                        "total": 12.0, "runs": 1}
    text = (tmp_path / "g.md").read_text()
    assert "| method | timed runs | pretrain |" in text and "| seq | 1 | 0.0 | 3.0 | 1.0 | 0.0 | 8.0 | 12.0 |" in text


def test_runs_in_worker_processes_equal_runs_one_at_a_time(cl_root, tmp_path):
    """``workers=2``: the same rows (a one-thread run is the same run in any process), each run's console in its
    folder, none on the terminal."""
    base = tiny_config(cl_root, max_steps=3)
    lines: list[str] = []
    serial = run_grid(Grid(base, "toy.yaml", ["seq", "ewc", "replay"], [0], threads=1), tmp_path / "a.json",
                      tmp_path / "a", echo=lambda line: None)
    parallel = run_grid(Grid(base, "toy.yaml", ["seq", "ewc", "replay"], [0], threads=1), tmp_path / "b.json",
                        tmp_path / "b", echo=lines.append, workers=2)
    assert [(r["method"], r["acc_matrix"], r["op"]) for r in parallel["runs"]] == \
        [(r["method"], r["acc_matrix"], r["op"]) for r in serial["runs"]]
    assert all((tmp_path / "b" / f"seed0-{m}" / "console.log").exists() for m in ("seq", "ewc", "replay"))
    assert "after amazon" in (tmp_path / "b" / "seed0-seq" / "console.log").read_text()
    assert any("3 runs in 2 processes" in line for line in lines)
    assert sum(line.startswith("== seed0-") for line in lines) == 3


def test_grids_pair_every_method_with_seq_and_with_replay(tmp_path):
    """The paper's claims are against SeqLoRA and LoRAReplay: a grid's results pair each method with both (same cell),
    hand-computed: x − replay on seeds 0 and 1 is +4 and +8 (mean +6, standard error: sample std 2√2 / √2 = 2)."""
    from continual_lm.experiments.grid import summarise
    op = {("seq", 0): 40.0, ("seq", 1): 42.0, ("replay", 0): 60.0, ("replay", 1): 58.0, ("x", 0): 64.0, ("x", 1): 66.0}
    rows = [{"run": f"seed{s}-{m}", "method": m, "seed": s, "order": 1, "tasks": ["a", "b"],
             "acc_matrix": [[v, 0.0], [v, v]], "initial": [0.0, 0.0], "op": v, "bwt": None, "fwt": None, "la": None,
             "f": None, "ap": None, "seconds": 1.0} for (m, s), v in op.items()]
    summary = summarise(rows, {"config": "g.yaml", "overrides": []}, tmp_path / "g.json", echo=lambda s: None)
    assert summary["paired_vs_replay"]["x"]["op"] == {"mean": 6.0, "se": 2.0}
    assert summary["paired_vs_replay"]["seq"]["op"] == {"mean": -18.0, "se": 2.0}
    assert summary["paired_vs_seq"]["x"]["op"] == {"mean": 24.0, "se": 0.0}
    text = (tmp_path / "g.md").read_text()
    assert "| method | cells | OP − replay |" in text and "| x | 2 | +6.0 ± 2.0 |" in text
