"""cifar.metrics at its edges, where test_metrics.py's examples left mutants alive (scripts/mutation.py):
defaults, the other normalisations, classes that never occur, and no warnings on the way.

The 3-class example is test_metrics.py's: confusion rows [2, 1, 0], [0, 1, 1], [1, 1, 2].
"""

from __future__ import annotations

import warnings

import numpy as np
import pytest

from cifar import metrics as M

Y_TRUE = np.array([0, 0, 0, 1, 1, 2, 2, 2, 2])
Y_PRED = np.array([0, 1, 0, 1, 2, 2, 2, 0, 1])
NAMES = ["a", "b", "c"]


@pytest.fixture(autouse=True)
def no_warnings():
    # Empty bins, absent classes and never-predicted classes are expected input: they must not warn
    # (sklearn's UndefinedMetricWarning, numpy's 0/0), which would also flood the CLI's output.
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        yield


def test_confusion_is_ten_classes_wide_by_default():
    assert M.confusion([0], [1]).shape == (10, 10)


def test_confusion_normalised_by_column_and_by_all():
    # Columns sum to 3, 3, 3; everything to 9.
    cm = M.confusion(Y_TRUE, Y_PRED, n_classes=3, normalize="pred")
    np.testing.assert_allclose(cm, [[2 / 3, 1 / 3, 0], [0, 1 / 3, 1 / 3], [1 / 3, 1 / 3, 2 / 3]], rtol=1e-15)
    assert cm.dtype == np.float64
    np.testing.assert_allclose(M.confusion(Y_TRUE, Y_PRED, n_classes=3, normalize="all"),
                               np.array([[2, 1, 0], [0, 1, 1], [1, 1, 2]]) / 9, rtol=1e-15)


def test_a_never_predicted_column_normalises_to_zeros():
    cm = M.confusion([0, 1, 2], [0, 0, 1], n_classes=3, normalize="pred")
    np.testing.assert_array_equal(cm, [[0.5, 0, 0], [0.5, 0, 0], [0, 1, 0]])


def test_a_bad_normalisation_says_which_are_valid():
    with pytest.raises(ValueError, match=r"normalize must be None, 'true', 'pred' or 'all', not 'rows'"):
        M.confusion(Y_TRUE, Y_PRED, n_classes=3, normalize="rows")


def test_per_class_accuracy_of_an_absent_class_is_nan_quietly():
    acc = M.per_class_accuracy([0, 0, 1], [0, 2, 1], n_classes=3)
    assert acc[:2].tolist() == [0.5, 1.0] and np.isnan(acc[2])


def test_averages_count_a_class_that_never_occurs():
    # "c" is neither true nor predicted: it still counts in the macro average (as a 0), as in the table.
    t = M.classification_table([0, 1, 1], [0, 0, 1], NAMES)
    assert t["per_class"]["a"]["precision"] == 0.5 and t["per_class"]["b"]["precision"] == 1.0
    assert t["macro"]["precision"] == pytest.approx((0.5 + 1.0 + 0.0) / 3, abs=1e-15)
    assert t["macro"]["support"] == 3 and t["weighted"]["support"] == 3


def test_a_never_predicted_class_has_precision_zero():
    t = M.classification_table([0, 1], [0, 0], NAMES)
    assert t["per_class"]["b"]["precision"] == 0.0
    assert t["macro"]["precision"] == pytest.approx(0.5 / 3, abs=1e-15)


def test_top_k_with_k_of_all_classes_is_one():
    probs = np.array([[0.2, 0.3, 0.5], [0.6, 0.3, 0.1]])
    assert M.top_k_accuracy([0, 1], probs, 3) == 1.0
    assert M.top_k_accuracy([0, 1], probs, 2) == 0.5


def test_reliability_bins_with_empty_bins_do_not_warn():
    bins = M.reliability_bins([0, 1], np.array([[0.9, 0.1], [0.9, 0.1]]), n_bins=4)
    assert bins["count"].tolist() == [0, 0, 0, 2]
    assert np.isnan(bins["accuracy"][:3]).all() and bins["accuracy"][3] == 0.5


def many_confusions() -> np.ndarray:
    cm = np.zeros((10, 10), dtype=int)
    for t in range(10):
        cm[t, (t + 1) % 10] = 10 - t  # 10 off-diagonal cells
        cm[t, (t + 2) % 10] = 1  # and 10 more, all tied at 1
    return cm


def test_most_confused_keeps_ten_by_default():
    pairs = M.most_confused_pairs(many_confusions())
    assert len(pairs) == 10
    assert [p["count"] for p in pairs] == [10, 9, 8, 7, 6, 5, 4, 3, 2, 1]


def test_the_summary_lists_the_ten_most_confused_pairs():
    cm = many_confusions()
    y_true = np.repeat(np.arange(10), cm.sum(1))
    y_pred = np.concatenate([np.repeat(np.arange(10), row) for row in cm])
    probs = np.eye(10)[y_pred]
    summary = M.summarize(y_true, probs, [str(i) for i in range(10)])
    assert len(summary["most_confused"]) == 10 and summary["most_confused"][0]["count"] == 10


def test_format_report_lists_every_class_with_three_digits():
    text = M.format_report([0, 1], [0, 0], NAMES)
    lines = {line.split()[0]: line.split()[1:] for line in text.splitlines() if line.strip()}
    assert lines["c"] == ["0.000", "0.000", "0.000", "0"]  # absent everywhere, still listed
    assert lines["b"][0] == "0.000"  # never predicted: precision 0, not 1
    assert lines["a"][:3] == ["0.500", "1.000", "0.667"]
