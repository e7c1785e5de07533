"""Where each benchmark script writes (issue 29, 21): --out FILE is where the JSON goes, every other file goes beside
it, and --quick never touches the full results. Argument handling only: no script's work runs here."""
import importlib.util
from pathlib import Path

import pytest

BENCHMARKS = Path(__file__).resolve().parents[1] / "benchmarks"
RESULTS = BENCHMARKS / "results"


def load(name: str):
    spec = importlib.util.spec_from_file_location(f"bench_{name}", BENCHMARKS / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.parametrize("name,stem", [("step_speed", "step_speed"), ("method_cost", "method_cost"),
                                       ("rkif_overhead", "rkif_overhead"), ("resume_overhead", "resume_overhead"),
                                       ("spurious_forgetting", "spurious_forgetting"), ("demo_speed", "demo_speed"),
                                       ("multiprocess", "multiprocess"), ("sapt_routing_probe", "sapt_routing_probe")])
def test_measurement_scripts_write_their_json_where_told_and_quick_apart(name, stem, monkeypatch, tmp_path):
    from continual_lm.experiments import benchmark
    parsers = []
    real = benchmark.script_parser
    monkeypatch.setattr(benchmark, "script_parser", lambda *a: parsers.append(real(*a)) or parsers[-1])
    module = load(name)
    if not parsers:  # the parser is built in main(): build it as main() does
        getattr(module, "script_parser")(module.__doc__, RESULTS, f"{stem}.json")
    parser = parsers[-1]
    assert parser.parse_args([]).out == RESULTS / f"{stem}.json"
    assert parser.parse_args(["--quick"]).out == RESULTS / f"{stem}_quick.json"
    assert parser.parse_args(["--quick", "--out", str(tmp_path / "x.json")]).out == tmp_path / "x.json"


def test_spurious_forgetting_writes_every_file_beside_out():
    module = load("spurious_forgetting")
    full = module.output_paths(RESULTS / "spurious_forgetting.json", quick=False)
    quick = module.output_paths(RESULTS / "spurious_forgetting_quick.json", quick=True)
    assert full["angles"] == RESULTS / "spurious_angles.png" and full["table"] == RESULTS / "spurious_forgetting_table.json"
    assert not set(full.values()) & set(quick.values())  # a quick run never overwrites the full results
    elsewhere = module.output_paths(Path("/tmp/x/out.json"), quick=False)
    assert {p.parent for p in elsewhere.values()} == {Path("/tmp/x")}


@pytest.mark.parametrize("name,results", [("biography", "biography.json"),
                                          ("baselines_biography", "baselines_biography.json"),
                                          ("baselines_biography_lora", "baselines_biography_lora.json")])
def test_biography_benchmarks_keep_the_world_their_results_were_measured_in(name, results):
    """Issue 29 (22): the demo's world shrank to fit its time; the Biography benchmarks must not move with it — their
    config resolves to the setting their committed results record (so a rerun reproduces them and --resume adds to
    them), and it is not the demo's."""
    import json
    import yaml
    from continual_lm.experiments.grid import Grid, with_defaults
    from continual_lm.experiments.spurious import default_config_path
    preset = load(name).PRESET
    base = yaml.safe_load(Path(preset.config).read_text())
    setting = Grid(base, preset.config.name, preset.methods, preset.seeds, overrides=preset.overrides).setting()
    recorded = json.loads((RESULTS / results).read_text())["setting"]["resolved"]
    assert with_defaults(setting["resolved"]) == with_defaults(recorded)
    demo = yaml.safe_load(default_config_path().read_text())
    assert (demo["data"]["biography"]["n_pretrain_persons"], base["data"]["biography"]["n_pretrain_persons"]) == (300, 400)
