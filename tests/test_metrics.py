import pytest

from continual_lm.evaluation.metrics import (average_performance, backward_transfer, exact_match, forgetting,
                                             forward_transfer, learning_accuracy, normalize_answer,
                                             overall_performance, rouge_l, score, summarize)
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


def test_rouge_l_hand_computed():
    # LCS("the cat sat on mat", "cat sat on the mat") after dropping articles: [cat sat on mat] vs [cat sat on mat]
    assert rouge_l("the cat sat on mat", ["cat sat on the mat"]) == pytest.approx(100.0)
    # pred "x y z w" vs ref "x z v": LCS = 2 (x z); P = 2/4, R = 2/3, F = 2PR/(P+R) = 4/7
    assert rouge_l("x y z w", ["x z v"]) == pytest.approx(100 * 4 / 7)
    assert rouge_l("", ["x"]) == 0.0
    assert score("rouge_l", ["x y z w", "q"], [["x z v"], ["q"]]) == pytest.approx((100 * 4 / 7 + 100) / 2)


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
