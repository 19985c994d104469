"""Out-of-distribution scores: is an image unlike CIFAR-10, for this model?

Three detectors from what a trained model already has (see /shared/reference/trust-methods.md);
each gives a score where higher means more like the training data:

- `msp`: maximum softmax probability (Hendrycks & Gimpel, ICLR 2017);
- `energy`: −E(x) = T · logsumexp(logits / T) with T = 1 (Liu et al., NeurIPS 2020);
- `mahalanobis`: −min_c (f − μ_c)ᵀ Σ⁻¹ (f − μ_c) on the penultimate features f (the registry's
  `feature_layer`), with class means μ_c and one shared covariance Σ fitted on training features
  (Lee et al., NeurIPS 2018, without their input pre-processing or layer ensemble).

A detector flags an image when its score falls below the threshold that keeps 95% of the CIFAR-10
test images (95% TPR, in-distribution as the positive class). numpy and torch only: the app imports
this module, and its server must not load scikit-learn or SciPy.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import nn

TPR = 0.95  # thresholds keep this share of the CIFAR-10 test images as in-distribution
RIDGE = 1e-6  # added to Σ's diagonal, times its mean variance: dead ReLU units make Σ singular


# ------------------------------------------------------------------------------ Mahalanobis statistics


@dataclass(frozen=True)
class MahalanobisStats:
    """Class means and the whitening matrix W (lower triangular, Σ⁻¹ = Wᵀ W) of penultimate features."""

    means: np.ndarray  # (classes, dim) float32
    whiten: np.ndarray  # (dim, dim) float32, lower triangular: W = C⁻¹ for Σ = C Cᵀ
    layer: str  # the module the features come from
    ridge: float
    n_train: int

    def __post_init__(self) -> None:
        # W μ_c once, not per image: ||W (f − μ)||² = ||W f − W μ||².
        object.__setattr__(self, "_wm", self.means @ self.whiten.T)

    def distances(self, features: np.ndarray) -> np.ndarray:
        """Squared Mahalanobis distance (n, classes) of each feature vector to each class mean."""
        f = np.asarray(features, dtype=np.float32).reshape(len(features), -1)
        if f.shape[1] != self.means.shape[1]:
            raise ValueError(f"features have {f.shape[1]} dimensions, the statistics {self.means.shape[1]}")
        z = f @ self.whiten.T
        m = self._wm
        d = (z * z).sum(1, keepdims=True) - 2.0 * z @ m.T + (m * m).sum(1)[None, :]
        return np.maximum(d, 0.0)  # rounding may dip just below 0 for a feature on a mean

    def score(self, features: np.ndarray) -> np.ndarray:
        """−min_c distance²: higher = closer to some class of the training data."""
        return -self.distances(features).min(axis=1)


def fit_mahalanobis(features: np.ndarray, labels: np.ndarray, n_classes: int, *, layer: str = "",
                    ridge: float = RIDGE) -> MahalanobisStats:
    """Class means and one shared (tied) covariance of training features, in float64, stored float32."""
    f = np.asarray(features, dtype=np.float64).reshape(len(features), -1)
    y = np.asarray(labels)
    means = np.stack([f[y == c].mean(0) if (y == c).any() else np.zeros(f.shape[1]) for c in range(n_classes)])
    centred = f - means[y]
    cov = centred.T @ centred / len(f)
    cov[np.diag_indices_from(cov)] += ridge * max(float(np.trace(cov)) / len(cov), 1e-12)
    chol = np.linalg.cholesky(cov)
    whiten = np.linalg.solve(chol, np.eye(len(cov)))  # C⁻¹; lower triangular like C
    return MahalanobisStats(means.astype(np.float32), np.tril(whiten).astype(np.float32), layer, ridge, len(f))


def save_stats(stats: MahalanobisStats, path: str | Path) -> None:
    """An .npz of the means and W's lower triangle only (half the bytes of the full matrix), float32."""
    dim = stats.whiten.shape[0]
    rows, cols = np.tril_indices(dim)
    np.savez(path, means=stats.means, whiten_tril=stats.whiten[rows, cols],
             info=np.array(json.dumps({"layer": stats.layer, "ridge": stats.ridge, "n_train": stats.n_train})))


def load_stats(path: str | Path) -> MahalanobisStats:
    """The statistics save_stats wrote; ValueError when the file is not one."""
    with np.load(path, allow_pickle=False) as z:
        try:
            means, packed, info = z["means"], z["whiten_tril"], json.loads(str(z["info"]))
        except KeyError as e:
            raise ValueError(f"{path}: not Mahalanobis statistics (no {e})") from None
    dim = means.shape[1]
    if packed.shape != (dim * (dim + 1) // 2,):
        raise ValueError(f"{path}: {packed.shape[0]} whitening values do not fit {dim}-dimensional means")
    whiten = np.zeros((dim, dim), dtype=np.float32)
    whiten[np.tril_indices(dim)] = packed
    return MahalanobisStats(means.astype(np.float32), whiten, info.get("layer", ""), float(info.get("ridge", RIDGE)),
                            int(info.get("n_train", 0)))


# ------------------------------------------------------------------------------ the detectors


def msp(logits: np.ndarray) -> np.ndarray:
    """Maximum softmax probability of each row (raw logits, T = 1)."""
    z = np.asarray(logits, dtype=np.float64)
    e = np.exp(z - z.max(1, keepdims=True))
    return (e / e.sum(1, keepdims=True)).max(1)


def energy(logits: np.ndarray, temperature: float = 1.0) -> np.ndarray:
    """Negative free energy T · logsumexp(logits / T) of each row."""
    z = np.asarray(logits, dtype=np.float64) / temperature
    top = z.max(1, keepdims=True)
    return temperature * (top[:, 0] + np.log(np.exp(z - top).sum(1)))


@dataclass(frozen=True)
class Detector:
    name: str  # the key: file fields, table rows
    title: str  # as the app names it
    help: str  # one line for the app
    needs_features: bool


DETECTORS: dict[str, Detector] = {
    d.name: d for d in (
        Detector("msp", "Max softmax probability", "the top class probability (Hendrycks & Gimpel 2017)", False),
        Detector("energy", "Energy", "logsumexp of the logits (Liu et al. 2020)", False),
        Detector("mahalanobis", "Mahalanobis",
                 "minus the distance of the penultimate features to the nearest class mean, in the training "
                 "features' shared covariance (Lee et al. 2018)", True),
    )
}


# The detectors together: an image's score is its lowest percentile among the CIFAR-10 test images over the
# three detectors, so one threshold at 95% TPR keeps 95% of the test images whichever detector would flag
# them (each detector alone keeps 95%; "any of them flags" alone would keep fewer).
COMBINED = Detector("combined", "Combined (lowest percentile of the three)",
                    "the image's lowest percentile among the CIFAR-10 test images over the three detectors", True)
N_QUANTILES = 1001  # test-score quantiles stored per detector: percentiles to 0.1%


def quantiles(in_scores: np.ndarray) -> list[float]:
    """The N_QUANTILES evenly spaced quantiles of a detector's in-distribution scores (for `percentile`)."""
    return np.quantile(np.asarray(in_scores, dtype=np.float64), np.linspace(0, 1, N_QUANTILES)).tolist()


def percentile(score: np.ndarray, qs: list[float] | np.ndarray) -> np.ndarray:
    """The share of in-distribution scores below each score (0..1), read off its stored quantiles."""
    qs = np.asarray(qs, dtype=np.float64)
    return np.interp(np.asarray(score, dtype=np.float64), qs, np.linspace(0, 1, len(qs)), left=0.0, right=1.0)


def combined(all_scores: dict[str, np.ndarray], qs: dict[str, list[float]]) -> np.ndarray:
    """COMBINED's score: the lowest percentile over the detectors that have quantiles."""
    return np.min([percentile(all_scores[k], qs[k]) for k in all_scores if k in qs], axis=0)


def scores(logits: np.ndarray, features: np.ndarray | None = None,
           stats: MahalanobisStats | None = None) -> dict[str, np.ndarray]:
    """Every detector's score (higher = more in-distribution); Mahalanobis only with features and stats."""
    out = {"msp": msp(logits), "energy": energy(logits)}
    if features is not None and stats is not None:
        out["mahalanobis"] = stats.score(features)
    return out


# ------------------------------------------------------------------------------ thresholds and evaluation


def threshold_at_tpr(in_scores: np.ndarray, tpr: float = TPR) -> float:
    """The largest score threshold that keeps at least `tpr` of the in-distribution scores (score ≥ t)."""
    s = np.sort(np.asarray(in_scores, dtype=np.float64))
    if not len(s):
        raise ValueError("no in-distribution scores")
    k = int(np.floor((1.0 - tpr) * len(s) + 1e-9))  # this many may fall below
    return float(s[min(k, len(s) - 1)])


def fpr_at_tpr(in_scores: np.ndarray, out_scores: np.ndarray, tpr: float = TPR) -> float:
    """The share of OOD samples kept (score ≥ threshold) at the threshold of `tpr` in-distribution."""
    t = threshold_at_tpr(in_scores, tpr)
    return float(np.mean(np.asarray(out_scores) >= t))


def auroc(in_scores: np.ndarray, out_scores: np.ndarray) -> float:
    """Area under the ROC curve, in-distribution positive: P(in score > out score) + ½ P(tie)."""
    a = np.asarray(in_scores, dtype=np.float64).ravel()
    b = np.asarray(out_scores, dtype=np.float64).ravel()
    both = np.concatenate([a, b])
    order = np.argsort(both, kind="mergesort")
    ranks = np.empty(len(both))
    ranks[order] = np.arange(1, len(both) + 1)
    # Ties share their mean rank (Mann–Whitney U).
    _, inverse, counts = np.unique(both, return_inverse=True, return_counts=True)
    sums = np.bincount(inverse, weights=ranks)
    ranks = (sums / counts)[inverse]
    u = ranks[: len(a)].sum() - len(a) * (len(a) + 1) / 2
    return float(u / (len(a) * len(b)))


def flags(image_scores: dict[str, float], thresholds: dict[str, float]) -> dict[str, bool]:
    """detector → True when the score falls below its threshold (unlike the CIFAR-10 test images)."""
    return {k: bool(image_scores[k] < thresholds[k]) for k in image_scores if k in thresholds}


# ------------------------------------------------------------------------------ features from a model


def feature_layer(model: nn.Module) -> str:
    """The registry's penultimate layer for this model; ValueError for a model the registry lacks."""
    from cifar.models import spec_of

    spec = spec_of(model)
    if spec is None or not spec.feature_layer:
        raise ValueError(f"{type(model).__name__} has no registered feature layer (cifar.models.register_model)")
    return spec.feature_layer


def batches(x: torch.Tensor, batch_size: int) -> Iterator[torch.Tensor]:
    for i in range(0, len(x), batch_size):
        yield x[i : i + batch_size]


@torch.no_grad()
def logits_and_features(model: nn.Module, x: torch.Tensor, *, batch_size: int = 500,
                        prepare: Callable[[torch.Tensor], torch.Tensor] | None = None,
                        autocast=None, progress: Callable | None = None) -> tuple[np.ndarray, np.ndarray]:
    """(logits (n, classes), penultimate features (n, dim)), float32, for a normalised batch, in one pass.

    The features come through cifar.explain.capture, whose hook is removed on exit. prepare moves a
    chunk to the model's device and memory format; autocast is a precision context factory; progress
    wraps the chunk iterator (tqdm).
    """
    from contextlib import nullcontext

    from cifar.explain import capture

    layer = feature_layer(model)
    if prepare is None:  # follow the model's memory format (the app's models are channels_last): no reorders
        first = next((p for p in model.parameters() if p.ndim == 4), None)
        if first is not None and first.is_contiguous(memory_format=torch.channels_last) and not first.is_contiguous():
            def prepare(chunk: torch.Tensor) -> torch.Tensor:
                return chunk.to(first.device).contiguous(memory_format=torch.channels_last)
    was_training = model.training
    model.eval()
    logits, feats = [], []
    chunks = batches(x, batch_size)
    try:
        with capture(model, layer) as acts:
            for chunk in (progress(chunks) if progress else chunks):
                chunk = prepare(chunk) if prepare else chunk
                with (autocast() if autocast else nullcontext()):
                    out = model(chunk)
                logits.append(out.float().cpu())
                feats.append(acts[layer].reshape(len(chunk), -1))
    finally:
        if was_training:
            model.train()
    if not logits:
        return np.zeros((0, 0), np.float32), np.zeros((0, 0), np.float32)
    return torch.cat(logits).numpy(), torch.cat(feats).numpy()
