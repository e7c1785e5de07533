"""Named benchmarks and their task orders, as used by O-LoRA, SAPT, TaSL and Recurrent-KIF."""
from __future__ import annotations

from pathlib import Path

from ..errors import ConfigError, DataError
from .loaders import load_cl_benchmark_task, load_instruction_task, load_superni_task, load_task_dir
from .task import Task

STANDARD_TASKS = ["dbpedia", "amazon", "yahoo", "agnews"]
LONG_TASKS = ["yelp", "amazon", "MNLI", "CB", "COPA", "QQP", "RTE", "IMDB", "SST-2", "dbpedia", "agnews",
              "yahoo", "MultiRC", "BoolQA", "WiC"]

ORDERS: dict[str, dict[int, list[str]]] = {
    "standard": {
        1: ["dbpedia", "amazon", "yahoo", "agnews"],
        2: ["dbpedia", "amazon", "agnews", "yahoo"],
        3: ["yahoo", "amazon", "agnews", "dbpedia"],
    },
    "long": {
        4: LONG_TASKS,
        # The other two long-sequence orders of O-LoRA (Wang et al., 2023, Table 7). Our order 4 is
        # O-LoRA's order 6 (the numbering Recurrent-KIF uses); 5 and 6 here are O-LoRA's 5 and 4.
        5: ["MultiRC", "BoolQA", "WiC", "MNLI", "CB", "COPA", "QQP", "RTE", "IMDB", "SST-2", "dbpedia", "agnews",
            "yelp", "amazon", "yahoo"],
        6: ["MNLI", "CB", "WiC", "COPA", "QQP", "BoolQA", "RTE", "IMDB", "yelp", "amazon", "SST-2", "dbpedia",
            "agnews", "MultiRC", "yahoo"],
    },
    "superni": {
        # SAPT (Zhao et al., 2024) order 1 of the 15 SuperNI tasks.
        1: ["task1572_samsum_summary", "task363_sst2_polarity_classification", "task1290_xsum_summarization",
            "task181_outcome_extraction", "task002_quoref_answer_generation", "task1510_evalution_relation_extraction",
            "task639_multi_woz_user_utterance_generation", "task1729_personachat_generate_next",
            "task073_commonsenseqa_answer_generation", "task1590_diplomacy_text_generation",
            "task748_glucose_reverse_cause_event_detection", "task511_reddit_tifu_long_text_summarization",
            "task591_sciq_answer_generation", "task1687_sentiment140_classification",
            "task875_emotion_classification"],
    },
}
# TRACE (Wang et al., 2023), the paper's order; its metric per task (TRACE's evaluations/: the option letter, the
# number, ROUGE-L, edit similarity, SARI). A TRACE-layout task of another name is scored by exact match.
TRACE_TASKS = ["C-STANCE", "FOMC", "MeetingBank", "Py150", "ScienceQA", "NumGLUE-cm", "NumGLUE-ds", "20Minuten"]
ORDERS["trace"] = {1: TRACE_TASKS}
TRACE_METRICS = {"C-STANCE": "choice_letter", "FOMC": "choice_letter", "ScienceQA": "choice_letter",
                 "NumGLUE-cm": "number", "NumGLUE-ds": "number", "MeetingBank": "rouge_l", "Py150": "edit_similarity",
                 "20Minuten": "sari"}
# Tasks whose every prompt offers the same option letters (their instructions say "A, B or C"): a random option's
# score (the chance column) is drawn from these. ScienceQA's options vary per question and are not listed.
TRACE_OPTIONS = {"C-STANCE": ("A", "B", "C"), "FOMC": ("A", "B", "C")}
DEFAULT_ORDER = {"standard": 1, "long": 4, "superni": 1, "trace": 1}


def task_order(benchmark: str, order: int | None = None) -> list[str]:
    if benchmark not in ORDERS:
        raise ConfigError(f"data.benchmark: unknown benchmark {benchmark!r}; known: {sorted(ORDERS)} or 'custom'")
    order = DEFAULT_ORDER[benchmark] if order is None else order
    if order not in ORDERS[benchmark]:
        raise ConfigError(f"data.order: benchmark {benchmark!r} has orders {sorted(ORDERS[benchmark])}, not {order}")
    return list(ORDERS[benchmark][order])


def load_benchmark(benchmark: str, data_dir: str | Path, order: int | None = None, n_train: int | None = 1000,
                   n_test: int | None = None, seed: int = 0, tasks: list[str] | None = None) -> list[Task]:
    """Load a named benchmark (or ``custom``: ``tasks`` are folders) from ``data_dir`` in its task order."""
    data_dir = Path(data_dir)
    if benchmark == "custom":
        if not tasks:
            raise ConfigError("data.tasks: a custom benchmark needs a non-empty list of task folders")
        return [load_task_dir(data_dir / t if not Path(t).is_absolute() else Path(t), n_train, n_test, seed)
                for t in tasks]
    names = tasks or task_order(benchmark, order)
    if not data_dir.is_dir():
        where = "" if data_dir.is_absolute() else f" (a relative path is read from the working directory, {Path.cwd()})"
        raise ConfigError(f"data.data_dir: {data_dir} is not a folder{where}")
    known = {p.name for p in data_dir.iterdir() if p.is_dir()}
    unknown = [n for n in names if n not in known]
    if unknown:
        present = [n for n in names if n in known]
        raise ConfigError(f"data.tasks: task(s) {unknown} not in {data_dir}; available: {sorted(known)}"
                          + (f"; to leave them out: data.tasks: [{', '.join(present)}]" if present else ""))
    if benchmark == "trace":
        return [load_trace_task(data_dir / n, n_train, n_test, seed, TRACE_METRICS.get(n, "exact_match"), names)
                for n in names]
    loader = load_superni_task if benchmark == "superni" else load_cl_benchmark_task
    return [loader(data_dir / n, n_train, n_test, seed) for n in names]


def load_trace_task(task_dir: Path, n_train: int | None, n_test: int | None, seed: int, metric: str,
                    sequence: list[str]) -> Task:
    """A TRACE-layout task folder (``train.json``, ``test.json``: lists of {prompt, answer}; ``eval.json`` unused)."""
    for split in ("train.json", "test.json"):
        if not (task_dir / split).exists():
            rest = [n for n in sequence if n != task_dir.name]
            raise DataError(f"{task_dir}: no {split} (TRACE's MeetingBank release has no 500-example train file); "
                            f"leave the task out with data.tasks: [{', '.join(rest)}]")
    task = load_instruction_task(task_dir / "train.json", task_dir / "test.json", task_dir.name, metric, n_train,
                                 n_test, seed)
    task.options = TRACE_OPTIONS.get(task_dir.name)
    return task
