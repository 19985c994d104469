"""Shared fixtures: a tiny synthetic CIFAR-10 in the official pickle layout, and small run settings.

The synthetic data itself is written by devkit.fake_cifar, shared with the app fixture and the
benchmarks.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch

from devkit.fake_cifar import VAL_SIZE, write_fake_cifar10


# One intra-op thread, here and (through the environment) in every `python -m cifar.*` the tests
# start: the tests share 2 cores with real training jobs, where a second OpenMP thread mostly
# waits for a descheduled partner (measured 2× slower), and runs compared bit for bit across
# processes must use the same thread count, because it changes float summation order.
os.environ["OMP_NUM_THREADS"] = "1"
torch.set_num_threads(1)

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
def ckpt(tmp_path_factory) -> Path:
    """The app's fixture checkpoint folder (devkit.app_fixture), built once per session."""
    from devkit.app_fixture import app_checkpoints_once

    return app_checkpoints_once(tmp_path_factory)


@pytest.fixture
def app_env(ckpt, tmp_path, monkeypatch):
    """The app pointed at the fixture checkpoints, with no dataset (so it uses the demo bundle)."""
    monkeypatch.setenv("CIFAR_CHECKPOINTS", str(ckpt))
    monkeypatch.setenv("CIFAR10_DIR", str(tmp_path / "no-data"))
    return ckpt


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
