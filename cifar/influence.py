"""Which training images made the model think so: last-layer TracIn, feature-space neighbours, a 2-D map.

TracIn (Pruthi et al. 2020) restricted to the final linear layer, as captum's `TracInCPFast`: for a
checkpoint with penultimate features a and cross-entropy loss gradient at the logits g = softmax − onehot,
the final weight's gradient is g aᵀ, so the inner product of two examples' gradients factorises into
(g_train · g_test)(a_train · a_test). Summed over checkpoints, each weighted by its learning rate. The
bias's gradient is left out, as captum leaves it out. With the features of every training image cached,
the scores for one query are two matrix-vector products.

`python -m cifar.influence --data-dir ../shared/cifar10` computes the features of all training-split
images and all test images per checkpoint, caches them outside git (keyed by the checkpoint's sha256),
and writes the hosted app's demo subset, checkpoints/influence_demo.npz.

The math here needs numpy only; the CLI imports torch, the data and the models.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

DEMO_FILE = "influence_demo.npz"
MAP_FILE = "test_map.npy"  # in a checkpoint's cache folder: pca_2d of its test features
CACHE_ENV = "CIFAR_EXPLAIN_CACHE"  # where the per-checkpoint caches live; else ~/.cache/cifar-explain
CACHE_SUBDIR = "influence"
PER_CLASS = 300  # the demo subset's training images per class
TOP_SELF = 50  # the highest self-influence images per model, added to the demo subset
BUILD_COMMAND = "python -m cifar.influence --data-dir ../shared/cifar10"


# ------------------------------------------------------------------------------ the math (numpy only)


def loss_gradients(probs: np.ndarray, labels: np.ndarray | int) -> np.ndarray:
    """∂ cross-entropy / ∂ logits for each row: softmax − onehot(label), float32 (N, C)."""
    probs = np.atleast_2d(np.asarray(probs, dtype=np.float32))
    grads = probs.copy()
    labels = np.broadcast_to(np.asarray(labels, dtype=np.int64), (len(probs),))
    grads[np.arange(len(probs)), labels] -= 1.0
    return grads


def tracin_scores(train_features: Sequence[np.ndarray], train_grads: Sequence[np.ndarray],
                  test_features: Sequence[np.ndarray], test_grads: Sequence[np.ndarray],
                  learning_rates: Sequence[float] | None = None, cosine: bool = False) -> np.ndarray:
    """Last-layer TracIn, (n_test, n_train): Σ_k lr_k (g_test · g_train)(a_test · a_train).

    One array per checkpoint in each sequence: features (N, D) and loss gradients (N, C); a single test
    row may be 1-D. Positive scores are proponents (a step on that training image lowers the test loss),
    negative ones opponents. cosine=True unit-normalises every g and a first, which makes each
    checkpoint's term the cosine of the two last-layer gradients g aᵀ (in [-1, 1]): an image's exact
    copy then scores the maximum, where raw scores can rank a training image with a larger gradient norm
    above it (Hanawa et al., ICLR 2021, "identical class test").
    """
    lrs = [1.0] * len(train_features) if learning_rates is None else list(learning_rates)
    if not (len(train_features) == len(train_grads) == len(test_features) == len(test_grads) == len(lrs)):
        raise ValueError("one features and one gradient array per checkpoint, for train and test alike")
    total = None
    for a_tr, g_tr, a_te, g_te, lr in zip(train_features, train_grads, test_features, test_grads, lrs):
        a_te, g_te = np.atleast_2d(a_te), np.atleast_2d(g_te)
        if cosine:
            a_tr, g_tr, a_te, g_te = unit_rows(a_tr), unit_rows(g_tr), unit_rows(a_te), unit_rows(g_te)
        part = lr * (g_te @ g_tr.T) * (a_te @ a_tr.T)
        total = part if total is None else total + part
    return total


def self_influence(features: Sequence[np.ndarray], grads: Sequence[np.ndarray],
                   learning_rates: Sequence[float] | None = None) -> np.ndarray:
    """Each training image's influence on itself, (N,): Σ_k lr_k |g|² |a|². High: atypical or mislabelled."""
    lrs = [1.0] * len(features) if learning_rates is None else list(learning_rates)
    return sum(lr * np.einsum("ij,ij->i", g, g) * np.einsum("ij,ij->i", a, a)
               for a, g, lr in zip(features, grads, lrs))


def top_k(scores: np.ndarray, k: int, largest: bool = True) -> np.ndarray:
    """Positions of the k largest (or smallest) scores of a 1-D array, best first; ties by position."""
    scores = np.asarray(scores)
    k = min(k, len(scores))
    if k <= 0:
        return np.empty(0, dtype=np.int64)
    key = -scores if largest else scores
    part = np.argpartition(key, k - 1)[:k] if k < len(scores) else np.arange(len(scores))
    return part[np.lexsort((part, key[part]))]


def unit_rows(features: np.ndarray) -> np.ndarray:
    """Rows scaled to unit length (a zero row stays zero), float32: cosine similarity is then a dot product."""
    features = np.asarray(features, dtype=np.float32)
    norms = np.linalg.norm(features, axis=1, keepdims=True)
    return features / np.maximum(norms, 1e-12)


def nearest(query: np.ndarray, bank_unit: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """(positions, cosine similarities) of the k rows of a unit-row bank closest to one query vector."""
    q = np.asarray(query, dtype=np.float32).ravel()
    sims = bank_unit @ (q / max(float(np.linalg.norm(q)), 1e-12))
    order = top_k(sims, k)
    return order, sims[order]


def pca_2d(features: np.ndarray, seed: int = 0, max_fit: int = 5000) -> np.ndarray:
    """Project rows onto their first two principal components, float32 (N, 2).

    Fitted on at most max_fit rows drawn with `seed` (all rows when fewer): the top two eigenvectors of
    their covariance (D×D; 20× faster than an SVD of the 5,000 rows for D = 1,024 here). Each axis's sign
    is fixed so that its largest loading is positive, so equal input and seed give equal output.
    """
    x = np.asarray(features, dtype=np.float64)
    if x.ndim != 2 or len(x) < 2:
        raise ValueError(f"need a 2-D array of at least 2 rows, got shape {x.shape}")
    fit = x
    if len(x) > max_fit:
        rows = np.random.default_rng(seed).choice(len(x), size=max_fit, replace=False)
        fit = x[np.sort(rows)]
    mean = fit.mean(axis=0)
    centred = fit - mean
    _, vectors = np.linalg.eigh(centred.T @ centred)  # ascending eigenvalues
    axes = vectors[:, ::-1][:, :2].T
    if len(axes) < 2:  # one feature: a second axis of zeros
        axes = np.vstack([axes, np.zeros_like(axes)])
    signs = np.sign(axes[np.arange(2), np.abs(axes).argmax(axis=1)])
    axes = axes * np.where(signs == 0, 1.0, signs)[:, None]
    return ((x - mean) @ axes.T).astype(np.float32)


@dataclass(frozen=True)
class FeatureSet:
    """One checkpoint's view of a set of images: penultimate features and softmax, with labels."""

    features: np.ndarray  # float32 (N, D)
    probs: np.ndarray  # float32 (N, C)
    labels: np.ndarray  # int64 (N,)
    indices: np.ndarray  # int64 (N,): the official index in its set (training images: 0..49,999)

    @property
    def grads(self) -> np.ndarray:
        """Loss gradients at the logits for each image's own label."""
        return loss_gradients(self.probs, self.labels)


# ------------------------------------------------------------------------------ the cache (outside git)


def cache_root(root: str | os.PathLike | None = None) -> Path:
    """--cache-dir, else $CIFAR_EXPLAIN_CACHE, else ~/.cache/cifar-explain."""
    if root:
        return Path(root)
    return Path(os.environ.get(CACHE_ENV) or Path.home() / ".cache" / "cifar-explain")


def checkpoint_digest(path: str | os.PathLike) -> str:
    """The first 16 hex digits of a file's sha256: what a cache entry is keyed by."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()[:16]


def cache_dir(model: str, digest: str, root: str | os.PathLike | None = None) -> Path:
    """The folder holding one checkpoint's cached features: <root>/influence/<model>-<digest>/."""
    return cache_root(root) / CACHE_SUBDIR / f"{model}-{digest}"


def save_features(path: Path, fs: FeatureSet) -> None:
    """One split's features as an uncompressed .npz (loads in a fraction of a second), atomically."""
    from cifar.checkpoints import atomic_write

    def write(tmp: str) -> None:
        with open(tmp, "wb") as f:
            np.savez(f, features=fs.features.astype(np.float32), probs=fs.probs.astype(np.float32),
                     labels=fs.labels.astype(np.int64), indices=fs.indices.astype(np.int64))

    atomic_write(path, write)


def atomic_write_array(path: Path, array: np.ndarray) -> None:
    """One array as .npy, atomically."""
    from cifar.checkpoints import atomic_write

    def write(tmp: str) -> None:
        with open(tmp, "wb") as f:
            np.save(f, array)

    atomic_write(path, write)


def load_features(path: str | os.PathLike) -> FeatureSet:
    """A split's cached features (see save_features)."""
    with np.load(path) as z:
        return FeatureSet(z["features"], z["probs"], z["labels"], z["indices"])


# ------------------------------------------------------------------------------ the demo subset


def balanced_subset(labels: np.ndarray, per_class: int, seed: int = 0) -> np.ndarray:
    """Sorted positions: per_class rows of each class (all of a smaller class), drawn with seed."""
    rng = np.random.default_rng(seed)
    chosen = [rng.choice(np.flatnonzero(labels == c), size=min(per_class, int((labels == c).sum())), replace=False)
              for c in np.unique(labels)]
    return np.sort(np.concatenate(chosen)) if chosen else np.empty(0, dtype=np.int64)


def _key(model: str, name: str) -> str:
    return f"{model}.{name}"


def write_demo(path: Path, images: np.ndarray, train_positions: np.ndarray, balanced: np.ndarray,
               train: dict[str, FeatureSet], test: dict[str, FeatureSet], test_keep: np.ndarray,
               digests: dict[str, str], n_split: int, info: dict) -> None:
    """The hosted app's subset: training images (uint8) and, per model, their features (fp16) and softmax,
    the features of the test images in `test_keep` (fp16), and the 2-D map of every test image."""
    from cifar.checkpoints import atomic_write

    first = next(iter(train.values()))
    arrays: dict[str, np.ndarray] = {
        "train_images": images[first.indices[train_positions]],
        "train_indices": first.indices[train_positions],
        "train_labels": first.labels[train_positions],
        "balanced": balanced,
        "test_indices": test_keep,
        "info": np.array(json.dumps({**info, "n_split": n_split, "models": list(train)})),
    }
    for model, fs in train.items():
        if not np.array_equal(fs.indices[train_positions], arrays["train_indices"]):
            raise ValueError(f"{model}'s training split differs from {next(iter(train))}'s")
        te = test[model]
        arrays[_key(model, "train_features")] = fs.features[train_positions].astype(np.float16)
        arrays[_key(model, "train_probs")] = fs.probs[train_positions].astype(np.float32)
        arrays[_key(model, "test_features")] = te.features[test_keep].astype(np.float16)
        arrays[_key(model, "test_xy")] = pca_2d(te.features)
        arrays[_key(model, "digest")] = np.array(digests[model])

    def write(tmp: str) -> None:
        with open(tmp, "wb") as f:
            np.savez_compressed(f, **arrays)

    atomic_write(path, write)


@dataclass(frozen=True)
class Demo:
    """The demo subset, read back: shared images and, per model, a FeatureSet of the same rows."""

    images: np.ndarray
    train: dict[str, FeatureSet]
    test_features: dict[str, np.ndarray]
    test_indices: np.ndarray
    test_xy: dict[str, np.ndarray]
    digests: dict[str, str]
    balanced: np.ndarray
    info: dict


def load_demo(path: str | os.PathLike) -> Demo:
    """Read influence_demo.npz (see write_demo); features come back as float32."""
    with np.load(path) as z:
        info = json.loads(str(z["info"]))
        labels, indices = z["train_labels"], z["train_indices"]
        models = info["models"]
        train = {m: FeatureSet(z[_key(m, "train_features")].astype(np.float32), z[_key(m, "train_probs")],
                               labels, indices) for m in models}
        return Demo(z["train_images"], train, {m: z[_key(m, "test_features")].astype(np.float32) for m in models},
                    z["test_indices"], {m: z[_key(m, "test_xy")] for m in models},
                    {m: str(z[_key(m, "digest")]) for m in models}, z["balanced"], info)


# ------------------------------------------------------------------------------ the CLI (torch from here on)


def extract(model, images, rt, batch_size: int = 500, desc: str = "features") -> tuple[np.ndarray, np.ndarray]:
    """(penultimate features, softmax) float32 of uint8 NCHW images, batched, with a tqdm bar and ETA."""
    import torch
    from tqdm.auto import tqdm

    from cifar.data import normalize
    from cifar.features import penultimate

    feats, probs = [], []
    model.eval()
    with torch.no_grad():
        for i in tqdm(range(0, len(images), batch_size), desc=desc, unit="batch", dynamic_ncols=True):
            x = rt.prepare_input(normalize(images[i : i + batch_size]))
            with rt.autocast():
                f, logits = penultimate(model, x)
            feats.append(f.cpu().numpy())
            probs.append(torch.softmax(logits, 1).cpu().numpy())
    return np.concatenate(feats), np.concatenate(probs)


def train_split(meta: dict, n_train: int) -> np.ndarray:
    """The official training indices a checkpoint was trained on, from its recorded split."""
    from cifar.data import split_indices

    cfg = meta.get("config", {})
    data = meta.get("data", {})
    idx, _ = split_indices(n_train, int(data.get("val_size", cfg.get("val_size", 5000))),
                           int(data.get("split_seed", cfg.get("split_seed", 42))))
    return idx[: cfg["limit_train"]] if cfg.get("limit_train") else idx


def build_cache(checkpoint: Path, data, root: Path | None, rt, batch_size: int, force: bool = False,
                log=print) -> tuple[FeatureSet, FeatureSet, str]:
    """Features of the training split and the test set for one checkpoint, from the cache or computed."""
    import torch

    from cifar.checkpoints import load_model
    from cifar.data import to_tensor

    digest = checkpoint_digest(checkpoint)
    model, meta = load_model(checkpoint)
    name = meta["model"]
    folder = cache_dir(name, digest, root)
    out = {}
    for split in ("train", "test"):
        path = folder / f"{split}.npz"
        if path.is_file() and not force:
            log(f"{name} {split}: cached in {path}")
            out[split] = load_features(path)
            continue
        if split == "train":
            idx = train_split(meta, len(data.train_labels))
            images, labels = to_tensor(data.train_images)[torch.from_numpy(idx)], data.train_labels[idx]
        else:
            idx = np.arange(len(data.test_labels))
            images, labels = to_tensor(data.test_images), data.test_labels
        net = rt.prepare_model(model)
        start = time.perf_counter()
        feats, probs = extract(net, images, rt, batch_size, desc=f"{name} {split} ({len(idx):,} images)")
        seconds = time.perf_counter() - start
        fs = FeatureSet(feats, probs, labels.astype(np.int64), idx.astype(np.int64))
        save_features(path, fs)
        info_path = folder / "info.json"
        info = json.loads(info_path.read_text()) if info_path.is_file() else {}
        info[split] = {"images": len(idx), "seconds": round(seconds, 1), "bytes": path.stat().st_size,
                       "hardware": rt.describe(), "checkpoint": str(checkpoint), "data": data.source,
                       "command": " ".join(["python -m cifar.influence", *sys.argv[1:]])}
        info_path.write_text(json.dumps(info, indent=1))
        log(f"{name} {split}: {len(idx):,} images in {seconds:.0f} s ({len(idx) / seconds:.0f} img/s, {rt.precision}) "
            f"→ {path} ({path.stat().st_size / 1e6:.0f} MB)")
        out[split] = fs
    return out["train"], out["test"], digest


def main(argv: list[str] | None = None) -> int:
    from cifar.bundle import BUNDLE_FILE, load_bundle
    from cifar.checkpoints import CheckpointError, run_files
    from cifar.data import DataError, load_cifar10
    from cifar.models import list_models
    from cifar.runtime import Runtime

    p = argparse.ArgumentParser(prog="python -m cifar.influence", formatter_class=argparse.ArgumentDefaultsHelpFormatter,
                                description="Cache every training and test image's penultimate features per checkpoint "
                                            "(for TracIn, neighbours and the embedding map) and write the app's demo subset.")
    p.add_argument("--data-dir", default=None, help="folder holding cifar-10-batches-py/ (else $CIFAR10_DIR, else ./data)")
    p.add_argument("--checkpoints", default="checkpoints", help="folder with <model>.safetensors; the demo subset goes here")
    p.add_argument("--models", nargs="+", default=None, choices=list_models(), help="models to cache (default: every "
                   "checkpoint in --checkpoints)")
    p.add_argument("--cache-dir", default=None, help=f"cache root (else ${CACHE_ENV}, else ~/.cache/cifar-explain)")
    p.add_argument("--device", default="auto", choices=("auto", "cpu", "cuda"), help="where to run")
    p.add_argument("--precision", default="auto", choices=("auto", "bf16", "fp32"),
                   help="auto: bf16 autocast where the CPU or GPU runs it natively, else fp32")
    p.add_argument("--batch-size", type=int, default=500, help="images per forward pass")
    p.add_argument("--force", action="store_true", help="recompute features even when cached")
    p.add_argument("--no-demo", action="store_true", help=f"do not write {DEMO_FILE}")
    p.add_argument("--per-class", type=int, default=PER_CLASS, help="demo subset: training images per class")
    p.add_argument("--top-self", type=int, default=TOP_SELF,
                   help="demo subset: also keep each model's training images of highest self-influence")
    p.add_argument("--seed", type=int, default=0, help="demo subset: the seed of the class-balanced draw")
    args = p.parse_args(argv)
    ckpt_dir = Path(args.checkpoints)
    models = args.models or [m for m in list_models() if run_files(ckpt_dir, m).weights.is_file()]
    if not models:
        print(f"error: no checkpoints (<model>.safetensors) in {ckpt_dir}", file=sys.stderr)
        return 2
    try:
        rt = Runtime.decide(args.device, args.precision)
        data = load_cifar10(args.data_dir)
    except (DataError, ValueError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    print(f"{rt.describe()}; data {data.source}")
    train, test, digests = {}, {}, {}
    start = time.perf_counter()
    for model in models:
        try:
            train[model], test[model], digests[model] = build_cache(run_files(ckpt_dir, model).weights, data,
                                                                    args.cache_dir, rt, args.batch_size, args.force)
        except CheckpointError as e:
            print(f"error: {e}", file=sys.stderr)
            return 2
    for model in models:  # the embedding map, once per checkpoint: the app reads it instead of refitting
        path = cache_dir(model, digests[model], args.cache_dir) / MAP_FILE
        if not path.is_file() or args.force:
            xy = pca_2d(test[model].features)
            atomic_write_array(path, xy)
    print(f"features ready in {time.perf_counter() - start:.0f} s; cache: {cache_root(args.cache_dir) / CACHE_SUBDIR}")
    if args.no_demo:
        return 0
    first = train[models[0]]
    positions = balanced_subset(first.labels, args.per_class, args.seed)
    balanced = np.zeros(len(first.labels), dtype=bool)
    balanced[positions] = True
    keep = balanced.copy()
    for model in models:
        keep[top_k(self_influence([train[model].features], [train[model].grads]), args.top_self)] = True
    positions = np.flatnonzero(keep)
    bundle = ckpt_dir / BUNDLE_FILE
    test_keep = load_bundle(bundle).indices if bundle.is_file() else np.arange(len(data.test_labels))
    out = ckpt_dir / DEMO_FILE
    write_demo(out, data.train_images, positions, balanced[positions], train, test, test_keep, digests,
               n_split=len(first.labels), info={"command": " ".join(["python -m cifar.influence", *sys.argv[1:]]),
                                                "seed": args.seed, "per_class": args.per_class,
                                                "top_self": args.top_self, "data": data.source})
    print(f"wrote {out}: {len(positions):,} of {len(first.labels):,} training images ({int(balanced.sum()):,} "
          f"class-balanced + each model's {args.top_self} of highest self-influence), features of "
          f"{len(test_keep):,} test images, the 2-D map of all {len(data.test_labels):,} "
          f"({out.stat().st_size / 1e6:.1f} MB)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
