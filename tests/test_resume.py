"""Resume points: a run killed at any moment and resumed gives exactly the uninterrupted run's numbers; signals, a
corrupt point, a planted pickle and a non-finite loss each end in one line; every method's state round-trips."""
import json
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
import yaml
from conftest import tiny_config
from safetensors.torch import load_file

from continual_lm.config import parse_config
from continual_lm.errors import ConfigError, DataError, NonFiniteError
from continual_lm.experiments import runner
from continual_lm.experiments.runner import resume_experiment, run_experiment
from continual_lm.experiments.setup import build_tasks, prepare_backbone
from continual_lm.methods import METHODS, Method, create_method
from continual_lm.methods.context import TrainContext
from continual_lm.training.loop import make_accelerator, run_sequence
from continual_lm.training.resume import load_point, save_point

CLI = [sys.executable, "-m", "continual_lm.cli"]


def resumable_config(cl_root, method, **training) -> dict:
    raw = tiny_config(cl_root, "gpt", "causal", "lora", method=method,
                      **{"max_steps": 24, "save_every": 4, "num_threads": 1, **training})
    raw["model"]["lora"]["dropout"] = 0.1          # dropout draws from torch's RNG: the RNG must come back too
    raw["checkpoint_steps"] = [0]                  # stage-end weights, to compare bit for bit
    raw["curve_steps"] = [0, 6, 14]
    raw["method_params"] = {"lamol": {"max_new_tokens": 6}, "recurrent_kif": {"q": 3}}
    return raw


def log_events(folder: Path) -> list[dict]:
    path = folder / "log.jsonl"
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()] if path.exists() else []


def start_and_wait(config: Path, out: Path, stage_index: int) -> subprocess.Popen:
    """Start a run in a subprocess and return once it has written a mid-stage resume point in ``stage_index``."""
    proc = subprocess.Popen([*CLI, "run", "--config", str(config), "--out", str(out)], stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE, text=True)
    deadline = time.time() + 120
    while time.time() < deadline:
        if any(e.get("event") == "resume_point" and e["stage_index"] == stage_index and e["step"] > 0
               for e in log_events(out)):
            return proc
        if proc.poll() is not None:
            pytest.fail(f"the run ended before a resume point in stage {stage_index}: {proc.stderr.read()}")
        time.sleep(0.02)
    proc.kill()
    pytest.fail("no resume point in time")


def same_run(a: Path, b: Path) -> None:
    ma, mb = json.loads((a / "metrics.json").read_text()), json.loads((b / "metrics.json").read_text())
    for key in ("acc_matrix", "initial", "curve", "op", "bwt", "fwt", "la", "f", "ap", "method_report"):
        assert ma[key] == mb[key], key
    ends = sorted((a / "checkpoints").glob("*/end.safetensors"))
    assert len(ends) == 2
    for path in ends:
        wa, wb = load_file(str(path)), load_file(str(b / path.relative_to(a)))
        assert wa.keys() == wb.keys() and all(torch.equal(wa[k], wb[k]) for k in wa)
    train = [(e["stage"], e["step"], e["loss"]) for e in log_events(b) if e["event"] == "train"]
    assert train == [(e["stage"], e["step"], e["loss"]) for e in log_events(a) if e["event"] == "train"]


@pytest.mark.parametrize("method", ["seq", "replay", "ewc", "recurrent_kif", "inc_lora", "lamol"])
@pytest.mark.parametrize("stage_index", [0, 1])
def test_killed_and_resumed_run_equals_the_uninterrupted_one(cl_root, tmp_path, method, stage_index):
    raw = resumable_config(cl_root, method)
    config = tmp_path / "c.yaml"
    config.write_text(yaml.safe_dump(raw))
    _, full = run_experiment(parse_config(raw), tmp_path / "full")
    proc = start_and_wait(config, tmp_path / "killed", stage_index)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert not (tmp_path / "killed" / "metrics.json").exists()
    resumed = subprocess.run([*CLI, "run", "--resume", str(tmp_path / "killed")], capture_output=True, text=True)
    assert resumed.returncode == 0, resumed.stderr
    same_run(full, tmp_path / "killed")
    assert [e for e in log_events(tmp_path / "killed") if e["event"] == "resumed"]
    assert not (tmp_path / "killed" / "resume").exists()          # removed once metrics.json is written


def test_sigint_writes_a_resume_point_and_says_how_to_resume(cl_root, tmp_path):
    config = tmp_path / "c.yaml"
    config.write_text(yaml.safe_dump(resumable_config(cl_root, "seq", max_steps=400)))
    proc = start_and_wait(config, tmp_path / "run", 0)
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 2
    lines = [line for line in err.splitlines() if line.startswith("error:")]  # (progress bars share stderr)
    assert len(lines) == 1 and f"continual-lm run --resume {tmp_path / 'run'}" in lines[0], err
    assert "Traceback" not in err
    assert (tmp_path / "run" / "resume" / "state.json").exists() and not (tmp_path / "run" / "metrics.json").exists()
    assert log_events(tmp_path / "run")[-1]["event"] == "interrupted"


def interrupted_run(cl_root, tmp_path) -> Path:
    config = tmp_path / "c.yaml"
    config.write_text(yaml.safe_dump(resumable_config(cl_root, "seq")))
    proc = start_and_wait(config, tmp_path / "run", 1)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    return tmp_path / "run"


def test_a_corrupt_or_poisoned_resume_point_is_refused_in_one_line(cl_root, tmp_path):
    folder = interrupted_run(cl_root, tmp_path)
    tensors = folder / "resume" / "tensors.safetensors"
    good = tensors.read_bytes()
    tensors.write_bytes(good[: len(good) // 2])                       # a half-written file
    proc = subprocess.run([*CLI, "run", "--resume", str(folder)], capture_output=True, text=True)
    errors = [line for line in proc.stderr.splitlines() if line.startswith("error:")]
    assert proc.returncode == 2 and len(errors) == 1 and "Traceback" not in proc.stderr
    assert "tensors.safetensors: corrupt resume point" in errors[0]
    tensors.write_bytes(good)
    # A pickle that would run code, with its checksum updated as an attacker would: torch refuses to load it.
    class Payload:
        def __reduce__(self):
            return (os.system, ("touch " + str(tmp_path / "pwned"),))
    torch.save({"x": Payload()}, folder / "resume" / "optimizer.pt")
    meta = json.loads((folder / "resume" / "state.json").read_text())
    import hashlib
    meta["sha256"]["optimizer.pt"] = hashlib.sha256((folder / "resume" / "optimizer.pt").read_bytes()).hexdigest()
    (folder / "resume" / "state.json").write_text(json.dumps(meta))
    with pytest.raises(DataError, match="optimizer.pt: refused .* tensors and numbers only"):
        load_point(folder / "resume")
    assert not (tmp_path / "pwned").exists()


def test_resume_refuses_finished_pointless_or_invalid_folders_and_run_refuses_unfinished_ones(cl_root, tmp_path):
    raw = resumable_config(cl_root, "seq", max_steps=2)
    _, done = run_experiment(parse_config(raw), tmp_path / "done")
    with pytest.raises(ConfigError, match="the run is finished"):
        resume_experiment(done)
    empty = tmp_path / "started"
    empty.mkdir()
    (empty / "config.yaml").write_text(yaml.safe_dump(raw))
    (empty / "log.jsonl").write_text("")
    with pytest.raises(ConfigError, match="no resume point to continue from"):
        resume_experiment(empty)
    (empty / "resume").mkdir()
    (empty / "resume" / "state.json").write_text("{}")  # with a resume point, the advice is --resume
    with pytest.raises(ConfigError, match="holds an unfinished run; continue it with `continual-lm run --resume"):
        run_experiment(parse_config(raw), empty)
    (empty / "config.yaml").write_text(yaml.safe_dump({**raw, "trainin": {}}))
    with pytest.raises(ConfigError, match="config.yaml: trainin"):
        resume_experiment(empty)


class NaNAt(Method):
    """seq whose loss becomes NaN at a given step of the second stage."""
    name = "nan_at"

    def loss(self, ctx, examples):
        loss = ctx.backbone.loss(examples)
        return loss * float("nan") if ctx.stage_index == 1 and ctx.step == 5 else loss


def test_a_non_finite_loss_stops_the_run_in_one_line_keeping_the_resume_point(cl_root, tmp_path, monkeypatch):
    monkeypatch.setattr(runner, "configured_method", lambda cfg: NaNAt())
    with pytest.raises(NonFiniteError, match=r"stage 'amazon', step 5, method 'seq': non-finite loss "
                                             r"\(last finite loss: \d"):
        run_experiment(parse_config(resumable_config(cl_root, "seq")), tmp_path / "run")
    events = log_events(tmp_path / "run")
    assert events[-2]["event"] == "non_finite" and events[-1]["event"] == "error"
    assert not (tmp_path / "run" / "metrics.json").exists() and (tmp_path / "run" / "resume" / "state.json").exists()
    record, _ = run_experiment(parse_config(resumable_config(cl_root, "seq", nan_policy="skip_step")),
                               tmp_path / "skip")
    assert len(record.acc_matrix) == 2 and any(e["event"] == "non_finite" for e in log_events(tmp_path / "skip"))


def equal_states(a, b) -> bool:
    if isinstance(a, torch.Tensor):
        return isinstance(b, torch.Tensor) and torch.equal(a.cpu(), b.cpu())
    if isinstance(a, dict):
        return isinstance(b, dict) and a.keys() == b.keys() and all(equal_states(a[k], b[k]) for k in a)
    if isinstance(a, (list, tuple)):
        return type(a) is type(b) and len(a) == len(b) and all(equal_states(x, y) for x, y in zip(a, b))
    return a == b


@pytest.mark.parametrize("name", sorted(METHODS))
def test_every_method_state_round_trips(cl_root, tmp_path, name):
    raw = tiny_config(cl_root, "gpt", "causal", "lora", method=name, max_steps=3,
                      params={"max_new_tokens": 6} if name in ("lamol", "lfpt5", "sapt") else {})
    cfg = parse_config(raw)
    tasks, world = build_tasks(cfg)
    method = create_method(name, cfg.method.params)
    run_sequence(cfg, tasks, prepare_backbone(cfg, tasks, world, make_accelerator()), method)
    state = method.state_dict()
    save_point(tmp_path / "point", {"method": state}, None)
    loaded = load_point(tmp_path / "point")[0]["method"]
    assert equal_states(state, loaded)
    fresh = create_method(name, cfg.method.params)
    ctx = TrainContext(cfg, prepare_backbone(cfg, tasks, world, make_accelerator()), make_accelerator(), tasks,
                       lambda r: None, random.Random(0))
    fresh.setup(ctx)
    fresh.load_state_dict(loaded)
    assert equal_states(fresh.state_dict(), state)
    if name == "sapt":  # a point written before SAPT reported its routing still loads
        fresh.load_state_dict({k: v for k, v in loaded.items() if k != "routing"})
        assert fresh.routing == {}


def test_a_resume_point_written_before_intervals_were_kept_still_resumes(cl_root, tmp_path):
    from continual_lm.training.resume import ResumeStore
    cfg = parse_config(tiny_config(cl_root, max_steps=2, keep_resume=True))
    done, folder = run_experiment(cfg, tmp_path / "run")
    store = ResumeStore(folder / "resume")
    state, optimizer = store.load()
    assert state["stage_index"] == 1 and len(state["run"].pop("intervals")) == 1   # the point before stage 2
    store.save(state, optimizer)
    (folder / "metrics.json").unlink()
    again, _ = resume_experiment(folder)
    assert again.acc_matrix == done.acc_matrix
    assert again.intervals[0] == [None, None] and again.intervals[1] == done.intervals[1]


def test_a_run_that_stopped_before_its_first_resume_point_starts_again_with_the_same_command(cl_root, tmp_path, caplog):
    """Issue 29 (1): the folder said "continue it with --resume", and --resume said "no resume point"."""
    raw = resumable_config(cl_root, "seq", max_steps=2)
    started = tmp_path / "started"
    started.mkdir()
    (started / "config.yaml").write_text(yaml.safe_dump(raw))
    (started / "log.jsonl").write_text('{"event": "error"}\n')
    (started / "notes.txt").write_text("mine")  # not the run's: kept
    with pytest.raises(ConfigError, match="no resume point to continue from .*run the same command without --resume"):
        resume_experiment(started)
    with caplog.at_level("WARNING"):
        record, folder = run_experiment(parse_config(raw), started)
    assert "held a run that stopped before its first resume point; starting it again" in caplog.text
    assert (folder / "metrics.json").exists() and (folder / "notes.txt").read_text() == "mine"
    assert '"event": "error"' not in (folder / "log.jsonl").read_text()


def test_config_yaml_records_absolute_paths_and_the_methods_parameters(cl_root, tmp_path, monkeypatch):
    """Issue 29 (3): a relative data.data_dir made --resume fail from another directory; config.yaml said
    method_params: {} where metrics.json had the resolved parameters."""
    monkeypatch.chdir(cl_root.parent)
    raw = resumable_config(cl_root, "o_lora", max_steps=2)
    raw["data"]["data_dir"] = cl_root.name  # relative to the working directory
    _, folder = run_experiment(parse_config(raw), tmp_path / "run")
    recorded = yaml.safe_load((folder / "config.yaml").read_text())
    assert recorded["data"]["data_dir"] == str(cl_root.resolve())
    metrics = json.loads((folder / "metrics.json").read_text())
    assert recorded["method"]["params"] == metrics["method_params"] and metrics["method_params"]["penalty"] == "l1"
    from continual_lm.experiments.grid import same_config
    assert same_config(folder, parse_config(raw))  # a grid still adopts it


PRETRAIN = """
import json, sys
from continual_lm.config import parse_config
from continual_lm.errors import Interrupted
from continual_lm.experiments.setup import build_tasks, pretrained_checkpoint
from continual_lm.training.loop import make_accelerator
cfg = parse_config(json.loads(sys.argv[1]))
tasks, world = build_tasks(cfg)
try:
    print(pretrained_checkpoint(cfg, world, make_accelerator(), lambda r: print(json.dumps(r), flush=True)))
except Interrupted as e:
    print("interrupted:", e, flush=True)
    sys.exit(3)
"""


def test_interrupted_pretraining_continues_to_the_same_checkpoint(tmp_path):
    """Issue 29 (2): Ctrl-C in pre-training threw the minutes done away; it now writes resume points beside the cache
    entry, and the next run continues from there to the weights an uninterrupted pre-training gives."""
    import signal
    from safetensors.torch import load_file
    raw = {"name": "bio", "seed": 0,
           "model": {"kind": "causal", "tiny": {"arch": "gpt", "layers": 1, "width": 16, "heads": 2},
                     "finetune": "full", "max_length": 96, "max_new_tokens": 6},
           "data": {"benchmark": "biography",
                    "biography": {"n_pretrain_persons": 12, "bios_per_person": 2, "n_new_persons": 4}},
           "pretrain": {"epochs": 30, "batch_size": 8, "lr": 0.002, "save_every": 10}}
    argv = [sys.executable, "-c", PRETRAIN, json.dumps(raw)]

    def env(cache):
        return {**os.environ, "CONTINUAL_LM_CACHE": str(tmp_path / cache)}
    whole = subprocess.run(argv, env=env("whole"), capture_output=True, text=True)
    assert whole.returncode == 0, whole.stderr
    proc = subprocess.Popen(argv, env=env("cut"), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    for line in proc.stdout:  # a resume point written: interrupt
        if '"resume_point"' in line and '"step": 30' in line:
            proc.send_signal(signal.SIGINT)
            break
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == 3 and "interrupted: stage 'pretrain', step" in out, (out, err)
    resumed = subprocess.run(argv, env=env("cut"), capture_output=True, text=True)
    assert resumed.returncode == 0, resumed.stderr
    assert '"event": "resumed", "stage": "pretrain"' in resumed.stdout
    a = load_file(str(next((tmp_path / "whole").glob("biography-*/model.safetensors"))))
    b = load_file(str(next((tmp_path / "cut").glob("biography-*/model.safetensors"))))
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    assert not list((tmp_path / "cut").glob("*.resume"))  # the points go once the checkpoint is written


def test_a_run_resumed_on_another_device_names_both(cl_root, tmp_path, monkeypatch):
    """A run begun on a GPU and finished on the CPU said only "cpu": metrics.json names where each part ran, in
    order; a point written before devices were kept names only where the run finished."""
    from continual_lm.training import loop
    from continual_lm.training.resume import ResumeStore
    cfg = parse_config(tiny_config(cl_root, max_steps=2, keep_resume=True))
    done, folder = run_experiment(cfg, tmp_path / "run")
    assert done.device == "cpu"
    store = ResumeStore(folder / "resume")
    state, optimizer = store.load()
    assert state["run"]["devices"] == ["cpu"]
    (folder / "metrics.json").unlink()
    monkeypatch.setattr(loop, "device_name", lambda device: "cuda (NVIDIA H200)")
    again, _ = resume_experiment(folder)
    assert again.device == "cpu, then cuda (NVIDIA H200)"
    assert json.loads((folder / "metrics.json").read_text())["device"] == again.device
    assert again.acc_matrix == done.acc_matrix
    state["run"].pop("devices")
    store.save(state, optimizer)
    (folder / "metrics.json").unlink()
    assert resume_experiment(folder)[0].device == "cuda (NVIDIA H200)"
