import json
import os
from pathlib import Path

import pytest
import torch

torch.set_num_threads(2)
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import transformers  # noqa: E402

transformers.logging.set_verbosity_error()
transformers.utils.logging.disable_progress_bar()

SHARED_DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"


def needs_shared_data(subfolder: str = "cl_benchmark"):
    """Skip a test when ../shared/data/<subfolder> (real benchmark data, not part of the repository) is absent."""
    return pytest.mark.skipif(not (SHARED_DATA / subfolder).is_dir(), reason=f"../shared/data/{subfolder} is absent")

INSTRUCTIONS = {"TC": [{"instruction_type": "zero-shot", "instruction": "What is the topic? Choose one from the option.\n"}],
                "SC": [{"instruction_type": "zero-shot", "instruction": "What is the sentiment? Choose one from the option.\n"}]}


def write_cl_task(root: Path, name: str, labels: list[str], train: list[dict], test: list[dict]) -> Path:
    d = root / name
    d.mkdir(parents=True, exist_ok=True)
    (d / "labels.json").write_text(json.dumps(labels))
    (d / "train.json").write_text(json.dumps(train))
    (d / "test.json").write_text(json.dumps(test))
    if not (root / "instruction_config.json").exists():
        (root / "instruction_config.json").write_text(json.dumps(INSTRUCTIONS))
    return d


def toy_records(labels: list[str], n: int, word: str) -> list[dict]:
    """Learnable toy data: the sentence names its label."""
    return [{"label": labels[i % len(labels)], "sentence": f"{word} item {i} is about {labels[i % len(labels)]}"}
            for i in range(n)]


@pytest.fixture
def cl_root(tmp_path: Path) -> Path:
    """A two-task CL_Benchmark folder: agnews (TC, 2 labels) then amazon (SC, 2 labels)."""
    root = tmp_path / "cl"
    write_cl_task(root, "agnews", ["World", "Sports"], toy_records(["World", "Sports"], 24, "news"),
                  toy_records(["World", "Sports"], 8, "news"))
    write_cl_task(root, "amazon", ["positive", "negative"], toy_records(["positive", "negative"], 24, "review"),
                  toy_records(["positive", "negative"], 8, "review"))
    return root


def tiny_config(cl_root: Path, arch: str = "gpt", kind: str = "causal", finetune: str = "lora", method: str = "seq",
                params: dict | None = None, **training) -> dict:
    return {
        "name": "toy", "seed": 0,
        "model": {"kind": kind, "tiny": {"arch": arch, "layers": 2, "width": 32, "heads": 2}, "finetune": finetune,
                  "max_length": 64, "max_new_tokens": 4, "lora": {"r": 4, "alpha": 8}},
        "data": {"benchmark": "custom", "data_dir": str(cl_root), "tasks": ["agnews", "amazon"], "n_train": None},
        "training": {"max_steps": 6, "batch_size": 4, "lr": 5e-3, "eval_batch_size": 16, **training},
        "method": {"name": method, "params": params or {}},
    }
