"""Where a run's answers go: right, another label of the task's own, or a label of another task.

In the label space of the run (``model.label_space: all``) or with a generative model, a forgotten classification task
can fail two ways. The model may confuse the task's own classes (a negative review called positive: the knowledge of
the task is lost), or it may answer with a label of another task (a review called "Entertainment & Music": the model
no longer knows *which task* it is doing — lost task alignment, the spurious forgetting of Zheng et al., ICLR 2025).
This analysis reads a finished run's ``predictions/<stage>/<task>.jsonl`` and sorts every answer into

- ``correct``           the example's score is full marks;
- ``own_label``         wrong, but one of the task's own labels;
- ``other_task_label``  a label of another task of the run and not of this one (a label two tasks share, such as
                        "positive" in yelp and amazon, counts as the task's own);
- ``other``             anything else (free text, an empty answer).

A generative model's ``other`` is often a garbled label of another task: on the 1000-per-task GPU pilot, seq answered
90 of 200 dbpedia inputs "Science" (yahoo's "Science & Mathematics", agnews' "Science or Technology"). The exact
classes above count that as free text; ``other_near_task_label`` counts it apart, as a part of ``other``: an ``other``
answer whose first word is the first word of another task's label and of none of the task's own. The rule is a
choice, kept out of the four classes (which sum to 100) so that they stay exact.

Labels are compared after the scorer's normalisation (``evaluation/scores.normalize_answer``), so a generative
model's "Positive." is the label "positive". Tasks without labels (open answers) are left out and named.
"""
from __future__ import annotations

from collections import Counter
from statistics import fmean
from collections.abc import Iterable
from pathlib import Path

from ..data.loaders import read_records
from ..errors import DataError
from ..evaluation.scores import normalize_answer
from ..reporting.run_folder import PREDICTIONS, RunRecord

ANSWER_KINDS = ("correct", "own_label", "other_task_label", "other")
NEAR_OTHER_TASK_LABEL = "other_near_task_label"  # a part of "other"; see the module's docstring
SHARES = (*ANSWER_KINDS, NEAR_OTHER_TASK_LABEL)


def answer_kind(answer: str, score: float, own: frozenset[str], foreign: frozenset[str]) -> str:
    """One answer's kind; ``answer`` is normalised, as are the labels ``own`` and ``foreign`` (which excludes
    ``own``)."""
    if score >= 100.0:
        return "correct"
    if answer in own:
        return "own_label"
    if answer in foreign:
        return "other_task_label"
    return "other"


def first_words(labels: Iterable[str]) -> frozenset[str]:
    """The first word of each normalised label."""
    return frozenset(label.split()[0] for label in labels if label.split())


def begins_like(answer: str, own_first: frozenset[str], foreign_first: frozenset[str]) -> bool:
    """Whether a normalised answer's first word is the first word of another task's label and of none of the task's
    own."""
    words = answer.split()
    return bool(words) and words[0] in foreign_first and words[0] not in own_first


def answer_shares(records: Iterable[dict], own_labels: Iterable[str], run_labels: Iterable[str],
                  top: int = 3) -> dict:
    """Share (%) of each answer kind among ``records`` (prediction lines), and the most frequent wrong answers."""
    own = frozenset(normalize_answer(label) for label in own_labels)
    foreign = frozenset(normalize_answer(label) for label in run_labels) - own
    own_first, foreign_first = first_words(own), first_words(foreign)
    kinds: Counter[str] = Counter()
    wrong: Counter[str] = Counter()
    n = 0
    for r in records:
        answer = normalize_answer(r["prediction"])
        kind = answer_kind(answer, r["score"], own, foreign)
        kinds[kind] += 1
        if kind == "other" and begins_like(answer, own_first, foreign_first):
            kinds[NEAR_OTHER_TASK_LABEL] += 1
        n += 1
        if kind != "correct":
            wrong[r["prediction"]] += 1
    if n == 0:
        raise DataError("no predictions to sort")
    shares = {kind: 100.0 * kinds[kind] / n for kind in SHARES}
    return {"n": n, **shares, "top_wrong": [[answer, count] for answer, count in wrong.most_common(top)]}


def read_predictions(path: Path) -> list[dict]:
    records = read_records(path)
    for i, record in enumerate(records):
        if not isinstance(record, dict) or "prediction" not in record or "score" not in record:
            raise DataError(f"{path}: {records.where(i)}: a prediction line needs 'prediction' and 'score'")
    return records


def run_answer_alignment(folder: str | Path, labels: dict[str, tuple[str, ...] | None]) -> dict:
    """Per stage and task of a finished run, the answer kinds; ``labels`` maps each task to its labels (None: none).

    Every stage whose predictions the run wrote is sorted (a run writes those of its last stage).

    ``final_old`` is the mean over the tasks before the last one, after the last stage: where forgotten answers went;
    ``no_old_tasks`` says why there is none.
    """
    folder = Path(folder)
    record = RunRecord.read(folder)
    unknown = [t for t in record.tasks if t not in labels]
    if unknown:
        raise DataError(f"{folder}: no labels given for tasks {unknown}")
    labelled = [t for t in record.tasks if labels[t]]
    run_labels = sorted({label for t in labelled for label in labels[t] or ()})
    stages: dict[str, dict[str, dict]] = {}
    for stage in record.stages:
        for task in labelled:
            path = folder / PREDICTIONS / stage / f"{task}.jsonl"
            if path.exists():
                stages.setdefault(stage, {})[task] = answer_shares(read_predictions(path), labels[task] or (),
                                                                   run_labels)
    result = {"tasks_without_labels": [t for t in record.tasks if not labels[t]], "stages": stages}
    last = record.stages[-1] if len(record.stages) > 1 else None  # one stage (MTL): no old tasks
    old = [t for t in labelled[:-1] if t in stages.get(last, {})] if last else []
    if old:
        result["final_old"] = {"stage": last, "tasks": old,
                               **{kind: fmean(stages[last][t][kind] for t in old) for kind in SHARES}}
    else:
        unlabelled_old = [t for t in record.tasks[:-1] if not labels[t]]
        result["no_old_tasks"] = (
            "one stage: no old tasks" if not last
            else f"its old tasks {unlabelled_old} have no labels (open answers): only labelled tasks are sorted"
            if unlabelled_old and not [t for t in labelled if t != record.tasks[-1]]
            else "no predictions of its old tasks after its last stage")
    return result


def plot_answers(result: dict, path: Path) -> None:
    """Stacked bars of the answer kinds per task after the last stage."""
    from ..reporting.report import pyplot

    if not result["stages"]:
        return
    stage, per_task = list(result["stages"].items())[-1]
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(6, 0.5 + 0.35 * len(per_task)))
    names = list(per_task)
    left = [0.0] * len(names)
    for kind, colour in zip(ANSWER_KINDS, ("tab:green", "tab:orange", "tab:red", "tab:gray")):
        widths = [per_task[t][kind] for t in names]
        ax.barh(names, widths, left=left, color=colour, label=kind.replace("_", " "))
        left = [a + b for a, b in zip(left, widths)]
    ax.invert_yaxis()
    ax.set_xlabel(f"answers after {stage} (%)")
    ax.legend(fontsize=7, ncol=4, loc="lower center", bbox_to_anchor=(0.5, 1.0))
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def grid_answer_alignment(runs: Iterable[tuple[str, Path]], task_labels, earlier: dict | None = None) -> dict:
    """Answer kinds of the old tasks after the last stage, per method, over a grid's finished runs.

    ``runs`` gives (method label, run folder); ``task_labels(folder)`` the labels of each task of that run. Per method:
    the mean over its runs of ``final_old``, and per old task the mean share of answers that are another task's label;
    ``runs`` keeps each run's own numbers. Runs with nothing to sort (one stage, such as MTL; no predictions) are listed
    under ``skipped`` with the reason.

    A run whose folder is gone (run folders live outside the repository and do not outlive their machine) is taken from
    ``earlier``, a previous result of this function, when that sorted the same folder; else it is listed as skipped.
    """
    earlier = earlier or {}
    kept = {r["folder"]: r for r in earlier.get("runs", [])}
    kept_skips = {s["folder"]: s for s in earlier.get("skipped", [])}
    entries: list[dict] = []
    skipped: list[dict] = []
    for method, folder in runs:
        key = str(folder)  # how results and earlier analyses name a run
        if not (Path(folder) / "metrics.json").exists():
            if key in kept:
                entries.append({**kept[key], "method": method})
            else:
                why = kept_skips[key]["why"] if key in kept_skips \
                    else "its folder is gone and no earlier analysis sorted it"
                skipped.append({"method": method, "folder": key, "why": why})
            continue
        result = run_answer_alignment(folder, task_labels(folder))
        if "final_old" not in result:
            skipped.append({"method": method, "folder": key, "why": result["no_old_tasks"]})
        else:
            final = result["stages"][result["final_old"]["stage"]]
            entries.append({"method": method, "folder": key, **{k: result["final_old"][k] for k in SHARES},
                            "other_task_label_by_task": {t: final[t]["other_task_label"]
                                                         for t in result["final_old"]["tasks"]}})
    per_method: dict[str, list[dict]] = {}
    for entry in entries:
        per_method.setdefault(entry["method"], []).append(entry)
    table = {}
    for method, rows in per_method.items():
        tasks = sorted({t for r in rows for t in r["other_task_label_by_task"]})
        table[method] = {"runs": len(rows), **{k: fmean(r[k] for r in rows) for k in SHARES},
                         "other_task_label_by_task": {
                             t: fmean([r["other_task_label_by_task"][t] for r in rows
                                       if t in r["other_task_label_by_task"]]) for t in tasks},
                         "folders": [r["folder"] for r in rows]}
    return {"methods": table, "runs": entries, "skipped": skipped}


def answer_table_markdown(grid: dict) -> str:
    """Two markdown tables: the answer kinds of old tasks per method, and the other-task share per old task.

    The first table's last column is a part of ``other`` (answers that begin like another task's label)."""
    table = grid["methods"]
    lines = ["| method | runs | correct | own label, wrong | another task's label | other | of which begins like "
             "another task's label |", "|---|---|---|---|---|---|---|"]
    for method, row in table.items():
        lines.append(f"| {method} | {row['runs']} | " + " | ".join(f"{row[k]:.1f}" for k in SHARES) + " |")
    tasks = sorted({t for row in table.values() for t in row["other_task_label_by_task"]})
    lines += ["", "Answers that are another task's label (%), per old task:", "",
              "| method | " + " | ".join(tasks) + " |", "|---|" + "---|" * len(tasks)]
    for method, row in table.items():
        by_task = row["other_task_label_by_task"]
        lines.append(f"| {method} | " + " | ".join(f"{by_task[t]:.1f}" if t in by_task else "–" for t in tasks) + " |")
    if grid["skipped"]:
        lines += ["", "Left out:", ""] + [f"- {s['method']}: {Path(s['folder']).name} ({s['why']})" for s in grid["skipped"]]
    return "\n".join(lines) + "\n"
