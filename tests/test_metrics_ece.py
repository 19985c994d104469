"""ECE's bin count where it is used: 15 equal-width bins in the summary (`.metrics.json`, the app).

Two predictions whose confidences (0.66, 0.67) share a bin of width 1/10 or 1/20 but not one of
width 1/15, so the number of bins decides the value.
"""

from __future__ import annotations

import numpy as np
import pytest

from cifar import CLASSES
from cifar import metrics as M


def two_predictions():
    probs = np.full((2, 10), 0.0)
    for row, top in enumerate((0.66, 0.67)):
        probs[row] = (1 - top) / 9
        probs[row, 0] = top
    return np.array([0, 1]), probs  # the first is right, the second wrong, both predict class 0


# By hand: with 15 bins each prediction has a bin of its own: ½|1 - 0.66| + ½|0 - 0.67| = 0.505. With 10
# or 20 they share (0.6, 0.7] or (0.65, 0.7]: |½ - 0.665| = 0.165.
ECE_15, ECE_SHARED = 0.505, 0.165


def test_ece_uses_15_bins_by_default():
    y, probs = two_predictions()
    assert M.expected_calibration_error(y, probs) == pytest.approx(ECE_15, abs=1e-12)
    assert M.expected_calibration_error(y, probs, n_bins=10) == pytest.approx(ECE_SHARED, abs=1e-12)
    assert M.expected_calibration_error(y, probs, n_bins=20) == pytest.approx(ECE_SHARED, abs=1e-12)


def test_the_summary_reports_the_15_bin_ece():
    y, probs = two_predictions()
    assert M.summarize(y, probs, CLASSES)["ece"] == pytest.approx(ECE_15, abs=1e-12)


def test_reliability_bins_default_to_the_same_15():
    y, probs = two_predictions()
    bins = M.reliability_bins(y, probs)
    assert len(bins["count"]) == 15 and bins["bin_upper"][9] == pytest.approx(2 / 3)
    assert bins["count"][9] == 1 and bins["count"][10] == 1
