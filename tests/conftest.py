"""Shared fixtures: a tiny synthetic CIFAR-10 in the official pickle layout, and small run settings.

`write_fake_cifar10` is a plain function so any test file (and the app tests) can write its own copy:

    from conftest import write_fake_cifar10
"""

from __future__ import annotations

import os
import pickle
from pathlib import Path

import numpy as np
import pytest
import torch

from cifar import CLASSES

# One intra-op thread, here and (through the environment) in every `python -m cifar.*` the tests
# start: the tests share 2 cores with real training jobs, where a second OpenMP thread mostly
# waits for a descheduled partner (measured 2× slower), and runs compared bit for bit across
# processes must use the same thread count, because it changes float summation order.
os.environ["OMP_NUM_THREADS"] = "1"
torch.set_num_threads(1)

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


@pytest.fixture(scope="session")
def cifar_root(tmp_path_factory) -> Path:
    """A read-only-by-convention synthetic CIFAR-10 (the folder that holds cifar-10-batches-py/).

    Tests that damage files must copy it first (see `cifar_copy`).
    """
    return write_fake_cifar10(tmp_path_factory.mktemp("cifar"))


@pytest.fixture
def cifar_copy(cifar_root, tmp_path) -> Path:
    """A private copy of the synthetic data that a test may truncate or poison."""
    import shutil

    dst = tmp_path / "data"
    shutil.copytree(cifar_root, dst)
    return dst


@pytest.fixture(autouse=True)
def _no_cifar_env(monkeypatch):
    # A developer's $CIFAR10_DIR must never lead a test to the real dataset.
    monkeypatch.delenv("CIFAR10_DIR", raising=False)


@pytest.fixture(scope="session")
def fake_data(cifar_root):
    """The synthetic set as load_cifar10 reads it."""
    from cifar.data import load_cifar10

    return load_cifar10(cifar_root)


# A tiny, deterministic run: CPU in fp32 so that reruns match bit for bit, 64 training images in 4
# steps of 16 per epoch, 80 validation and 100 test images, no progress bars.
TINY_FLAGS = ["--device", "cpu", "--precision", "fp32", "--val-size", str(VAL_SIZE), "--limit-train", "64",
              "--batch-size", "16", "--eval-batch-size", "100", "--quiet"]
TINY_EPOCHS = 3


def tiny_args(data_dir, out_dir, *extra: str) -> list[str]:
    """argv for `python -m cifar.train` (or cifar.train.main) of the tiny run; extra flags go last."""
    return ["--data-dir", str(data_dir), "--out-dir", str(out_dir), *TINY_FLAGS, "--epochs", str(TINY_EPOCHS), *extra]


@pytest.fixture(scope="session")
def reference_run(cifar_root, tmp_path_factory) -> Path:
    """The run folder of one uninterrupted tiny CLI run (paper recipe, CustomCNN, 3 epochs).

    Several tests compare against it (resume, interruption, metadata, evaluation), so it is trained
    once per session. Tests must not write into it; copy what they change.
    """
    from cifar.train import main

    out = tmp_path_factory.mktemp("reference") / "run"
    assert main(tiny_args(cifar_root, out)) == 0
    return out
