"""The checkpoints in checkpoints/ are what they say: architecture, metadata, and stored evaluations
that a fresh forward pass reproduces (on a few hundred bundled images, to stay fast)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from cifar.bundle import load_bundle
from cifar.checkpoints import load_model
from cifar.data import normalize
from cifar.checkpoints import RunFiles
from cifar.evaluate import load_evaluation
from cifar.models import CustomCNN, ResNet18, count_parameters, get_model

SHIPPED = Path(__file__).resolve().parents[1] / "checkpoints"
ARCH = {"cnn": (CustomCNN, 4_577_290), "resnet18": (ResNet18, 11_173_962)}
N_CHECK = 300
REQUIRED_META = ("command", "recipe", "config", "epochs_run", "best_epoch", "wall_time_s", "hardware", "data",
                 "history", "train_acc", "val_acc", "test_acc", "git_commit")


def shipped(model: str) -> Path:
    path = SHIPPED / f"{model}.safetensors"
    if not path.is_file():
        pytest.skip(f"{path} is not shipped yet (checkpoints/README.md says why)")
    return path


@pytest.mark.parametrize("model", list(ARCH))
def test_shipped_checkpoint_is_the_named_architecture_with_complete_metadata(model):
    net, meta = load_model(shipped(model), expect=model)
    cls, params = ARCH[model]
    assert type(net) is cls and count_parameters(net) == params
    assert meta["model"] == model and meta["config"]["model"] == model
    missing = [k for k in REQUIRED_META if k not in meta]
    assert not missing, f"metadata lacks {missing}"
    assert meta["command"].startswith("python -m cifar.train ") and f"--model {model}" in meta["command"]
    assert meta["data"]["split_seed"] == 42 and (meta["data"]["n_train"], meta["data"]["n_val"]) == (45_000, 5_000)
    assert len(meta["history"]) == meta["epochs_run"] and 1 <= meta["best_epoch"] <= meta["epochs_run"]
    assert meta["val_acc"] == max(h["val_acc"] for h in meta["history"])
    # The app's rebuild command for an unreadable file names this recipe: it must be the shipped one.
    spec = get_model(model)
    assert spec.shipped_recipe == meta["recipe"]
    # and its extra flags are the shipped run's own (the CNN ran 60 epochs of the 30-epoch recipe)
    flags = spec.shipped_flags.split()
    for flag, value in zip(flags[::2], flags[1::2]):
        assert str(meta["config"][flag.removeprefix("--").replace("-", "_")]) == value


@pytest.mark.parametrize("model", list(ARCH))
def test_stored_evaluation_matches_metadata_and_a_fresh_forward_pass(model):
    path = shipped(model)
    net, meta = load_model(path, expect=model)
    ev = load_evaluation(path)
    assert ev["labels"].shape == ev["preds"].shape == (10_000,) and ev["probs"].shape == (10_000, 10)
    # The accuracy in the file's metadata is exactly what its stored predictions give.
    assert float(np.mean(ev["preds"] == ev["labels"])) == pytest.approx(meta["test_acc"], abs=1e-6)
    metrics = json.loads(RunFiles.beside(path).metrics.read_text())
    assert metrics["accuracy"] == pytest.approx(meta["test_acc"], abs=1e-6)

    bundle = load_bundle(SHIPPED / "demo_images.npz")
    pick = np.linspace(0, len(bundle.indices) - 1, N_CHECK).astype(int)  # spread over classes, errors and not
    idx = bundle.indices[pick]
    assert np.array_equal(bundle.labels[pick], ev["labels"][idx])
    x = normalize(torch.from_numpy(bundle.images[pick]).permute(0, 3, 1, 2).contiguous())
    with torch.no_grad():
        probs = torch.softmax(net.eval()(x), dim=1).numpy()
    assert np.array_equal(probs.argmax(1), ev["preds"][idx])
    np.testing.assert_allclose(probs, ev["probs"][idx], atol=1e-4)
