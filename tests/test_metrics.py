"""Tests for cifar.metrics against small hand-computed examples."""

import json
import math

import numpy as np
import pytest

from cifar import metrics as M

# 3-class example. By hand:
#   true 0: predicted 0,1,0     -> row [2, 1, 0]
#   true 1: predicted 1,2       -> row [0, 1, 1]
#   true 2: predicted 2,2,0,1   -> row [1, 1, 2]
Y_TRUE = np.array([0, 0, 0, 1, 1, 2, 2, 2, 2])
Y_PRED = np.array([0, 1, 0, 1, 2, 2, 2, 0, 1])
CM = [[2, 1, 0], [0, 1, 1], [1, 1, 2]]
NAMES = ["a", "b", "c"]


def test_softmax_stable_on_huge_logits():
    p = M.softmax(np.array([[1000.0, 1000.0], [1000.0, 0.0], [-1000.0, -1000.0 + math.log(3)]]))
    assert np.all(np.isfinite(p))
    np.testing.assert_allclose(p, [[0.5, 0.5], [1.0, 0.0], [0.25, 0.75]], atol=1e-12)


def test_softmax_rows_sum_to_one_and_float64():
    p = M.softmax(np.array([[0.0, math.log(3)], [1.0, 2.0]], dtype=np.float32))
    assert p.dtype == np.float64
    np.testing.assert_allclose(p.sum(axis=1), 1.0)
    np.testing.assert_allclose(p[0], [0.25, 0.75], rtol=1e-6)


def test_accuracy():
    assert M.accuracy(Y_TRUE, Y_PRED) == pytest.approx(5 / 9)


def test_confusion_counts():
    cm = M.confusion(Y_TRUE, Y_PRED, n_classes=3)
    assert np.issubdtype(cm.dtype, np.integer)
    assert cm.tolist() == CM


def test_confusion_pads_to_n_classes():
    cm = M.confusion([0, 1], [0, 0], n_classes=4)
    assert cm.shape == (4, 4)
    assert cm.sum() == 2 and cm[1, 0] == 1


def test_confusion_normalize_true():
    cm = M.confusion(Y_TRUE, Y_PRED, n_classes=3, normalize="true")
    np.testing.assert_allclose(cm, [[2 / 3, 1 / 3, 0], [0, 0.5, 0.5], [0.25, 0.25, 0.5]])
    np.testing.assert_allclose(cm.sum(axis=1), 1.0)


def test_confusion_normalize_true_empty_row_is_zero():
    # Class 2 never occurs in y_true: its row must be zeros, not NaN.
    cm = M.confusion([0, 0, 1], [0, 2, 1], n_classes=3, normalize="true")
    np.testing.assert_allclose(cm, [[0.5, 0, 0.5], [0, 1, 0], [0, 0, 0]])


def test_confusion_bad_normalize():
    with pytest.raises(ValueError):
        M.confusion(Y_TRUE, Y_PRED, n_classes=3, normalize="rows")


def test_per_class_accuracy():
    np.testing.assert_allclose(M.per_class_accuracy(Y_TRUE, Y_PRED, 3), [2 / 3, 1 / 2, 2 / 4])


def test_per_class_accuracy_absent_class_is_nan():
    acc = M.per_class_accuracy([0, 0, 1], [0, 2, 1], n_classes=3)
    assert acc.shape == (3,)
    assert acc[0] == pytest.approx(0.5) and acc[1] == pytest.approx(1.0)
    assert np.isnan(acc[2])


def test_classification_table():
    t = M.classification_table(Y_TRUE, Y_PRED, NAMES)
    # Column sums are 3, 3, 3 -> precision = diag / 3; recall = diag / row sums (3, 2, 4).
    prec = [2 / 3, 1 / 3, 2 / 3]
    rec = [2 / 3, 1 / 2, 1 / 2]
    f1 = [2 / 3, 2 / 5, 4 / 7]
    sup = [3, 2, 4]
    for i, name in enumerate(NAMES):
        row = t["per_class"][name]
        assert row["precision"] == pytest.approx(prec[i])
        assert row["recall"] == pytest.approx(rec[i])
        assert row["f1"] == pytest.approx(f1[i])
        assert row["support"] == sup[i]
    assert t["macro"]["precision"] == pytest.approx(sum(prec) / 3)
    assert t["macro"]["f1"] == pytest.approx(sum(f1) / 3)
    assert t["weighted"]["recall"] == pytest.approx(5 / 9)  # weighted recall == accuracy
    assert t["weighted"]["f1"] == pytest.approx(sum(f * s for f, s in zip(f1, sup)) / 9)
    assert t["accuracy"] == pytest.approx(5 / 9)


def test_classification_table_zero_division():
    # Class "c" is never predicted nor present: all zeros, no warning-driven NaN.
    t = M.classification_table([0, 1], [0, 0], NAMES)
    assert t["per_class"]["c"] == {"precision": 0.0, "recall": 0.0, "f1": 0.0, "support": 0}
    assert t["per_class"]["b"]["precision"] == 0.0


# Ranks of the true label, by hand: 2, 1, 4, 3. y_true only uses classes 0 and 2.
TOPK_PROBS = np.array(
    [
        [0.10, 0.60, 0.25, 0.05],
        [0.70, 0.10, 0.15, 0.05],
        [0.05, 0.10, 0.15, 0.70],
        [0.20, 0.30, 0.40, 0.10],
    ]
)
TOPK_TRUE = np.array([2, 0, 0, 0])


@pytest.mark.parametrize("k, expected", [(1, 0.25), (2, 0.5), (3, 0.75)])
def test_top_k_accuracy(k, expected):
    assert M.top_k_accuracy(TOPK_TRUE, TOPK_PROBS, k) == pytest.approx(expected)


# Hand-built ECE case, 5 bins (edges 0, .2, .4, .6, .8, 1):
#   conf .9 correct, conf .9 wrong -> bin 4: acc .5, conf .9, gap .4, weight 2/4
#   conf .5 correct                -> bin 2: acc 1,  conf .5, gap .5, weight 1/4
#   conf .7 wrong                  -> bin 3: acc 0,  conf .7, gap .7, weight 1/4
#   ECE = .2 + .125 + .175 = .5
ECE_PROBS = np.array(
    [[0.9, 0.05, 0.05], [0.9, 0.05, 0.05], [0.3, 0.5, 0.2], [0.7, 0.2, 0.1]]
)
ECE_TRUE = np.array([0, 1, 1, 2])


def test_ece_hand_value():
    assert M.expected_calibration_error(ECE_TRUE, ECE_PROBS, n_bins=5) == pytest.approx(0.5)


def test_ece_zero_for_confident_correct():
    y = np.array([0, 1, 2, 1, 0])
    assert M.expected_calibration_error(y, np.eye(3)[y]) == pytest.approx(0.0, abs=1e-12)


def test_reliability_bins_hand_values():
    b = M.reliability_bins(ECE_TRUE, ECE_PROBS, n_bins=5)
    np.testing.assert_allclose(b["bin_lower"], [0, 0.2, 0.4, 0.6, 0.8])
    np.testing.assert_allclose(b["bin_upper"], [0.2, 0.4, 0.6, 0.8, 1.0])
    assert b["count"].tolist() == [0, 0, 1, 1, 2]
    np.testing.assert_allclose(b["confidence"], [np.nan, np.nan, 0.5, 0.7, 0.9])
    np.testing.assert_allclose(b["accuracy"], [np.nan, np.nan, 1.0, 0.0, 0.5])


def test_reliability_bins_edges_are_upper_inclusive():
    # Confidence exactly 0.5 belongs to (0, 0.5]; 1.0 to the last bin.
    b = M.reliability_bins(np.array([0, 0]), np.array([[0.5, 0.5], [1.0, 0.0]]), n_bins=2)
    assert b["count"].tolist() == [1, 1]


# Off-diagonal counts by hand: (0,2)=5, (2,0)=5, (0,1)=2, (1,0)=2, (2,1)=1, (1,2)=0.
CONF_CM = np.array([[9, 2, 5], [2, 9, 0], [5, 1, 9]])


def test_most_confused_order_and_ties():
    pairs = M.most_confused_pairs(CONF_CM)
    assert [(p["true"], p["pred"], p["count"]) for p in pairs] == [
        (0, 2, 5), (2, 0, 5), (0, 1, 2), (1, 0, 2), (2, 1, 1)
    ]  # (1, 2) has count 0 and is left out; the diagonal never appears
    assert "true_name" not in pairs[0]


def test_most_confused_k_and_names():
    pairs = M.most_confused_pairs(CONF_CM, k=2, class_names=NAMES)
    assert pairs == [
        {"true": 0, "pred": 2, "count": 5, "true_name": "a", "pred_name": "c"},
        {"true": 2, "pred": 0, "count": 5, "true_name": "c", "pred_name": "a"},
    ]
    assert all(type(v) is int for p in pairs for v in (p["true"], p["pred"], p["count"]))


def test_summarize_json_round_trip():
    # Class 2 is absent from y_true, so its per-class accuracy is undefined.
    probs = np.array([[0.7, 0.2, 0.1], [0.3, 0.6, 0.1], [0.5, 0.4, 0.1], [0.1, 0.3, 0.6]])
    y = np.array([0, 1, 1, 0])  # argmax: 0, 1, 0, 2 -> 2 of 4 right
    s = M.summarize(y, probs, NAMES)
    back = json.loads(json.dumps(s, allow_nan=False))  # strict JSON: no numpy types, no NaN
    assert back == s
    assert s["n"] == 4
    assert s["accuracy"] == pytest.approx(0.5)
    # True-label ranks: 1, 1, 2, 3.
    assert s["top_k"] == pytest.approx({"top1": 0.5, "top2": 0.75, "top3": 1.0})
    assert s["per_class_accuracy"] == {"a": 0.5, "b": 0.5, "c": None}
    assert s["confusion"] == [[1, 0, 1], [1, 1, 0], [0, 0, 0]]
    assert s["classification"]["accuracy"] == pytest.approx(0.5)
    # Bins of 1/15: conf .7 correct, .6 correct, .5 wrong, .6 wrong; .6 and .6 share a bin.
    assert s["ece"] == pytest.approx((abs(1 - 0.7) + abs(0.5 - 0.6) * 2 + abs(0 - 0.5)) / 4)
    assert [(p["true"], p["pred"]) for p in s["most_confused"]] == [(0, 2), (1, 0)]
    assert s["most_confused"][0]["true_name"] == "a"


def test_format_report():
    text = M.format_report(Y_TRUE, Y_PRED, NAMES, digits=3)
    lines = text.splitlines()
    row_a = next(line for line in lines if line.split()[:1] == ["a"])
    assert row_a.split() == ["a", "0.667", "0.667", "0.667", "3"]
    assert "accuracy" in text and "macro avg" in text and "weighted avg" in text


def test_flip_tta_averages_the_two_views():
    y = np.array([0, 1, 2])
    plain = np.array([[0.6, 0.4, 0.0], [0.45, 0.55, 0.0], [0.5, 0.0, 0.5]])
    mirror = np.array([[0.3, 0.7, 0.0], [0.60, 0.40, 0.0], [0.0, 0.1, 0.9]])
    # image 0: 0.9 vs 1.1 → class 1 (wrong, though the plain view was right);
    # image 1: 1.05 vs 0.95 → class 0 (wrong); image 2: class 2 (right, where the plain view tied).
    assert M.flip_tta_accuracy(y, plain, mirror) == pytest.approx(1 / 3)
    assert M.flip_tta_accuracy(y, plain, plain) == M.accuracy(y, plain.argmax(1))
