"""A tiny synthetic CIFAR-10 in the official pickle layout, so the real reader is exercised without the data.

Used by the tests (tests/conftest.py), the app fixture (devkit.app_fixture) and scripts/bench_app.py.
"""

from __future__ import annotations

import pickle
from pathlib import Path

import numpy as np

from cifar import CLASSES

BATCH_FOLDER = "cifar-10-batches-py"
N_TRAIN_PER_BATCH = 80  # × 5 batches = 400 training images
N_TEST = 100
VAL_SIZE = 80  # the tiny runs split 400 → 320 train / 80 val

# One clearly different RGB colour per class, so that a few steps of training learn something
# even though random crops and flips move every pixel: colour survives both.
PALETTE = np.array(
    [
        [230, 25, 25], [25, 230, 25], [25, 25, 230], [230, 230, 25], [230, 25, 230],
        [25, 230, 230], [128, 128, 128], [240, 150, 40], [90, 40, 160], [250, 250, 250],
    ],
    dtype=np.int16,
)


def fake_images(labels: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """(N, 32, 32, 3) uint8: each image its class colour plus ±40 of per-pixel noise."""
    base = PALETTE[labels][:, None, None, :]
    noise = rng.integers(-40, 41, size=(len(labels), 32, 32, 3), dtype=np.int16)
    return np.clip(base + noise, 0, 255).astype(np.uint8)


def to_rows(images_nhwc: np.ndarray) -> np.ndarray:
    """NHWC uint8 → the official row layout: (N, 3072), the R plane, then G, then B, each row-major."""
    return np.ascontiguousarray(images_nhwc.transpose(0, 3, 1, 2).reshape(len(images_nhwc), 3 * 32 * 32))


def write_batch(path: Path, rows: np.ndarray, labels, label: str = "synthetic batch") -> None:
    """Write one batch as the official files hold it: a protocol-2 pickle of a dict."""
    batch = {
        "batch_label": label,
        "labels": [int(y) for y in labels],
        "data": rows,
        "filenames": [f"img_{i:05d}.png" for i in range(len(rows))],
    }
    with open(path, "wb") as f:
        pickle.dump(batch, f, protocol=2)


def write_fake_cifar10(root: str | Path, n_train_per_batch: int = N_TRAIN_PER_BATCH, n_test: int = N_TEST,
                       seed: int = 0) -> Path:
    """Write <root>/cifar-10-batches-py/{data_batch_1..5, test_batch, batches.meta}; return root.

    Labels cycle through the ten classes (then get shuffled), so every class appears in every batch.
    """
    folder = Path(root) / BATCH_FOLDER
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    for name, n in [*((f"data_batch_{i}", n_train_per_batch) for i in range(1, 6)), ("test_batch", n_test)]:
        labels = rng.permutation(np.arange(n) % len(CLASSES))
        write_batch(folder / name, to_rows(fake_images(labels, rng)), labels, label=name)
    meta = {"num_cases_per_batch": n_train_per_batch, "label_names": list(CLASSES), "num_vis": 3072}
    with open(folder / "batches.meta", "wb") as f:
        pickle.dump(meta, f, protocol=2)
    return Path(root)
