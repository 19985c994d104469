"""The demo bundle: which test images ship, and how the app finds images with or without the dataset."""

from __future__ import annotations

import numpy as np

from cifar.bundle import BUNDLE_FILE, load_bundle, select_demo_indices, write_bundle


def test_selection_keeps_every_error_and_per_class_correct_ones():
    rng = np.random.default_rng(0)
    labels = np.repeat(np.arange(10), 30)
    a = labels.copy()
    a[rng.choice(300, 20, replace=False)] = 0  # some of these become errors (those not of class 0)
    b = labels.copy()
    b[rng.choice(300, 15, replace=False)] = 9
    idx = select_demo_indices(labels, [a, b], per_class=5)
    wrong = np.flatnonzero((a != labels) | (b != labels))
    assert set(wrong) <= set(idx)
    right = np.setdiff1d(idx, wrong)
    # exactly 5 correct images per class (every class has more than 5 correct ones here)
    assert np.bincount(labels[right], minlength=10).tolist() == [5] * 10
    assert np.all(np.diff(idx) > 0), "sorted and unique, so TestImages.position can bisect"


def test_selection_is_deterministic_and_capped_by_what_exists():
    labels = np.array([0, 0, 1, 1, 1])
    preds = [np.array([0, 1, 1, 1, 1])]
    first = select_demo_indices(labels, preds, per_class=10)
    assert first.tolist() == [0, 1, 2, 3, 4]  # all there is
    assert np.array_equal(first, select_demo_indices(labels, preds, per_class=10))


def test_bundle_round_trip_and_positions(tmp_path):
    images = np.arange(20 * 32 * 32 * 3, dtype=np.int64).reshape(20, 32, 32, 3).astype(np.uint8)
    labels = np.arange(20) % 10
    keep = np.array([2, 5, 11])
    write_bundle(tmp_path / BUNDLE_FILE, images, labels, keep)
    t = load_bundle(tmp_path / BUNDLE_FILE)
    assert not t.full
    assert t.indices.tolist() == [2, 5, 11]
    assert t.position(5) == 1 and t.position(4) is None and t.position(99) is None
    assert np.array_equal(t.images[t.position(11)], images[11])
    assert t.has(np.array([2, 3, 11])).tolist() == [True, False, True]


def test_cli_rebuilds_the_bundle_from_the_evaluations(tmp_path, cifar_root, capsys):
    from cifar.bundle import main
    from cifar.evaluate import write_evaluation
    from cifar.data import load_cifar10

    data = load_cifar10(cifar_root)
    logits = np.eye(10)[(data.test_labels + (np.arange(len(data.test_labels)) % 7 == 0)) % 10]  # every 7th wrong
    (tmp_path / "cnn.safetensors").touch()
    write_evaluation(tmp_path / "cnn.safetensors", logits.astype(np.float32), data.test_labels, data.classes)
    # --download is accepted (the app's rebuild hint uses it); the data is already there, so nothing is fetched
    assert main(["--data-dir", str(cifar_root), "--checkpoints", str(tmp_path), "--per-class", "2", "--download"]) == 0
    t = load_bundle(tmp_path / BUNDLE_FILE)
    wrong = np.flatnonzero(np.arange(len(data.test_labels)) % 7 == 0)
    assert set(wrong) <= set(t.indices.tolist())
    assert "wrote" in capsys.readouterr().out
