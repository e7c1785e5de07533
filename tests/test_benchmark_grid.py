"""The benchmark grids' pooling rules (benchmarks/_cl.py): which results files may be merged, and how."""
import json
import re
import sys
from pathlib import Path
from types import SimpleNamespace

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
import _cl  # noqa: E402
from _cl import merge_runs, read_runs, run_grid  # noqa: E402

SETTING = {"benchmark": "Standard CL", "backbone": "b", "n_train": 200, "n_test": 200}


def results_file(path: Path, runs: list[tuple], **setting) -> Path:
    rows = [{"order": o, "seed": s, "method": m, "op": op} for o, s, m, op in runs]
    path.write_text(json.dumps({"setting": {**SETTING, **setting}, "runs": rows}))
    return path


def test_merge_pools_complete_cells_in_grid_order(tmp_path, capsys):
    a = results_file(tmp_path / "a.json", [(2, 0, "mtl", 1.0), (2, 0, "seq", 2.0), (2, 0, "recurrent_kif", 0.0)])
    b = results_file(tmp_path / "b.json", [(1, 1, "seq", 3.0), (1, 0, "recurrent_kif", 4.0), (1, 0, "seq", 5.0),
                                           (1, 0, "mtl", 6.0)])
    rows = merge_runs([a, b], SETTING)
    assert [(r["order"], r["seed"], r["method"]) for r in rows] == [
        (1, 0, "seq"), (1, 0, "recurrent_kif"), (1, 0, "mtl"), (2, 0, "seq"), (2, 0, "recurrent_kif"), (2, 0, "mtl")]
    assert "left out order 1 seed 1: no run of mtl, recurrent_kif" in capsys.readouterr().err


def test_merge_refuses_duplicates_and_different_settings(tmp_path, capsys):
    a = results_file(tmp_path / "a.json", [(1, 0, "seq", 1.0)])
    with pytest.raises(SystemExit, match="a.json: run order 1 seed 0 seq is also in an earlier file"):
        merge_runs([a, a], SETTING)
    small = results_file(tmp_path / "small.json", [(1, 0, "seq", 1.0)], n_train=48)
    with pytest.raises(SystemExit, match="small.json: setting 'n_train' is 48, not 200"):
        read_runs(small, SETTING)
    (tmp_path / "bad.json").write_text("{")
    with pytest.raises(SystemExit, match="bad.json: not a benchmark results file"):
        read_runs(tmp_path / "bad.json", SETTING)


class FakeResult:
    """What run_grid reads of a RunResult, for a 2-task run."""
    tasks, initial, acc_matrix = ["a", "b"], [0.0, 0.0], [[80.0, 10.0], [60.0, 90.0]]

    def to_json(self) -> dict:
        return {"op": 75.0, "bwt": -20.0, "fwt": 10.0, "acc_matrix": self.acc_matrix, "seconds": 1.0}


def fake_load_config(path, overrides):
    method = next(o.split("=", 1)[1] for o in overrides if o.startswith("method.name="))
    return SimpleNamespace(method=SimpleNamespace(name=method), method_params={}, resolved_method_params=dict)


def fake_run_experiment(cfg, folder):
    folder.mkdir(parents=True)
    (folder / "metrics.json").write_text("{}")
    return FakeResult(), folder


def test_grid_writes_run_folders_under_runs_and_skips_done_runs(tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(_cl, "load_config", fake_load_config)
    monkeypatch.setattr(_cl, "run_experiment", fake_run_experiment)
    saved = []
    done = [{"order": 1, "seed": 0, "method": "seq", "op": 1.0}]
    rows = run_grid("standard_cl.yaml", [1], [0, 1], ["seq", "mtl"], [], 1, saved.append, done, tmp_path / "runs")
    assert [(r["order"], r["seed"], r["method"]) for r in rows] == [(1, 0, "seq"), (1, 0, "mtl"), (1, 1, "seq"),
                                                                   (1, 1, "mtl")]
    assert sorted(p.name for p in (tmp_path / "runs").iterdir()) == ["order1-seed0-mtl", "order1-seed1-mtl",
                                                                    "order1-seed1-seq"]
    assert rows[1]["folder"] == str(tmp_path / "runs" / "order1-seed0-mtl") and rows[1]["la"] == 85.0
    assert len(saved) == 3 and len(saved[-1]) == 4  # the results file is rewritten after every run
    # A finished run folder the results file does not list is refused before anything runs.
    with pytest.raises(SystemExit, match="order1-seed0-mtl: holds a finished run that the results file does not list"):
        run_grid("standard_cl.yaml", [1], [0], ["mtl"], [], 1, saved.append, [], tmp_path / "runs")
    assert len(saved) == 3


def test_grid_refuses_a_bad_override_before_running_anything(tmp_path, monkeypatch):
    def must_not_run(cfg, folder):
        raise AssertionError("a run started")
    monkeypatch.setattr(_cl, "run_experiment", must_not_run)
    for override, message in [("trainin.lr=2", "trainin: Extra inputs are not permitted"),
                              ("method_params.recurrent_kif.top_fraction=2",
                               "method.params.top_fraction: 2 is outside (0, 1]")]:
        with pytest.raises(SystemExit, match=re.escape(message)):
            run_grid("standard_cl.yaml", [1], [0], ["seq", "recurrent_kif"], [override], 1, print, [], tmp_path)
