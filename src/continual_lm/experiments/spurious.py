"""The default experiment: Task 0 → Task 1 in the Biography world, one run per method, and the paper-style
table (Task 0 / Task 1 accuracy after the sequence and the Task-0 "spurious forgetting curve")."""
from __future__ import annotations

import time
from importlib import resources
from pathlib import Path

from ..config import ExperimentConfig, MethodSettings, load_config
from ..errors import ConfigError
from ..methods import METHODS, split_method_spec
from ..reporting.run_folder import default_run_dir, write_json
from .runner import check_method_names, run_experiment

DEFAULT_METHODS = ["seq", "replay", "freeze", "recurrent_kif"]


def default_config_path() -> Path:
    return Path(str(resources.files("continual_lm.experiments") / "biography_default.yaml"))


def method_row(metrics: dict) -> dict:
    acc = metrics["acc_matrix"]
    curve = next(iter(metrics["curve"].values()), {})
    row = {"task0_after_task0": acc[0][0], "task0_final": acc[-1][0], "task1_final": acc[-1][1], "curve": curve}
    if metrics.get("method_report"):
        row["method_report"] = metrics["method_report"]
    return row


def summary_table(summary: dict) -> str:
    methods = summary["methods"]
    steps = list(next(iter(methods.values()))["curve"]) if methods else []
    head = "| method | Task 0 after Task 0 | Task 0 final | Task 1 final | " + " | ".join(
        f"T0 @ {s}" for s in steps) + " |"
    lines = [head, "|---" * (4 + len(steps)) + "|"]
    for name, row in methods.items():
        lines.append(f"| {name} | {row['task0_after_task0']:.1f} | {row['task0_final']:.1f} | {row['task1_final']:.1f} | "
                     + " | ".join(f"{row['curve'].get(s, float('nan')):.1f}" for s in steps) + " |")
    return "\n".join(lines)


def run_default_experiment(out_dir: str | Path | None = None, config: ExperimentConfig | None = None,
                           methods: list[str] | None = None, method_params: dict[str, dict] | None = None,
                           echo=print) -> dict:
    """Run every method on the same task sequence; write one run folder per method and summary.json."""
    started = time.time()
    cfg = config or load_config(default_config_path())
    if cfg.data.benchmark != "biography":
        raise ConfigError("the default experiment needs data.benchmark: biography")
    methods = methods or DEFAULT_METHODS
    check_method_names(cfg)
    unknown = [m for m in methods if split_method_spec(m)[0] not in METHODS]
    if unknown:
        raise ConfigError(f"--methods: unknown method(s) {unknown}; known: {sorted(METHODS)}")
    out = Path(out_dir or default_run_dir(cfg.name))
    if (out / "summary.json").exists():
        raise ConfigError(f"--out {out}: holds a finished experiment (summary.json); choose another folder")
    summary: dict = {"methods": {}, "seconds": 0.0}
    for name in methods:  # a name, or NAME:VARIANT
        echo(f"== {name} ==")
        registered, variant = split_method_spec(name)
        params = {**(method_params or {}).get(name, {}), **variant}
        run_cfg = cfg.model_copy(update={"name": f"{cfg.name}-{name.replace(':', '-')}",
                                         "method": MethodSettings(name=registered, params=params)})
        result, _ = run_experiment(run_cfg, out / name.replace(":", "-"))
        summary["methods"][name] = method_row(result.to_json())
    summary["seconds"] = round(time.time() - started, 1)
    write_json(out / "summary.json", summary)
    (out / "summary.md").write_text(summary_table(summary) + "\n", encoding="utf-8")
    echo(summary_table(summary))
    echo(f"total {summary['seconds']:.0f} s; results in {out}")
    return summary
