"""Readers for the three on-disk task formats.

1. O-LoRA ``CL_Benchmark`` folders (``train.json``/``test.json``/``labels.json`` + ``instruction_config.json``).
2. SuperNI task files (``Definition`` + ``Instances`` of ``{id, input, output}``).
3. Generic instruction files (JSON list or JSONL of ``{prompt, answer}``, ``{input, output}`` or
   ``{instruction, input, output}``).

Every error names the file and, where there is one, the record: a JSON Lines record by its line as an editor shows it,
a record of a JSON list by its position counting from 1 (``Records.where``).
"""
from __future__ import annotations

import json
import logging
import random
from pathlib import Path

from ..errors import DataError
from .task import Example, Task

log = logging.getLogger(__name__)

# Task folder name -> key of instruction_config.json (O-LoRA's grouping).
INSTRUCTION_KEY = {
    "agnews": "TC", "dbpedia": "TC", "yahoo": "TC",
    "amazon": "SC", "yelp": "SC", "SST-2": "SC", "IMDB": "SC",
    "MNLI": "NLI", "RTE": "NLI", "CB": "NLI",
    "QQP": "QQP", "BoolQA": "BoolQA", "MultiRC": "MultiRC", "WiC": "WiC",
    "COPA": None,
}
NO_GOLD_LABEL = "-"  # MNLI records without a gold label


def read_text(path: Path) -> str:
    try:
        return Path(path).read_text(encoding="utf-8")
    except FileNotFoundError:
        raise DataError(f"{path}: file not found") from None
    except UnicodeDecodeError as e:
        raise DataError(f"{path}: not UTF-8 text (byte 0x{e.object[e.start]:02x} at offset {e.start}); "
                        "save it as UTF-8") from None


def read_json(path: Path):
    try:
        return json.loads(read_text(path))
    except json.JSONDecodeError as e:
        raise DataError(f"{path}: malformed JSON at line {e.lineno} column {e.colno}: {e.msg}") from None


class Records(list):
    """A file's records, and where each is in it (for error messages)."""

    def __init__(self, records: list, lines: list[int] | None = None):
        super().__init__(records)
        self.lines = lines  # JSON Lines: the line of each record

    def where(self, i: int) -> str:
        return f"line {self.lines[i]}" if self.lines is not None else f"record {i + 1} (counting from 1)"


def read_records(path: Path) -> Records:
    """A JSON list, or JSON Lines (one object per line)."""
    if path.suffix == ".jsonl":
        records, numbers = [], []
        # "\n" alone ends a line: splitlines() would also cut at U+2028, U+0085 or a form feed, which JSON strings
        # may hold raw (ensure_ascii=False writes them so: our own predictions files do).
        for lineno, line in enumerate(read_text(path).split("\n"), 1):
            if not line.strip():
                continue
            try:
                records.append(json.loads(line))
            except json.JSONDecodeError as e:
                raise DataError(f"{path}: malformed JSON on line {lineno}: {e.msg}") from None
            numbers.append(lineno)
        return Records(records, numbers)
    data = read_json(path)
    if not isinstance(data, list):
        raise DataError(f"{path}: expected a JSON list of records, got {type(data).__name__}")
    return Records(data)


def subsample(items: list, n: int | None, seed: int, salt: str) -> list:
    """A seeded, stable sample: the same (seed, salt, n) always gives the same items in the same order."""
    if n is None or n >= len(items):
        return list(items)
    rng = random.Random(f"{seed}:{salt}")
    return [items[i] for i in sorted(rng.sample(range(len(items)), n))]


def _require_nonempty(examples: list, path: Path) -> list:
    if not examples:
        raise DataError(f"{path}: empty split (no usable records)")
    return examples


# --------------------------------------------------------------------------- O-LoRA CL_Benchmark

def cl_benchmark_prompt(instruction: str, labels: tuple[str, ...] | None, sentence: str) -> tuple[str, tuple[int, int]]:
    """The prompt of the O-LoRA papers and where its sentence lies in it (the passage truncation may cut); COPA (no
    instruction) is the sentence plus ``\\nAnswer:``."""
    head = instruction + "Option: " + ", ".join(labels or ()) + " \n" if instruction else ""
    return head + sentence + "\nAnswer:", (len(head), len(head) + len(sentence))


def load_cl_benchmark_task(task_dir: str | Path, n_train: int | None = None, n_test: int | None = None,
                           seed: int = 0) -> Task:
    task_dir = Path(task_dir)
    name = task_dir.name
    if not task_dir.is_dir():
        raise DataError(f"{task_dir}: task folder not found")
    labels_path = task_dir / "labels.json"
    labels = read_json(labels_path)
    if not isinstance(labels, list) or not labels or not all(isinstance(x, str) for x in labels):
        raise DataError(f"{labels_path}: expected a non-empty JSON list of label strings")
    labels_t = tuple(labels)
    instruction = _cl_instruction(task_dir, name)

    def split(fname: str, n: int | None) -> list[Example]:
        path = task_dir / fname
        records = read_records(path)
        examples, skipped = [], 0
        for i, rec in enumerate(records):
            if not isinstance(rec, dict) or "sentence" not in rec or "label" not in rec:
                raise DataError(f"{path}: {records.where(i)}: expected an object with 'label' and 'sentence'")
            label = rec["label"]
            if label == NO_GOLD_LABEL and NO_GOLD_LABEL not in labels_t:
                skipped += 1
                continue
            if label not in labels_t:
                raise DataError(f"{path}: {records.where(i)}: label {label!r} is not in {labels_path.name} "
                                f"{list(labels_t)}")
            prompt, passage = cl_benchmark_prompt(instruction, labels_t, rec["sentence"])
            examples.append(Example(prompt, label, name, labels_t, passage=passage))
        if skipped:
            log.warning("%s: skipped %d records labelled %r (no gold label)", path, skipped, NO_GOLD_LABEL)
        _require_nonempty(examples, path)
        return subsample(examples, n, seed, f"{name}/{fname}")

    return Task(name, split("train.json", n_train), split("test.json", n_test), "exact_match", labels_t)


def _cl_instruction(task_dir: Path, name: str) -> str:
    """The task's instruction: an ``instruction.txt`` in its folder; else ``instruction_config.json`` (in the folder
    or beside it) under the task's own name, or under the instruction type of the 15 O-LoRA tasks (TC, SC, NLI, …)."""
    own = task_dir / "instruction.txt"
    if own.exists():
        return read_text(own)
    key = INSTRUCTION_KEY.get(name, "__unknown__")
    if key is None:
        return ""
    for cfg_path in (task_dir / "instruction_config.json", task_dir.parent / "instruction_config.json"):
        if cfg_path.exists():
            cfg = read_json(cfg_path)
            key = name if name in cfg else key
            if key == "__unknown__":
                raise DataError(f"{task_dir}: no instruction for task {name!r}: add an instruction.txt to its folder, or "
                                f"an entry {name!r} to {cfg_path} (the O-LoRA tasks use the types {sorted(set(filter(None, INSTRUCTION_KEY.values())))})")
            if not cfg.get(key) or "instruction" not in cfg[key][0]:
                raise DataError(f"{cfg_path}: missing instruction for key {key!r} (task {name})")
            return cfg[key][0]["instruction"]
    raise DataError(f"{task_dir}: no instruction: add an instruction.txt to the task folder, or an "
                    "instruction_config.json to it or its parent")


# --------------------------------------------------------------------------- SuperNI

CLASSIFICATION_HINTS = ("classification",)  # SuperNI tasks named *_classification have fixed labels


def load_superni_task(task_dir: str | Path, n_train: int | None = None, n_test: int | None = None,
                      seed: int = 0) -> Task:
    """A SuperNI task folder (``train.json``, ``test.json``; ``dev.json`` is not used)."""
    task_dir = Path(task_dir)
    name = task_dir.name
    metric = "exact_match" if any(h in name for h in CLASSIFICATION_HINTS) else "rouge_l"

    def split(path: Path, n: int | None) -> list[Example]:
        data = read_json(path)
        if not isinstance(data, dict) or "Instances" not in data or "Definition" not in data:
            raise DataError(f"{path}: expected a SuperNI object with 'Definition' and 'Instances'")
        definition = data["Definition"]
        definition = definition[0] if isinstance(definition, list) and definition else str(definition)
        examples, empty = [], 0
        for i, inst in enumerate(data["Instances"]):
            if not isinstance(inst, dict) or "input" not in inst or "output" not in inst:
                raise DataError(f"{path}: instance {i + 1} (counting from 1): expected 'input' and 'output'")
            outputs = inst["output"] if isinstance(inst["output"], list) else [inst["output"]]
            outputs = tuple(str(o) for o in outputs if str(o).strip())
            if not outputs:  # an empty reference cannot be scored (one such instance in the real task511 data)
                empty += 1
                continue
            head = f"Definition: {definition}\n\nInput: "
            prompt = f"{head}{inst['input']}\nOutput:"
            passage = (len(head), len(head) + len(str(inst["input"])))
            examples.append(Example(prompt, outputs[0], name, None, outputs, passage))
        if empty:
            log.warning("%s: skipped %d instances with an empty output", path, empty)
        _require_nonempty(examples, path)
        return subsample(examples, n, seed, f"{name}/{path.name}")

    if not task_dir.is_dir():
        raise DataError(f"{task_dir}: SuperNI task folder not found (expected train.json and test.json in it)")
    return Task(name, split(task_dir / "train.json", n_train), split(task_dir / "test.json", n_test), metric)


# --------------------------------------------------------------------------- generic instruction files

def _generic_pair(rec, path: Path, where: str) -> tuple[str, tuple[str, ...], tuple[int, int] | None]:
    """(prompt, acceptable answers, the passage's span in the prompt or None) of a generic record."""
    if not isinstance(rec, dict):
        raise DataError(f"{path}: {where}: expected an object")
    if "prompt" in rec and "answer" in rec:
        prompt, answer, passage = str(rec["prompt"]), rec["answer"], None
    elif "instruction" in rec and "output" in rec:
        head, inp = str(rec["instruction"]), str(rec.get("input") or "")
        prompt, answer = (head + "\n" + inp if inp else head), rec["output"]
        passage = (len(head) + 1, len(head) + 1 + len(inp)) if inp else None
    elif "input" in rec and "output" in rec:
        prompt, answer, passage = str(rec["input"]), rec["output"], None
    else:
        raise DataError(f"{path}: {where}: expected keys {{prompt, answer}}, {{input, output}} "
                        f"or {{instruction, input, output}}, got {sorted(rec)}")
    answers = tuple(str(a) for a in (answer if isinstance(answer, list) else [answer]) if a is not None and str(a).strip())
    if not answers:  # null was trained as the text 'None', "" as an empty target
        raise DataError(f"{path}: {where}: empty answer ({json.dumps(answer)}); give every record an answer")
    return prompt, answers, passage


def load_instruction_task(train_path: str | Path, test_path: str | Path, name: str | None = None,
                          metric: str = "exact_match", n_train: int | None = None, n_test: int | None = None,
                          seed: int = 0) -> Task:
    train_path, test_path = Path(train_path), Path(test_path)
    name = name or train_path.parent.name

    def split(path: Path, n: int | None) -> list[Example]:
        examples = []
        records = read_records(path)
        for i, rec in enumerate(records):
            prompt, answers, passage = _generic_pair(rec, path, records.where(i))
            examples.append(Example(prompt, answers[0], name, None, answers, passage))
        _require_nonempty(examples, path)
        return subsample(examples, n, seed, f"{name}/{path.name}")

    return Task(name, split(train_path, n_train), split(test_path, n_test), metric)  # type: ignore[arg-type]


def load_task_dir(task_dir: str | Path, n_train: int | None = None, n_test: int | None = None, seed: int = 0) -> Task:
    """Detect the format of a task folder and load it."""
    task_dir = Path(task_dir)
    if not task_dir.exists():
        raise DataError(f"{task_dir}: task folder not found")
    if (task_dir / "labels.json").exists():
        return load_cl_benchmark_task(task_dir, n_train, n_test, seed)
    train = next((task_dir / f for f in ("train.json", "train.jsonl") if (task_dir / f).exists()), None)
    test = next((task_dir / f for f in ("test.json", "test.jsonl") if (task_dir / f).exists()), None)
    if train is None or test is None:
        raise DataError(f"{task_dir}: expected train.json(l) and test.json(l)")
    if train.suffix == ".json":
        head = read_json(train)
        if isinstance(head, dict) and "Instances" in head:
            return load_superni_task(task_dir, n_train, n_test, seed)
    return load_instruction_task(train, test, task_dir.name, "exact_match", n_train, n_test, seed)
