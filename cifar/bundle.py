"""The demo bundle: the test images the app needs when the dataset is not on the machine.

Shipping all 10,000 test images would cost ~30 MB of the 80 MB budget, and the app only needs
images that somebody looks at: every image either shipped model gets wrong (so every
misclassification gallery and every off-diagonal confusion cell is complete), plus a fixed number of
correctly classified images per class (for the explain pages and the "right by one, wrong by the
other" filter). When the full dataset is present, the app uses all of it.

`python -m cifar.bundle --data-dir ../shared/cifar10` rebuilds checkpoints/demo_images.npz from the
evaluations beside the checkpoints.
"""

from __future__ import annotations

import argparse
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from cifar.checkpoints import EVALUATION_SUFFIX, evaluations_in
from cifar.data import DataError, load_cifar10

BUNDLE_FILE = "demo_images.npz"
PER_CLASS = 100


def select_demo_indices(labels: np.ndarray, preds: list[np.ndarray], per_class: int = PER_CLASS, seed: int = 0) -> np.ndarray:
    """Sorted test indices: every image any model misclassifies, plus per_class correct ones per class."""
    labels = np.asarray(labels)
    wrong = np.zeros(len(labels), dtype=bool)
    for p in preds:
        wrong |= np.asarray(p) != labels
    rng = np.random.default_rng(seed)
    chosen = [np.flatnonzero(wrong)]
    for c in np.unique(labels):
        right = np.flatnonzero(~wrong & (labels == c))
        chosen.append(rng.choice(right, size=min(per_class, len(right)), replace=False))
    return np.unique(np.concatenate(chosen))


@dataclass(frozen=True)
class TestImages:
    """Test images the app can show: images[i] is official test image indices[i]."""

    images: np.ndarray  # uint8 (N, 32, 32, 3)
    labels: np.ndarray  # int64 (N,)
    indices: np.ndarray  # int64 (N,), into the 10,000 test images
    full: bool  # True when this is the whole test set
    source: str

    def position(self, test_index: int) -> int | None:
        """Row of a test index in `images`, or None when the bundle does not hold it."""
        i = int(np.searchsorted(self.indices, test_index))
        return i if i < len(self.indices) and self.indices[i] == test_index else None

    def has(self, test_indices: np.ndarray) -> np.ndarray:
        """Boolean mask: which of these test indices have an image here."""
        return np.isin(test_indices, self.indices)


def write_bundle(path: str | Path, images: np.ndarray, labels: np.ndarray, indices: np.ndarray) -> None:
    np.savez_compressed(path, images=images[indices], labels=labels[indices], indices=indices.astype(np.int64))


def load_bundle(path: str | Path) -> TestImages:
    with np.load(path) as z:
        return TestImages(z["images"], z["labels"], z["indices"], full=False, source=str(path))


def main(argv: list[str] | None = None) -> int:
    from cifar.evaluate import load_evaluation

    p = argparse.ArgumentParser(prog="python -m cifar.bundle", description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--data-dir", default=None, help="folder holding cifar-10-batches-py/ (else $CIFAR10_DIR, else ./data)")
    p.add_argument("--checkpoints", default="checkpoints", help="folder with the checkpoints and their test-set predictions")
    p.add_argument("--download", action="store_true", help="download the official archive if the data folder lacks it")
    p.add_argument("--per-class", type=int, default=PER_CLASS, help="correctly classified images kept per class")
    args = p.parse_args(argv)
    ckpt_dir = Path(args.checkpoints)
    evals = evaluations_in(ckpt_dir)
    if not evals:
        print(f"error: no test-set predictions (*{EVALUATION_SUFFIX}) in {ckpt_dir}; run python -m cifar.evaluate first",
              file=sys.stderr)
        return 2
    try:
        data = load_cifar10(args.data_dir, download=args.download)
    except DataError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    preds = []
    for e in evals:
        ev = load_evaluation(e.weights)
        if not np.array_equal(ev["labels"], data.test_labels):
            print(f"error: {e.evaluation} was computed on other test labels than {data.source}", file=sys.stderr)
            return 2
        preds.append(ev["preds"])
    idx = select_demo_indices(data.test_labels, preds, args.per_class)
    out = ckpt_dir / BUNDLE_FILE
    write_bundle(out, data.test_images, data.test_labels, idx)
    print(f"wrote {out}: {len(idx)} of {len(data.test_labels)} test images "
          f"({out.stat().st_size / 1e6:.1f} MB) from {', '.join(e.evaluation.name for e in evals)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
