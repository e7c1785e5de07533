"""Scoring one answer against its acceptable answers: the one place these formulas live.

Every task carries a metric (``Task.metric``; a benchmark chooses it, ``data.metrics: {TASK: METRIC}`` overrides it):

- ``exact_match``     the normalised prediction equals a normalised answer (SQuAD-style: lower case, punctuation and
                      articles dropped, white space folded), on as many lines as the answer has. Normalisation never
                      turns a non-empty text into an empty one (an answer "A" stays "a"), and keeps the decimal point
                      and thousands comma of a number ("17.48" is not "1748"). An empty prediction scores 0.
- ``choice_letter``   the option letter: the prediction opens (after any bracket or space) with a letter standing
                      alone — followed by its end, a line break, ")", "]", "." or ":" — equal to the answer's
                      (TRACE's C-STANCE, FOMC, ScienceQA: "B\\nA clause is…" answers B; "A clause is…" answers
                      nothing: a leading article is not option A).
- ``number``          the first number in the prediction equals the answer's (TRACE's NumGLUE; "2.0" = "2";
                      thousands commas read as such); a gold that holds no number ("Friday": 3 of NumGLUE-cm's 81
                      test golds) is compared as exact_match compares text.
- ``rouge_l``         ROUGE-L F1 (Google's ``rouge-score``, its default tokenizer), best over the answers.
- ``edit_similarity`` ``rapidfuzz.fuzz.ratio`` (the Levenshtein ratio of fuzzywuzzy, which TRACE uses for Py150)
                      after TRACE's Py150 literal normalisation (<NUM_LIT> → 0, <STR_LIT:x> → x, …).
- ``sari``            SARI (Xu et al., 2016) against the source (the prompt), as the HF/EASSE implementation computes
                      it (lower case, 13a tokenisation, n-grams 1-4, keep F1 / deletion precision / addition F1).
                      Written here because the libraries that ship it (``evaluate``, ``datasets``) fetch the code from
                      the Hub at run time; it is tested on the documented example of that implementation (26.95).

All scores are percentages.
"""
from __future__ import annotations

import re
import string
from collections import Counter
from collections.abc import Callable, Sequence

_PUNCT = set(string.punctuation)
_ARTICLES = re.compile(r"\b(a|an|the)\b")
_NUMBER_PUNCT = re.compile(r"(?<=\d)[.,](?=\d)")
_KEEP = "\x00"  # stands for a number's point or comma while punctuation is dropped


def normalize_answer(text: str) -> str:
    """Lower case, drop punctuation (not a number's point or comma) and articles, fold white space."""
    text = _NUMBER_PUNCT.sub(lambda m: _KEEP + ("p" if m.group() == "." else "c"), text.lower())
    text = "".join(ch for ch in text if ch not in _PUNCT)
    text = text.replace(_KEEP + "p", ".").replace(_KEEP + "c", ",")
    folded = " ".join(_ARTICLES.sub(" ", text).split())
    return folded or " ".join(text.split())  # "a" alone is an answer (an option letter), not an article


def _first_lines(text: str, n: int) -> str:
    return "\n".join(text.strip().split("\n")[:n])


def exact_match(prediction: str, answers: Sequence[str], source: str = "") -> float:
    for answer in answers:
        pred = normalize_answer(_first_lines(prediction, answer.strip().count("\n") + 1))
        if pred and pred == normalize_answer(answer):
            return 100.0
    return 0.0


_LETTER = re.compile(r"^[\s(\[]*([A-Za-z])(?=$|\s*\n|[)\].:])")


def choice_letter(prediction: str, answers: Sequence[str], source: str = "") -> float:
    pred = _LETTER.match(prediction)
    golds = {m.group(1).upper() for m in map(_LETTER.match, answers) if m}
    return 100.0 if pred and pred.group(1).upper() in golds else 0.0


_NUMBER = re.compile(r"-?\d+(?:,\d{3})*(?:\.\d+)?|-?\.\d+")


def _first_number(text: str) -> float | None:
    m = _NUMBER.search(text)
    return float(m.group().replace(",", "")) if m else None


def number(prediction: str, answers: Sequence[str], source: str = "") -> float:
    pred = _first_number(prediction)
    for answer in answers:
        gold = _first_number(answer)
        if gold is None:  # not a number: compared as text
            if exact_match(prediction, [answer]):
                return 100.0
        elif pred is not None and abs(pred - gold) <= 1e-6 * max(1.0, abs(gold)):
            return 100.0
    return 0.0


def rouge_l(prediction: str, answers: Sequence[str], source: str = "") -> float:
    from rouge_score import rouge_scorer  # Google's reference implementation (SuperNI's official metric)
    if not prediction.strip():
        return 0.0
    scorer = rouge_scorer.RougeScorer(["rougeL"])
    return 100.0 * max(scorer.score(a, prediction)["rougeL"].fmeasure for a in answers)


_LITERAL = re.compile(r"<(STR|NUM|CHAR)_LIT:(.*?)>", re.S)


def normalize_code_literals(code: str) -> str:
    """TRACE's Py150 post-processing of its literal placeholders."""
    code = code.replace("<NUM_LIT>", "0").replace("<STR_LIT>", "").replace("<CHAR_LIT>", "")
    return _LITERAL.sub(lambda m: m.group(2), code)


def edit_similarity(prediction: str, answers: Sequence[str], source: str = "") -> float:
    from rapidfuzz import fuzz
    pred = normalize_code_literals(prediction)
    if not pred.strip():
        return 0.0
    return max(float(fuzz.ratio(pred, normalize_code_literals(a))) for a in answers)


# ---------------------------------------------------------------- SARI

_13A = [(re.compile(r"([\{-\~\[-\` -\&\(-\+\:-\@\/])"), r" \1 "), (re.compile(r"([^0-9])([\.,])"), r"\1 \2 "),
        (re.compile(r"([\.,])([^0-9])"), r" \1 \2"), (re.compile(r"([0-9])(-)"), r"\1 \2 ")]


def tokenize_13a(line: str) -> str:
    """sacrebleu's 13a tokenisation (mteval-v13a): punctuation split off, except a number's point, comma and dash."""
    line = line.replace("<skipped>", "").replace("-\n", "").replace("\n", " ")
    if "&" in line:
        line = line.replace("&quot;", '"').replace("&amp;", "&").replace("&lt;", "<").replace("&gt;", ">")
    line = f" {line} "
    for pattern, repl in _13A:
        line = pattern.sub(repl, line)
    return " ".join(line.split())


def _ngrams(tokens: list[str], n: int) -> list[str]:
    return [" ".join(tokens[i:i + n]) for i in range(len(tokens) - n + 1)]


def _sari_ngram(source: list[str], candidate: list[str], references: list[list[str]]) -> tuple[float, float, float]:
    """(keep F1, deletion precision, addition F1) of one n-gram order; 0/0 counts as 1 (an exact match scores)."""
    numref = len(references)
    ref_counts = Counter(g for r in references for g in r)
    src = Counter({g: c * numref for g, c in Counter(source).items()})
    cand = Counter({g: c * numref for g, c in Counter(candidate).items()})

    def f1(p: float, r: float) -> float:
        return 2 * p * r / (p + r) if p > 0 or r > 0 else 0.0

    keep, keep_all = src & cand, src & ref_counts
    keep_good = keep & ref_counts
    keep_p = sum(keep_good[g] / keep[g] for g in keep) / len(keep) if keep else 1.0
    keep_r = sum(keep_good[g] for g in keep) / sum(keep_all.values()) if keep_all else 1.0
    deleted = src - cand
    deleted_good = deleted - ref_counts
    del_p = sum(deleted_good[g] / deleted[g] for g in deleted) / len(deleted) if deleted else 1.0
    added, added_all = set(cand) - set(src), set(ref_counts) - set(src)
    added_good = added & set(ref_counts)
    add_p = len(added_good) / len(added) if added else 1.0
    add_r = len(added_good) / len(added_all) if added_all else 1.0
    return f1(keep_p, keep_r), del_p, f1(add_p, add_r)


def sari(prediction: str, answers: Sequence[str], source: str = "") -> float:
    def tokens(text: str) -> list[str]:
        return tokenize_13a(text.lower()).split(" ")
    src, cand, refs = tokens(source), tokens(prediction), [tokens(a) for a in answers]
    parts = [_sari_ngram(_ngrams(src, n), _ngrams(cand, n), [_ngrams(r, n) for r in refs]) for n in (1, 2, 3, 4)]
    keep, delete, add = (sum(p[i] for p in parts) / 4 for i in range(3))
    return 100.0 * (keep + delete + add) / 3


SCORERS: dict[str, Callable[[str, Sequence[str], str], float]] = {
    "exact_match": exact_match, "choice_letter": choice_letter, "number": number, "rouge_l": rouge_l,
    "edit_similarity": edit_similarity, "sari": sari}


def example_scores(metric: str, predictions: Sequence[str], answers: Sequence[Sequence[str]],
                   sources: Sequence[str] | None = None) -> list[float]:
    """Each prediction's score (%) against its acceptable answers (``sources``: the prompts, for SARI)."""
    if len(predictions) != len(answers):
        raise ValueError(f"{len(predictions)} predictions for {len(answers)} examples")
    if not predictions:
        raise ValueError("cannot score an empty test set")
    fn = SCORERS[metric]
    sources = sources or [""] * len(predictions)
    return [fn(p, a, s) for p, a, s in zip(predictions, answers, sources)]


def score(metric: str, predictions: Sequence[str], answers: Sequence[Sequence[str]],
          sources: Sequence[str] | None = None) -> float:
    """Mean score (%) of predictions against their acceptable answers: every metric is a mean over examples."""
    scores = example_scores(metric, predictions, answers, sources)
    return sum(scores) / len(scores)
