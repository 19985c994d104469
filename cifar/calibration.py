"""Calibration: how far a model's confidence is from its accuracy, and temperature scaling to fix it.

Pure functions on numpy arrays (labels are ints 0..C-1, probabilities rows that sum to 1), numpy
only, so the app imports them as they are (cifar.metrics, which needs scikit-learn, re-exports the
ECE from here). `fit_temperature` alone uses torch, imported inside it.

Definitions (Guo et al., ICML 2017; see /shared/reference/trust-methods.md):
- confidence = the top probability; a bin's gap = |accuracy − mean confidence|;
- ECE = the gaps weighted by each bin's share of the samples; MCE = the largest gap over non-empty bins;
- equal-width bins split [0, 1] into n_bins intervals (lower, upper]; adaptive (equal-mass) bins hold
  equal numbers of samples, sorted by confidence;
- NLL = mean −log p(true class); Brier = mean over samples of Σ_c (p_c − 1[y = c])² (Brier's original
  multi-class score, 0 best, 2 worst).
"""

from __future__ import annotations

import time
from collections.abc import Sequence

import numpy as np

N_BINS = 15  # the common default for CIFAR (Guo et al.); every figure says which binning it used
EPS = 1e-12  # probabilities are clipped here before the log: float32 softmax underflows to exactly 0


def softmax(logits: np.ndarray) -> np.ndarray:
    """Row-wise softmax of (n, c) logits as float64, stable for huge logits."""
    z = np.asarray(logits, dtype=np.float64)
    # Subtracting the row max keeps exp() from overflowing; it cancels in the ratio.
    e = np.exp(z - z.max(axis=-1, keepdims=True))
    return e / e.sum(axis=-1, keepdims=True)


def scale_probs(probs: np.ndarray, temperature: float) -> np.ndarray:
    """softmax(logits / T) from the probabilities alone: log p differs from the logits by a per-row constant."""
    if temperature == 1.0:
        return np.asarray(probs)
    with np.errstate(divide="ignore"):
        logp = np.log(np.asarray(probs, dtype=np.float64))  # an exact 0 stays 0 after scaling
    return softmax(logp / float(temperature))


def _confidence(y_true: np.ndarray, probs: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    probs = np.asarray(probs)
    if probs.ndim != 2 or len(probs) != len(np.asarray(y_true)):
        raise ValueError(f"probs must be (n, classes) for n labels, got {probs.shape} for {len(np.asarray(y_true))} labels")
    return probs.max(axis=1), probs.argmax(axis=1) == np.asarray(y_true)


def reliability_bins(y_true: np.ndarray, probs: np.ndarray, n_bins: int = N_BINS, adaptive: bool = False) -> dict:
    """Per confidence bin: lower and upper edge, mean confidence, accuracy and count (NaN where empty).

    Equal-width bins are (lower, upper] over [0, 1]; adaptive bins each hold n/n_bins samples (±1) in
    confidence order, their edges the lowest and highest confidence they hold.
    """
    conf, correct = _confidence(y_true, probs)
    if adaptive:
        order = np.argsort(conf, kind="stable")
        groups = [g for g in np.array_split(order, n_bins)]
        count = np.array([len(g) for g in groups])
        nan = np.nan
        return {
            "bin_lower": np.array([conf[g].min() if len(g) else nan for g in groups]),
            "bin_upper": np.array([conf[g].max() if len(g) else nan for g in groups]),
            "confidence": np.array([conf[g].mean() if len(g) else nan for g in groups]),
            "accuracy": np.array([correct[g].mean() if len(g) else nan for g in groups]),
            "count": count,
        }
    edges = np.linspace(0.0, 1.0, n_bins + 1)
    # side="left" on the inner edges puts a confidence equal to an edge in the lower bin, i.e.
    # bins are (lower, upper], the usual ECE convention; conf == 0 falls in the first bin.
    idx = np.searchsorted(edges[1:-1], conf, side="left")
    count = np.bincount(idx, minlength=n_bins)
    conf_sum = np.bincount(idx, weights=conf, minlength=n_bins)
    acc_sum = np.bincount(idx, weights=correct.astype(np.float64), minlength=n_bins)
    with np.errstate(invalid="ignore", divide="ignore"):
        # 0/0 -> NaN marks an empty bin, which a reliability diagram should skip.
        return {
            "bin_lower": edges[:-1],
            "bin_upper": edges[1:],
            "confidence": conf_sum / count,
            "accuracy": acc_sum / count,
            "count": count,
        }


def _gaps(bins: dict) -> tuple[np.ndarray, np.ndarray]:
    filled = bins["count"] > 0
    return bins["count"][filled], np.abs(bins["accuracy"][filled] - bins["confidence"][filled])


def expected_calibration_error(y_true: np.ndarray, probs: np.ndarray, n_bins: int = N_BINS,
                               adaptive: bool = False) -> float:
    """ECE: sum over confidence bins of |accuracy - confidence| weighted by the bin's share of samples."""
    count, gap = _gaps(reliability_bins(y_true, probs, n_bins, adaptive))
    return float(np.sum(count / count.sum() * gap)) if count.size else float("nan")


def max_calibration_error(y_true: np.ndarray, probs: np.ndarray, n_bins: int = N_BINS, adaptive: bool = False) -> float:
    """MCE: the largest |accuracy − confidence| over the non-empty bins."""
    _, gap = _gaps(reliability_bins(y_true, probs, n_bins, adaptive))
    return float(gap.max()) if gap.size else float("nan")


def negative_log_likelihood(y_true: np.ndarray, probs: np.ndarray) -> float:
    """Mean −log p(true class), in nats; probabilities clipped at 1e-12 (an exact 0 would be infinite)."""
    probs = np.asarray(probs, dtype=np.float64)
    p = probs[np.arange(len(probs)), np.asarray(y_true)]
    return float(-np.mean(np.log(np.clip(p, EPS, 1.0))))


def brier_score(y_true: np.ndarray, probs: np.ndarray) -> float:
    """Mean over samples of Σ_c (p_c − 1[y = c])²: 0 for certain and right, 2 for certain and wrong."""
    probs = np.asarray(probs, dtype=np.float64)
    onehot = np.zeros_like(probs)
    onehot[np.arange(len(probs)), np.asarray(y_true)] = 1.0
    return float(np.mean(np.sum((probs - onehot) ** 2, axis=1)))


def calibration_summary(y_true: np.ndarray, probs: np.ndarray, n_bins: int = N_BINS) -> dict[str, float]:
    """accuracy, mean confidence, ECE (equal-width and adaptive), MCE, NLL and Brier as plain floats."""
    conf, correct = _confidence(y_true, probs)
    return {
        "accuracy": float(correct.mean()),
        "confidence": float(conf.mean()),
        "ece": expected_calibration_error(y_true, probs, n_bins),
        "ece_adaptive": expected_calibration_error(y_true, probs, n_bins, adaptive=True),
        "mce": max_calibration_error(y_true, probs, n_bins),
        "nll": negative_log_likelihood(y_true, probs),
        "brier": brier_score(y_true, probs),
    }


def per_class_calibration(y_true: np.ndarray, probs: np.ndarray, class_names: Sequence[str],
                          n_bins: int = N_BINS) -> list[dict]:
    """One row per class c.

    Of the images predicted c: how many, their mean confidence, the share that are c (precision) and
    the gap. And class-wise ECE (Kull et al. 2019): p_c of every image against 1[y = c], in equal-width bins.
    """
    y_true = np.asarray(y_true)
    probs = np.asarray(probs, dtype=np.float64)
    pred = probs.argmax(axis=1)
    rows = []
    for c, name in enumerate(class_names):
        mine = pred == c
        n = int(mine.sum())
        conf = float(probs[mine, c].mean()) if n else float("nan")
        acc = float((y_true[mine] == c).mean()) if n else float("nan")
        # The binary problem "is it c?": p_c as a confidence, the two-column form reuses the bins above.
        pc = probs[:, c]
        two = np.stack([1.0 - pc, pc], axis=1)
        classwise = expected_calibration_error((y_true == c).astype(int), two, n_bins)
        rows.append({"class": name, "predicted": n, "confidence": conf, "accuracy": acc,
                     "gap": conf - acc if n else float("nan"), "classwise_ece": classwise})
    return rows


def fit_temperature(logits: np.ndarray, y_true: np.ndarray, *, max_iter: int = 100) -> dict[str, float]:
    """Temperature scaling: the T > 0 minimising the NLL of softmax(logits / T) on held-out data.

    LBFGS over log T (so T stays positive) in float64 with a strong-Wolfe line search; starts at T = 1.
    Returns temperature, nll_before, nll_after and seconds (the fit, not the one-off imports). Dividing by T leaves every argmax, so the
    accuracy, as it is.
    """
    import torch
    import torch._dynamo  # noqa: F401  torch.optim's first step imports it (2-6 s, once per process): not the fit

    start = time.perf_counter()
    z = torch.as_tensor(np.asarray(logits), dtype=torch.float64)
    y = torch.as_tensor(np.asarray(y_true), dtype=torch.long)
    if z.ndim != 2 or len(z) != len(y) or len(y) == 0:
        raise ValueError(f"need (n, classes) logits for n > 0 labels, got {tuple(z.shape)} for {len(y)} labels")
    log_t = torch.zeros((), dtype=torch.float64, requires_grad=True)
    opt = torch.optim.LBFGS([log_t], lr=1.0, max_iter=max_iter, line_search_fn="strong_wolfe",
                            tolerance_grad=1e-10, tolerance_change=1e-12)

    def nll() -> torch.Tensor:
        opt.zero_grad()
        loss = torch.nn.functional.cross_entropy(z / log_t.exp(), y)
        loss.backward()
        return loss

    with torch.no_grad():
        before = float(torch.nn.functional.cross_entropy(z, y))
    opt.step(nll)
    with torch.no_grad():
        t = float(log_t.exp())
        after = float(torch.nn.functional.cross_entropy(z / t, y))
    return {"temperature": t, "nll_before": before, "nll_after": after, "seconds": time.perf_counter() - start}
