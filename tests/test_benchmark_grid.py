"""The benchmark grids' pooling rules (benchmarks/_cl.py): which results files may be merged, and how."""
import json
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
from _cl import merge_runs, read_runs  # noqa: E402

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
