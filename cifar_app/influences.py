"""The training images behind a prediction, for the app: the feature banks it ranks over, and the views.

Pure functions (no Streamlit); cifar_app.cache keeps what they load. Two sources, in order:
- the full cache `python -m cifar.influence` writes outside git (every training-split image), used when
  the dataset is here to show their pixels;
- the demo subset shipped in checkpoints/ (influence_demo.npz): a seeded, class-balanced subset.
Either must belong to the checkpoint the app loaded (its sha256), or the page says how to rebuild it.
"""

from __future__ import annotations

import shlex
import zipfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from cifar import influence
from cifar_app import advice
from cifar_app.advice import Advice
from cifar_app.store import Paths, Unavailable

CHECKPOINT_NOTE = "TracIn over 1 checkpoint: the final weights (no epoch snapshots were kept), learning-rate weight 1"


@dataclass(frozen=True)
class Bank:
    """One model's training images as TracIn and the neighbour search see them."""

    features: np.ndarray  # float32 (N, D) penultimate features
    feature_norms: np.ndarray  # (N,)
    grads: np.ndarray  # float32 (N, C): softmax − onehot(own label)
    grad_norms: np.ndarray  # (N,)
    probs: np.ndarray  # float32 (N, C)
    labels: np.ndarray  # int64 (N,)
    indices: np.ndarray  # int64 (N,): official training index
    self_influence: np.ndarray  # (N,)
    full: bool  # every training-split image (the cache), or the demo subset
    n_split: int  # training images the model was trained on (45,000)
    source: str  # where the features come from, for the page

    def __len__(self) -> int:
        return len(self.labels)


@dataclass(frozen=True)
class TestBank:
    """One model's test images: features of those the app can show, and the 2-D map of all of them."""

    features: np.ndarray  # float32 (M, D)
    feature_norms: np.ndarray
    indices: np.ndarray  # (M,) test indices, sorted
    xy: np.ndarray  # float32 (10,000, 2): PCA of every test image's features


def make_bank(fs: influence.FeatureSet, full: bool, n_split: int, source: str) -> Bank:
    grads = fs.grads
    features = np.ascontiguousarray(fs.features, dtype=np.float32)
    return Bank(features, np.linalg.norm(features, axis=1), grads, np.linalg.norm(grads, axis=1),
                fs.probs.astype(np.float32), fs.labels, fs.indices,
                influence.self_influence([features], [grads]), full, n_split, source)


def make_test_bank(features: np.ndarray, indices: np.ndarray, xy: np.ndarray) -> TestBank:
    features = np.ascontiguousarray(features, dtype=np.float32)
    return TestBank(features, np.linalg.norm(features, axis=1), np.asarray(indices), xy)


# ------------------------------------------------------------------------------ finding the files


def rebuild(paths: Paths) -> Advice:
    """The command that computes the features and writes the demo subset where the app looks."""
    return Advice(f"python -m cifar.influence --checkpoints {shlex.quote(paths.checkpoints.as_posix())} "
                  f"{advice.data_flags(paths.data)}",
                  "computes every training and test image's features for each checkpoint (cached outside git) "
                  "and rewrites the demo subset: about 15 min on 2 CPU cores, see the README")


def demo_path(paths: Paths) -> Path:
    return paths.checkpoints / influence.DEMO_FILE


def cache_files(model: str, digest: str, root: Path | None = None) -> tuple[Path, Path]:
    folder = influence.cache_dir(model, digest, root)
    return folder / "train.npz", folder / "test.npz"


def load_full(model: str, digest: str, train_images_available: bool, root: Path | None = None) -> tuple[Bank, TestBank] | None:
    """The cached features of every training-split image, or None when there are none (or no pixels to show)."""
    train_path, test_path = cache_files(model, digest, root)
    if not (train_images_available and train_path.is_file() and test_path.is_file()):
        return None
    try:
        train, test = influence.load_features(train_path), influence.load_features(test_path)
    except (OSError, ValueError, KeyError, EOFError, zipfile.BadZipFile):
        return None  # a broken cache: fall back on the demo subset
    bank = make_bank(train, True, len(train.labels), f"the feature cache {train_path.parent}")
    try:
        xy = np.load(train_path.parent / influence.MAP_FILE)
    except (OSError, ValueError):  # a cache from before the map was stored
        xy = influence.pca_2d(test.features)
    return bank, make_test_bank(test.features, test.indices, xy)


def load_demo(model: str, digest: str, paths: Paths) -> tuple[Bank, TestBank, np.ndarray]:
    """(bank, test bank, training pixels) from the shipped subset; Unavailable with the fix when it is
    missing, unreadable, lacks the model or belongs to another checkpoint."""
    path = demo_path(paths)
    fix = advice.restore(path) or rebuild(paths)
    if not path.is_file():
        raise Unavailable(f"The training-data subset {path} is missing, and there is no feature cache for this "
                          f"checkpoint with the dataset beside it.", rebuild(paths))
    try:
        demo = influence.load_demo(path)
    except (OSError, ValueError, KeyError, EOFError, zipfile.BadZipFile) as e:
        raise Unavailable(f"The training-data subset {path} cannot be read ({type(e).__name__}: {e}).", fix) from None
    if model not in demo.train:
        raise Unavailable(f"The training-data subset {path} has no features of the {model} model.", rebuild(paths))
    if demo.digests[model] != digest:
        raise Unavailable(f"The training-data subset {path} was computed for another {model} checkpoint "
                          f"(sha256 {demo.digests[model]}…, this one is {digest}…).", rebuild(paths))
    bank = make_bank(demo.train[model], False, int(demo.info["n_split"]), f"the demo subset {path.name}")
    test = make_test_bank(demo.test_features[model], demo.test_indices, demo.test_xy[model])
    return bank, test, demo.images


# ------------------------------------------------------------------------------ the views


@dataclass(frozen=True)
class Ranked:
    """Positions into a Bank with their scores, best first."""

    proponents: np.ndarray
    proponent_scores: np.ndarray
    opponents: np.ndarray
    opponent_scores: np.ndarray
    neighbours: np.ndarray
    similarities: np.ndarray


def rank(bank: Bank, features: np.ndarray, probs: np.ndarray, target: int, k: int, cosine: bool = True) -> Ranked:
    """Proponents and opponents of `target` for one query (last-layer TracIn, as cifar.influence), and its
    nearest training images in feature space (cosine). One product with the bank's features serves both."""
    a = np.asarray(features, dtype=np.float32).ravel()
    g = influence.loss_gradients(probs, target)[0]
    dots = bank.features @ a
    scores = (bank.grads @ g) * dots
    a_norm, g_norm = max(float(np.linalg.norm(a)), 1e-12), max(float(np.linalg.norm(g)), 1e-12)
    feature_cos = dots / (np.maximum(bank.feature_norms, 1e-12) * a_norm)
    if cosine:
        scores = scores / (np.maximum(bank.grad_norms, 1e-12) * g_norm * np.maximum(bank.feature_norms, 1e-12) * a_norm)
    pro = influence.top_k(scores, k)
    pro = pro[scores[pro] > 0]
    con = influence.top_k(scores, k, largest=False)
    con = con[scores[con] < 0]
    near = influence.top_k(feature_cos, k)
    return Ranked(pro, scores[pro], con, scores[con], near, feature_cos[near])


def test_neighbours(test: TestBank, features: np.ndarray, k: int, exclude: int | None = None) -> tuple[np.ndarray, np.ndarray]:
    """(test indices, cosine similarities) of the k test images nearest one query, the query itself left out."""
    a = np.asarray(features, dtype=np.float32).ravel()
    sims = (test.features @ a) / (np.maximum(test.feature_norms, 1e-12) * max(float(np.linalg.norm(a)), 1e-12))
    if exclude is not None:
        sims = np.where(test.indices == exclude, -np.inf, sims)
    order = influence.top_k(sims, k)
    order = order[np.isfinite(sims[order])]
    return test.indices[order], sims[order]


def confident_disagreements(labels: np.ndarray, probs: list[np.ndarray], threshold: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Test images every model labels the same other class with probability ≥ threshold:
    (test indices, the class they agree on, the lowest of their probabilities), most confident first."""
    preds = [p.argmax(1) for p in probs]
    same = np.all([p == preds[0] for p in preds], axis=0) & (preds[0] != labels)
    low = np.min([p[np.arange(len(labels)), preds[0]] for p in probs], axis=0)
    idx = np.flatnonzero(same & (low >= threshold))
    idx = idx[np.lexsort((idx, -low[idx]))]
    return idx, preds[0][idx], low[idx]


def map_records(xy: np.ndarray, labels: np.ndarray, preds: np.ndarray, probs: np.ndarray, names, shown: np.ndarray) -> list[dict]:
    """One row per test image for the embedding scatter: position, true and predicted class, error, whether
    its image is here to open."""
    conf = probs[np.arange(len(preds)), preds]
    return [{"index": i, "x": float(xy[i, 0]), "y": float(xy[i, 1]), "true": names[labels[i]],
             "predicted": names[preds[i]], "p": round(float(conf[i]), 3),
             "result": "error" if preds[i] != labels[i] else "correct", "image": bool(shown[i])}
            for i in range(len(labels))]


def selected_point(points) -> int | None:
    """The test index of the clicked point of an embedding scatter's selection, or None."""
    for p in points or ():
        if isinstance(p, dict) and "index" in p:
            try:
                return int(p["index"])
            except (TypeError, ValueError):
                return None
    return None
