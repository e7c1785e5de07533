import pytest

from continual_lm.evaluation.metrics import (average_performance, backward_transfer, forgetting, forward_transfer,
                                             learning_accuracy, overall_performance, summarize)
from continual_lm.evaluation.scores import (choice_letter, edit_similarity, exact_match, normalize_answer, number,
                                            rouge_l, sari, score, tokenize_13a)
from continual_lm.reporting.report import paired_differences, paired_table

MATRIX = [[80.0, 10.0, 5.0],
          [60.0, 90.0, 20.0],
          [50.0, 70.0, 85.0]]
INITIAL = [0.0, 4.0, 15.0]


def test_op_bwt_fwt_hand_computed():
    assert overall_performance(MATRIX) == pytest.approx((50 + 70 + 85) / 3)
    # BWT: ((50-80) + (70-90)) / 2 = -25
    assert backward_transfer(MATRIX) == pytest.approx(-25.0)
    # FWT: ((10-4) + (20-15)) / 2 = 5.5
    assert forward_transfer(MATRIX, INITIAL) == pytest.approx(5.5)
    # LA: (80 + 90 + 85) / 3 = 85
    assert learning_accuracy(MATRIX) == pytest.approx(85.0)
    # F (max-based): task 0 best 80 before the end → 80 − 50; task 1 best 90 → 90 − 70; mean 25
    assert forgetting(MATRIX) == pytest.approx(25.0)
    # AP: mean over stages of the mean of the tasks seen so far: 80, (60+90)/2, (50+70+85)/3
    assert average_performance(MATRIX) == pytest.approx((80 + 75 + 205 / 3) / 3)
    assert summarize(MATRIX, INITIAL) == pytest.approx({"op": 205 / 3, "bwt": -25.0, "fwt": 5.5, "la": 85.0,
                                                        "f": 25.0, "ap": (80 + 75 + 205 / 3) / 3})


def test_forgetting_uses_the_best_earlier_score_not_the_first():
    # Task 0 improves after task 1 (backward transfer) and then drops: F counts from its best (70), BWT from 50.
    m = [[50.0, 0.0, 0.0],
         [70.0, 80.0, 0.0],
         [40.0, 80.0, 90.0]]
    assert forgetting(m) == pytest.approx(((70 - 40) + (80 - 80)) / 2)
    assert backward_transfer(m) == pytest.approx(((40 - 50) + (80 - 80)) / 2)
    # A task that ends above its best earlier score has negative forgetting, as in Chaudhry et al. (2018).
    assert forgetting([[50.0, 0.0], [60.0, 90.0]]) == pytest.approx(-10.0)
    # Cells after a task's own training are all evaluated under eval_tasks: seen_and_next; the rest may be None.
    assert forgetting([[50.0, 10.0, None], [40.0, 80.0, 5.0], [30.0, 60.0, 90.0]]) == pytest.approx(20.0)
    assert average_performance([[50.0, 10.0, None], [40.0, 80.0, 5.0], [30.0, 60.0, 90.0]]) == \
        pytest.approx((50 + 60 + 60) / 3)


def test_single_stage_matrix_has_no_bwt_fwt():
    assert backward_transfer([[70.0, 30.0]]) is None
    assert forward_transfer([[70.0, 30.0]], [0.0, 0.0]) is None
    assert learning_accuracy([[70.0, 30.0]]) is None
    assert forgetting([[70.0, 30.0]]) is None and average_performance([[70.0, 30.0]]) is None
    assert forgetting([[70.0]]) is None  # one task: nothing to forget
    assert overall_performance([[70.0, 30.0]]) == 50.0


def test_exact_match_normalises():
    assert normalize_answer("  The  Boston!! ") == "boston"
    assert exact_match("October 2 , 1996", ["October 2, 1996"]) == 100.0
    assert exact_match("world", ["World"]) == 100.0
    assert exact_match("sports", ["World"]) == 0.0
    assert exact_match("b", ["a", "b"]) == 100.0


def test_score_rejects_mismatch_and_empty():
    with pytest.raises(ValueError):
        score("exact_match", ["a"], [])
    with pytest.raises(ValueError):
        score("exact_match", [], [])


def test_paired_differences_hand_computed():
    def row(method, order, seed, op, bwt):
        return {"method": method, "order": order, "seed": seed, "op": op, "bwt": bwt}
    rows = [row("seq", 1, 0, 60.0, 0.0), row("seq", 1, 1, 62.0, -1.0), row("seq", 2, 0, 58.0, 1.0),
            row("a", 1, 0, 61.0, -1.0), row("a", 1, 1, 65.0, -2.0), row("a", 2, 0, 58.0, 0.0),
            row("mtl", 1, 0, 64.0, None), row("mtl", 3, 0, 70.0, None)]  # (3, 0): seq has no run there
    diffs = paired_differences(rows, "seq")
    # a − seq: OP 1, 3, 0 → mean 4/3, sample std √(14/3 / 2) = 1.528, se 1.528/√3 = 0.88; BWT −1 each time.
    assert diffs["a"] == {"cells": 3, "op": {"mean": 1.33, "se": 0.88}, "bwt": {"mean": -1.0, "se": 0.0}}
    assert diffs["mtl"] == {"cells": 1, "op": {"mean": 4.0, "se": None}, "bwt": None}
    assert paired_table(diffs, "seq").splitlines()[2:] == ["| a | 3 | +1.3 ± 0.9 | -1.0 ± 0.0 |", "| mtl | 1 | +4.0 | – |"]


# ---------------------------------------------------------------- answer scoring: cases observed to be wrong (issue 15)

def test_an_empty_prediction_never_matches_a_letter_answer():
    # SQuAD normalisation drops the article "a": gold "A" became "", and an empty prediction scored 100.
    assert normalize_answer("A") == "a" and normalize_answer("The") == "the"
    assert exact_match("", ["A"]) == 0.0 and exact_match("   ", ["A"]) == 0.0
    assert exact_match("A", ["A"]) == 100.0 and exact_match("a.", ["A"]) == 100.0
    assert exact_match("B", ["A"]) == 0.0
    assert score("exact_match", ["", "", "", ""], [["A"], ["B"], ["A"], ["C"]]) == 0.0  # an untrained model: 0, not 50


def test_a_multi_line_gold_is_matched_on_its_lines():
    gold = "B\nA clause is a group of words"
    assert exact_match("B\nA clause is a group of words", [gold]) == 100.0
    assert exact_match("B\nA clause is a group of words\nand more text after", [gold]) == 100.0  # 2 lines compared
    assert exact_match("World\nWhat is the topic?", ["World"]) == 100.0                          # 1 line compared
    assert choice_letter("B\nA clause is", [gold]) == 100.0 and choice_letter("A\nB", [gold]) == 0.0


def test_numbers_keep_their_decimal_point():
    assert normalize_answer("17.48") == "17.48" and normalize_answer("1,000 apples.") == "1,000 apples"
    assert exact_match("1748", ["17.48"]) == 0.0 and exact_match("17.48", ["17.48"]) == 100.0
    assert exact_match("October 2 , 1996", ["October 2, 1996"]) == 100.0  # a comma between words still goes


def test_choice_letter_by_hand():
    assert choice_letter("B", ["B"]) == 100.0
    assert choice_letter("(C) the third", ["C"]) == 100.0 and choice_letter(" b) yes", ["B"]) == 100.0
    assert choice_letter("", ["A"]) == 0.0 and choice_letter("Because", ["B"]) == 0.0   # a word is not a letter
    assert score("choice_letter", ["A", "C", ""], [["A"], ["B"], ["C"]]) == pytest.approx(100 / 3)


def test_number_by_hand():
    assert number("The answer is 2.0 moles", ["2"]) == 100.0 and number("2", ["2.5"]) == 0.0
    assert number("1748", ["17.48"]) == 0.0 and number("1,000", ["1000"]) == 100.0 and number("-3", ["-3.0"]) == 100.0
    assert number("", ["2"]) == 0.0 and number("two", ["2"]) == 0.0


def test_rouge_l_by_hand():
    # pred "x y z w" vs ref "x z v": LCS = 2 (x z); P = 2/4, R = 2/3, F = 2PR/(P+R) = 4/7
    assert rouge_l("x y z w", ["x z v"]) == pytest.approx(100 * 4 / 7)
    assert rouge_l("the cat sat on the mat", ["cat sat on mat"]) == pytest.approx(100 * 0.8)  # LCS 4: P 4/6, R 1
    assert rouge_l("", ["x"]) == 0.0
    assert rouge_l("q", ["x", "q"]) == 100.0                                                   # best answer
    assert score("rouge_l", ["x y z w", "q"], [["x z v"], ["q"]]) == pytest.approx((100 * 4 / 7 + 100) / 2)


def test_edit_similarity_by_hand():
    assert edit_similarity("abcd", ["abce"]) == 75.0           # Indel distance 2 over 8 characters
    assert edit_similarity("x = 0", ["x = <NUM_LIT>"]) == 100.0  # TRACE's literal placeholders
    assert edit_similarity("s = 'a'", ["s = '<STR_LIT:a>'"]) == 100.0
    assert edit_similarity("", ["abc"]) == 0.0


def test_sari_on_the_reference_implementations_example():
    """The documented example of the HF/EASSE SARI: 26.953601953601954."""
    source = "About 95 species are currently accepted."
    refs = ["About 95 species are currently known.", "About 95 species are now accepted.", "95 species are now accepted."]
    assert sari("About 95 you now get in.", refs, source) == pytest.approx(26.953601953601954)
    assert tokenize_13a("accepted. 3.5 a-b, c") == "accepted . 3.5 a-b , c"
    assert score("sari", ["About 95 you now get in."], [refs], [source]) == pytest.approx(26.953601953601954)


# ---------------------------------------------------------------- uncertainty and reference scores

def test_wilson_interval_of_exact_match_cells_by_hand():
    from continual_lm.evaluation.metrics import cell_interval
    c = cell_interval([100.0] * 8 + [0.0] * 2)  # 8/10: the textbook Wilson interval is 0.4902-0.9433
    assert (round(c["low"], 2), round(c["high"], 2), c["n"], c["mean"]) == (49.02, 94.33, 10, 80.0)
    assert c["se"] == pytest.approx((94.3318 - 49.0162) / (2 * 1.959964), abs=1e-3)  # the width the interval implies
    zero = cell_interval([0.0] * 10)  # 0/10: not the empty [0, 0] of the normal interval
    assert (zero["low"], round(zero["high"], 2)) == (0.0, 27.75)


def test_graded_cells_use_the_normal_interval_and_one_graded_example_has_none():
    from continual_lm.evaluation.metrics import cell_interval
    c = cell_interval([50.0, 100.0, 0.0, 50.0])  # sample sd = √(5000/3) = 40.82; se = 20.41
    assert c["se"] == pytest.approx(20.4124, abs=1e-4)
    assert (round(c["low"], 1), round(c["high"], 1)) == (10.0, 90.0)
    assert cell_interval([50.0])["low"] is None
    with pytest.raises(ValueError):
        cell_interval([])


def test_op_interval_adds_the_tasks_variances():
    from continual_lm.evaluation.metrics import op_interval
    low, high = op_interval([{"mean": 60.0, "se": 3.0}, {"mean": 80.0, "se": 4.0}])  # 70 ± 1.96·5/2
    assert (round(low, 2), round(high, 2)) == (65.1, 74.9)
    assert op_interval([{"mean": 60.0, "se": None}]) is None


def test_chance_and_majority_by_hand():
    from continual_lm.data.task import Example, Task
    from continual_lm.evaluation.evaluate import reference_scores
    opts = ("A", "B", "C")
    test = [Example("q", g, "t", opts) for g in "AABC"]
    train = [Example("q", g, "t", opts) for g in "BBAC"]
    ref = reference_scores(Task("t", train, test, options=opts))
    assert ref["chance"] == pytest.approx(100 / 3)   # (50 + 25 + 25) / 3
    assert ref["majority"] == 25.0                    # always "B": one of four
    free = reference_scores(Task("g", [], [Example("q", "x", "g")], metric="rouge_l"))
    assert free == {"chance": None, "majority": None}


def test_choice_letter_is_a_letter_standing_alone_not_a_leading_article():
    """Issue 29 (11): "A clause is…" begins with the article A, which is not option A."""
    gold = "A\nA clause is a group of words"
    assert choice_letter("A clause is a group of words", [gold]) == 0.0
    assert choice_letter("B is the answer", ["B"]) == 0.0                 # a letter followed by a word is a word
    for answer in ("A", "A.", "A:", "A)", "(A)", " A\nbecause", "[A] yes", "A. A clause", "a"):
        assert choice_letter(answer, [gold]) == 100.0, answer


def test_number_gold_that_is_not_a_number_is_compared_as_text():
    """Issue 29 (10): NumGLUE-cm holds golds such as "Friday"; the exact answer scores 100, not 0."""
    assert number("Friday", ["Friday"]) == 100.0 and number("friday.", ["Friday"]) == 100.0
    assert number("Monday", ["Friday"]) == 0.0 and number("", ["Friday"]) == 0.0
    assert number("5 days", ["5"]) == 100.0 and number("Friday 5", ["Friday"]) == 0.0  # a numeric gold reads numbers
    assert score("number", ["October", "12"], [["October"], ["12.0"]]) == 100.0
