"""Evaluation metrics as pure functions on numpy arrays (labels are ints 0..n_classes-1).

Nothing here imports torch or Streamlit: callers turn model outputs into numpy first.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from sklearn.metrics import (
    accuracy_score,
    classification_report,
    confusion_matrix,
    precision_recall_fscore_support,
    top_k_accuracy_score,
)

from cifar import calibration

# Numpy-only, in cifar.calibration so the app can import them without scikit-learn; kept here for metrics' callers.
softmax = calibration.softmax
reliability_bins = calibration.reliability_bins
expected_calibration_error = calibration.expected_calibration_error


def accuracy(y_true: np.ndarray, y_pred: np.ndarray) -> float:
    """Fraction of predictions equal to the true label."""
    return float(accuracy_score(y_true, y_pred))


def flip_tta_accuracy(y_true: np.ndarray, probs: np.ndarray, probs_mirrored: np.ndarray) -> float:
    """Accuracy of flip test-time augmentation: the mean softmax of each image and its mirror image.

    Reported beside the single-pass accuracy, never instead of it: it costs two forward passes.
    """
    return accuracy(y_true, (np.asarray(probs) + np.asarray(probs_mirrored)).argmax(axis=1))


def confusion(
    y_true: np.ndarray, y_pred: np.ndarray, n_classes: int = 10, normalize: str | None = None
) -> np.ndarray:
    """Confusion matrix (rows = true, cols = predicted): int counts, or normalised floats."""
    # Fixed labels keep the matrix n_classes wide even when a class never occurs.
    cm = confusion_matrix(y_true, y_pred, labels=np.arange(n_classes))
    if normalize is None:
        return cm
    axis = {"true": 1, "pred": 0, "all": None}
    if normalize not in axis:
        raise ValueError(f"normalize must be None, 'true', 'pred' or 'all', not {normalize!r}")
    total = cm.sum(axis=axis[normalize], keepdims=True).astype(np.float64)
    # An empty row/column has nothing to normalise: leave it zero rather than NaN.
    return np.divide(cm, total, out=np.zeros(cm.shape, dtype=np.float64), where=total > 0)


def per_class_accuracy(y_true: np.ndarray, y_pred: np.ndarray, n_classes: int = 10) -> np.ndarray:
    """Accuracy (= recall) of each true class; NaN for a class absent from y_true."""
    cm = confusion(y_true, y_pred, n_classes)
    support = cm.sum(axis=1)
    out = np.full(n_classes, np.nan)
    # NaN, not 0, so an absent class is not mistaken for a class the model always gets wrong.
    np.divide(np.diag(cm), support, out=out, where=support > 0)
    return out


def classification_table(y_true: np.ndarray, y_pred: np.ndarray, class_names: Sequence[str]) -> dict:
    """Per-class, macro and weighted precision/recall/F1/support plus accuracy, as plain floats."""
    labels = np.arange(len(class_names))
    p, r, f, s = precision_recall_fscore_support(y_true, y_pred, labels=labels, zero_division=0)
    table: dict = {
        "per_class": {
            name: {"precision": float(p[i]), "recall": float(r[i]), "f1": float(f[i]), "support": int(s[i])}
            for i, name in enumerate(class_names)
        }
    }
    for avg in ("macro", "weighted"):
        ap, ar, af, _ = precision_recall_fscore_support(
            y_true, y_pred, labels=labels, average=avg, zero_division=0
        )
        # sklearn gives no support for averages; the total is what its text report shows.
        table[avg] = {"precision": float(ap), "recall": float(ar), "f1": float(af), "support": int(s.sum())}
    table["accuracy"] = accuracy(y_true, y_pred)
    return table


def top_k_accuracy(y_true: np.ndarray, probs: np.ndarray, k: int) -> float:
    """Fraction of samples whose true label is among the k highest scores."""
    if k >= probs.shape[1]:
        # Every label is in the top k; sklearn would return the same 1.0 but warn about it.
        return 1.0
    # Explicit labels: otherwise sklearn infers classes from y_true and fails when some are absent.
    return float(top_k_accuracy_score(y_true, probs, k=k, labels=np.arange(probs.shape[1])))


def most_confused_pairs(
    cm: np.ndarray, k: int = 10, class_names: Sequence[str] | None = None
) -> list[dict]:
    """The k largest non-zero off-diagonal cells of a count confusion matrix, largest first."""
    cm = np.asarray(cm)
    pairs = [
        (int(cm[t, p]), t, p)
        for t in range(cm.shape[0])
        for p in range(cm.shape[1])
        if t != p and cm[t, p] > 0
    ]
    # Ties go to the lower (true, pred) index so the order is deterministic.
    pairs.sort(key=lambda c: (-c[0], c[1], c[2]))
    out = []
    for count, t, p in pairs[:k]:
        row = {"true": t, "pred": p, "count": count}
        if class_names is not None:
            row["true_name"], row["pred_name"] = class_names[t], class_names[p]
        out.append(row)
    return out


def _nan_to_none(x: float) -> float | None:
    # NaN is not valid strict JSON; null is the honest "undefined".
    return None if np.isnan(x) else float(x)


def summarize(y_true: np.ndarray, probs: np.ndarray, class_names: Sequence[str]) -> dict:
    """All metrics for one evaluation as a JSON-serialisable dict of plain Python values."""
    y_true = np.asarray(y_true)
    probs = np.asarray(probs)
    n_classes = len(class_names)
    y_pred = probs.argmax(axis=1)
    cm = confusion(y_true, y_pred, n_classes)
    per_class = per_class_accuracy(y_true, y_pred, n_classes)
    return {
        "n": int(len(y_true)),
        "accuracy": accuracy(y_true, y_pred),
        "top_k": {f"top{k}": top_k_accuracy(y_true, probs, k) for k in (1, 2, 3)},
        "per_class_accuracy": {name: _nan_to_none(a) for name, a in zip(class_names, per_class)},
        "classification": classification_table(y_true, y_pred, class_names),
        "confusion": cm.tolist(),
        "ece": expected_calibration_error(y_true, probs),
        "most_confused": most_confused_pairs(cm, 10, class_names),
    }


def format_report(
    y_true: np.ndarray, y_pred: np.ndarray, class_names: Sequence[str], digits: int = 3
) -> str:
    """sklearn's text classification report, one row per class."""
    return classification_report(
        y_true, y_pred, labels=np.arange(len(class_names)), target_names=list(class_names),
        digits=digits, zero_division=0,
    )
