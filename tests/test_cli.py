import json
import subprocess
import sys

import yaml
from conftest import tiny_config

from continual_lm.cli import main
from continual_lm.methods import METHODS


def test_list_shows_every_method(capsys):
    assert main(["list"]) == 0
    out = capsys.readouterr().out
    assert all(line.split()[0] in METHODS for line in out.strip().splitlines())
    assert {line.split()[0] for line in out.strip().splitlines()} == set(METHODS)


def test_run_config_and_compare(cl_root, tmp_path, capsys):
    cfg_path = tmp_path / "c.yaml"
    cfg_path.write_text(yaml.safe_dump(tiny_config(cl_root, max_steps=2)))
    assert main(["run", "--config", str(cfg_path), "--out", str(tmp_path / "r1")]) == 0
    assert main(["run", "--config", str(cfg_path), "--out", str(tmp_path / "r2"), "--set", "method.name=replay"]) == 0
    capsys.readouterr()
    assert main(["compare", str(tmp_path / "r1"), str(tmp_path / "r2")]) == 0
    out = capsys.readouterr().out
    metrics = json.loads((tmp_path / "r2" / "metrics.json").read_text())
    lo, hi = metrics["op_ci95"]  # issue 29 (16): the interval every metrics.json carries
    assert metrics["device"] == "cpu"  # where the numbers were made (a GPU run says "cuda (<its name>)")
    assert f"| r2 | toy | replay | {metrics['op']:.1f} | {lo:.1f}–{hi:.1f} |" in out and "| r1 | toy | seq |" in out
    assert "| OP | OP 95% CI | BWT |" in out
    # a folder of runs stands for the runs in it; an unfinished one is left out with a warning
    (tmp_path / "r3").mkdir()
    (tmp_path / "r3" / "config.yaml").write_text("seed: 0\n")
    assert main(["compare", str(tmp_path)]) == 0
    captured = capsys.readouterr()
    assert "| r1 | toy | seq |" in captured.out and "| r2 | toy | replay |" in captured.out
    assert "r3: not a finished run (no metrics.json); left out" in captured.err


def test_run_several_methods_prints_the_comparison(cl_root, tmp_path, capsys):
    cfg_path = tmp_path / "c.yaml"
    cfg_path.write_text(yaml.safe_dump(tiny_config(cl_root, max_steps=2)))
    assert main(["run", "--config", str(cfg_path), "--methods", "seq,ewc", "--out", str(tmp_path / "cmp")]) == 0
    out = capsys.readouterr().out
    assert "| seq | toy-seed0-seq | seq |" in out and "| ewc | toy-seed0-ewc | ewc |" in out
    assert (tmp_path / "cmp" / "ewc" / "metrics.json").exists()


def test_bad_input_is_one_line_error(cl_root, tmp_path):
    cfg_path = tmp_path / "c.yaml"
    cfg_path.write_text(yaml.safe_dump(tiny_config(cl_root, method="nonexistent")))
    for argv, expected in [
        (["run", "--config", str(cfg_path), "--out", str(tmp_path / "x")], "method.name: unknown method 'nonexistent'"),
        (["run", "--config", str(tmp_path / "missing.yaml")], "missing.yaml: config file not found"),
        (["run", "--config", str(cfg_path), "--set", "training.batch_size=0"], "training.batch_size"),
        (["run", "--config", str(cfg_path), "--set", "model.path=/no/such/model", "--set", "model.tiny=null",
          "--set", "method.name=seq", "--out", str(tmp_path / "y")],
         "model.path: /no/such/model does not exist"),
        (["compare", str(tmp_path)], "none of the folders given holds a finished run"),
        (["run", "--config", str(cfg_path), "--set", "method.name=seq", "--set", "method_params={sequ: {}}",
          "--out", str(tmp_path / "z")], "method_params: unknown method(s) ['sequ']"),
        (["run", "--config", str(cfg_path), "--set", "method.name=seq", "--methods", "seq,ewc", "--workers", "0",
          "--out", str(tmp_path / "w")], "--workers 0: must be at least 1"),
    ]:
        proc = subprocess.run([sys.executable, "-m", "continual_lm.cli", *argv], capture_output=True, text=True)
        assert proc.returncode == 2, proc.stderr
        lines = [line for line in proc.stderr.strip().splitlines() if not line.startswith("warning:")]
        assert len(lines) == 1 and lines[0].startswith("error:") and expected in lines[0], proc.stderr


def test_malformed_yaml_and_unknown_key(tmp_path):
    from continual_lm.config import load_config
    from continual_lm.errors import ConfigError
    import pytest
    p = tmp_path / "bad.yaml"
    p.write_text("model: [unclosed")
    with pytest.raises(ConfigError, match="bad.yaml: malformed YAML"):
        load_config(p)
    p.write_text(yaml.safe_dump({"model": {"kind": "causal", "tiny": {}}, "trainin": {}}))
    with pytest.raises(ConfigError, match="bad.yaml: trainin: Extra inputs are not permitted"):
        load_config(p)
    p.write_text(yaml.safe_dump({"model": {"kind": "encoder", "tiny": {"arch": "bert"}}, "data": {"benchmark": "biography"}}))
    with pytest.raises(ConfigError, match="biography benchmark needs a causal LM"):
        load_config(p)


def test_compare_paired_hand_computed(tmp_path, capsys):
    """Runs pair by (task sequence, seed): b − a over two seeds is OP +2 and +4 → +3.0 ± 1.0."""
    def fake_run(name, method, seed, op, tasks=("x", "y")):
        folder = tmp_path / name
        folder.mkdir()
        (folder / "config.yaml").write_text(yaml.safe_dump({"seed": seed, "method": {"name": method}}))
        (folder / "metrics.json").write_text(json.dumps({
            "method": method, "tasks": list(tasks), "op": op, "bwt": 0.0, "fwt": 0.0, "seconds": 1.0,
            "acc_matrix": [[op, 0.0], [op, op]]}))
        return str(folder)
    runs = [fake_run("a0", "a", 0, 50.0), fake_run("a1", "a", 1, 60.0), fake_run("b0", "b", 0, 52.0),
            fake_run("b1", "b", 1, 64.0), fake_run("b2", "b", 2, 99.0), fake_run("b0r", "b", 0, 99.0, ("y", "x"))]
    assert main(["compare", *runs, "--paired", "a"]) == 0
    out = capsys.readouterr().out
    assert "| b | 4 | 78.5 ± 20.9 |" in out  # --paired implies the per-method table (population std)
    # OP, BWT, F (0: a[0][0] = a[1][0]), AP (= op for this matrix), LA
    assert out.strip().splitlines()[-1] == "| b | 2 | +3.0 ± 1.0 | +0.0 ± 0.0 | +0.0 ± 0.0 | +3.0 ± 1.0 | +3.0 ± 1.0 |"
    proc = subprocess.run([sys.executable, "-m", "continual_lm.cli", "compare", *runs, "--paired", "c"],
                          capture_output=True, text=True)
    assert proc.returncode == 2 and proc.stderr.strip() == "error: --paired c: no run of that method among the runs given"


def test_readme_methods_table_is_the_registry(capsys):
    from pathlib import Path
    assert main(["list", "--markdown"]) == 0
    table = capsys.readouterr().out.strip()
    readme = (Path(__file__).resolve().parents[1] / "README.md").read_text()
    section = readme.split("<!-- methods:start -->\n")[1].split("\n<!-- methods:end -->")[0]
    assert section == table, "README's methods table is stale: paste `continual-lm list --markdown` into it"


def test_list_verbose_describes_typed_parameters(capsys):
    assert main(["list", "--verbose"]) == 0
    out = capsys.readouterr().out
    assert "top_fraction: float = 0.2 (> 0, <= 1) — share of coordinates each mask keeps" in out
    # issue 29 (19): a Literal shows its values, an Optional says so, with the bounds of its inner type
    assert "penalty: 'l1' | 'frobenius' = 'l1' — " in out
    assert "lr: float | None = None (> 0) — this method's learning rate" in out


def test_compare_paired_refuses_two_runs_of_one_cell_and_says_when_nothing_pairs(tmp_path, capsys):
    def fake_run(name, method, seed, tasks=("x", "y")):
        folder = tmp_path / name
        folder.mkdir()
        (folder / "config.yaml").write_text(yaml.safe_dump({"seed": seed, "method": {"name": method}}))
        (folder / "metrics.json").write_text(json.dumps({
            "method": method, "tasks": list(tasks), "op": 1.0, "bwt": 0.0, "fwt": 0.0, "seconds": 1.0,
            "acc_matrix": [[1.0, 0.0], [1.0, 1.0]]}))
        return str(folder)
    a, a2, b = fake_run("a", "a", 0), fake_run("a2", "a", 0), fake_run("b", "b", 1)
    assert main(["compare", a, a2, "--paired", "a"]) == 2
    assert "are both a on the same task order and seed; compare one of them" in capsys.readouterr().err
    assert main(["compare", a, b, "--paired", "a"]) == 0
    assert "nothing to pair" in capsys.readouterr().out
    # issue 29 (14): runs of different experiments (other tasks) are not pooled into one row; orders of one task set
    # are (a grid's orders 1-3)
    other, reordered = fake_run("c", "b", 0, ("x", "z")), fake_run("d", "b", 2, ("y", "x"))
    assert main(["compare", a, b, other, "--paired", "a"]) == 2
    err = capsys.readouterr().err
    assert "the runs are of different task sets (['x', 'y'] and ['x', 'z']); compare each experiment's runs" in err
    assert main(["compare", a, b, reordered, "--by-method"]) == 0


def test_compare_names_a_variant_as_the_grid_does(tmp_path, capsys):
    """Two variants of one method are two methods in a comparison (``recurrent_kif:reference_code``, as a grid names
    them): they pair with each other and are not pooled; the default variant keeps the bare name."""
    def fake_run(name, method, seed, op, params, recorded=True):
        folder = tmp_path / name
        folder.mkdir()
        (folder / "config.yaml").write_text(yaml.safe_dump({"seed": seed, "method": {"name": method, "params": params}}))
        (folder / "metrics.json").write_text(json.dumps({
            "method": method, "tasks": ["x", "y"], "op": op, "bwt": 0.0, "fwt": 0.0, "seconds": 1.0,
            "acc_matrix": [[op, 0.0], [op, op]], **({"method_params": params} if recorded else {})}))
        return str(folder)
    paper = {"variant": "paper", "q": 8}
    code = {"variant": "reference_code", "q": 8}
    # c0 predates runs recording their method_params: its config.yaml says which variant it ran
    runs = [fake_run("p0", "recurrent_kif", 0, 50.0, paper), fake_run("c0", "recurrent_kif", 0, 54.0, code, False),
            fake_run("p1", "recurrent_kif", 1, 60.0, paper), fake_run("c1", "recurrent_kif", 1, 62.0, code),
            fake_run("m0", "migu", 0, 40.0, {"variant": "ours"})]
    assert main(["compare", *runs, "--paired", "recurrent_kif"]) == 0
    out = capsys.readouterr().out.strip().splitlines()
    assert "| recurrent_kif | 2 | 55.0 ± 5.0 |" in "\n".join(out) and "| migu:ours | 1 | 40.0 ± 0.0 |" in "\n".join(out)
    assert out[-2:] == ["| recurrent_kif:reference_code | 2 | +3.0 ± 1.0 | +0.0 ± 0.0 | +0.0 ± 0.0 | +3.0 ± 1.0 | +3.0 ± 1.0 |",
                        "| migu:ours | 1 | -10.0 | +0.0 | +0.0 | -10.0 | -10.0 |"]
    assert main(["compare", *runs, "--paired", "recurrent_kif:reference_code"]) == 0
    assert capsys.readouterr().out.strip().splitlines()[-2].startswith("| recurrent_kif | 2 | -3.0 ± 1.0 |")


def test_a_run_written_to_a_file_is_plain_lines(cl_root, tmp_path):
    """Issue 29 (13): a progress bar written to a file is \\r fragments with no line ends (a 6-minute log: 0 lines)."""
    import yaml
    config = tmp_path / "toy.yaml"
    config.write_text(yaml.safe_dump(tiny_config(cl_root, max_steps=12)))
    with open(tmp_path / "log.txt", "w") as log:
        proc = subprocess.run([sys.executable, "-m", "continual_lm.cli", "run", "--config", str(config), "--out",
                               str(tmp_path / "run")], stdout=log, stderr=subprocess.STDOUT)
    text = (tmp_path / "log.txt").read_text()
    assert proc.returncode == 0 and "\r" not in text
    lines = text.splitlines()
    assert all(len(line) < 300 for line in lines)
    assert sum(line.startswith("after agnews:") for line in lines) == 1
    assert sum(line.startswith("after amazon:") for line in lines) == 1
    assert "[1] agnews: step 12/12, loss" in text and "[2] amazon: step 6/12, loss" in text


def test_only_rank_zero_prints_the_report(cl_root, tmp_path, capsys, monkeypatch):
    """Issue 29 (20): under torchrun every rank printed the final report and the run folder line."""
    cfg_path = tmp_path / "c.yaml"
    cfg_path.write_text(yaml.safe_dump(tiny_config(cl_root, max_steps=1)))
    monkeypatch.setenv("RANK", "1")
    assert main(["run", "--config", str(cfg_path), "--out", str(tmp_path / "r1")]) == 0
    assert "run folder:" not in capsys.readouterr().out
    monkeypatch.setenv("RANK", "0")
    assert main(["run", "--config", str(cfg_path), "--out", str(tmp_path / "r0")]) == 0
    assert "run folder:" in capsys.readouterr().out


def test_version_and_analyze_help(capsys):
    """Issue 29 (19): no --version; analyze --help had no text for --recovery-steps / --recovery-examples."""
    import pytest
    from continual_lm import __version__
    with pytest.raises(SystemExit):
        main(["--version"])
    assert capsys.readouterr().out.strip() == f"continual-lm {__version__}"
    with pytest.raises(SystemExit):
        main(["analyze", "--help"])
    help_text = " ".join(capsys.readouterr().out.split())
    assert "--recovery-steps RECOVERY_STEPS recovery: fine-tuning steps on each old task" in help_text
    assert "--recovery-examples RECOVERY_EXAMPLES recovery: training examples of the old task" in help_text


def test_device_name_says_cpu_or_the_gpu_model(monkeypatch):
    import torch

    from continual_lm.training.loop import device_name
    assert device_name(torch.device("cpu")) == "cpu"
    monkeypatch.setattr(torch.cuda, "get_device_name", lambda device=None: "NVIDIA H200")
    assert device_name(torch.device("cuda", 0)) == "cuda (NVIDIA H200)"
