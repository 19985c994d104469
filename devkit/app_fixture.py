"""A tiny, complete checkpoint folder for the app's tests, the browser test and scripts/bench_app.py.

`build_app_checkpoints(root)` writes, from the synthetic CIFAR-10 of devkit.fake_cifar:

    root/data/cifar-10-batches-py/...      the synthetic set (100 test images)
    root/checkpoints/cnn.safetensors       CustomCNN, 2 tiny epochs (+ .eval.npz, .metrics.json)
    root/checkpoints/resnet18.safetensors  ResNet18, untrained, made-up history (see train_tiny)
    root/checkpoints/demo_images.npz       a bundle holding all 100 synthetic test images
    root/checkpoints/tune_cnn.csv          a 2×2 lr × batch_size grid as cifar.tune writes it
    root/checkpoints/influence_demo.npz    the training-data pages' subset (python -m cifar.influence)
    root/checkpoints/<model>.trust.json    python -m cifar.trust's temperature and OOD table (+ .mahalanobis.npz)

Both models are barely better than chance, so their confusion matrices have many off-diagonal
cells, which is what the gallery tests need.
"""

from __future__ import annotations

import csv
import shutil
import sys
from pathlib import Path

import numpy as np

from cifar.models import list_models
from cifar_app.store import TUNE_FILE
from devkit.fake_cifar import VAL_SIZE, write_fake_cifar10


def train_tiny(model: str, data_root: Path, out_dir: Path) -> dict:
    """A checkpoint + evaluation of one model on the synthetic set, written by cifar.train.finish.

    The CustomCNN really trains (2 epochs of 4 steps, a few CPU seconds). ResNet18 would cost ~30 CPU
    seconds for the same, so it keeps its seeded initial weights and gets a made-up 3-epoch history
    (best epoch 2) instead: the app only reads what finish() writes, and an untrained ResNet still
    has a full confusion matrix, layers to hook and gradients to attribute.
    """
    import torch

    from cifar.config import make_config
    from cifar.data import load_cifar10, make_splits
    from cifar.models import build_model
    from cifar.runtime import Runtime, seed_everything
    from cifar.train import TrainState, finish, fit

    recipe = "paper" if model == "cnn" else "fast"
    cfg = make_config(model, recipe, epochs=2 if model == "cnn" else 3, batch_size=16, limit_train=64,
                      val_size=VAL_SIZE, eval_batch_size=100, precision="fp32", device="cpu", early_stopping=0)
    splits = make_splits(load_cifar10(data_root), cfg.val_size, cfg.split_seed, cfg.limit_train)
    command = (f"python -m cifar.train --model {model} --recipe {recipe} --epochs {cfg.epochs} --batch-size 16 "
               f"--limit-train 64 --val-size {VAL_SIZE} --precision fp32 --device cpu --data-dir {data_root}")
    if model == "cnn":
        return fit(cfg, splits, out_dir, command=command, progress=False, log=lambda _msg: None)
    seed_everything(cfg.seed)
    net = build_model(model, **cfg.builder_kwargs())
    history = [dict(epoch=e, train_loss=tl, train_acc=ta, val_loss=vl, val_acc=va, lr=lr, seconds=1.5)
               for e, tl, ta, vl, va, lr in [(1, 2.2, 0.20, 2.1, 0.25, 0.08), (2, 1.9, 0.35, 1.9, 0.40, 0.20),
                                             (3, 1.6, 0.45, 2.0, 0.35, 0.01)]]
    state = TrainState(epoch=3, history=history, best_epoch=2, best_val_acc=0.40,
                       best_weights={k: v.clone() for k, v in net.state_dict().items()}, wall_time=4.5)
    with torch.no_grad():
        return finish(cfg, splits, out_dir, state, Runtime.decide("cpu", "fp32"), command, log=lambda _msg: None)


def write_tune_csv(path: Path) -> None:
    """A finished 2×2 grid and one failed trial, with cifar.tune's columns."""
    cols = ["lr", "batch_size", "best_val_acc", "best_epoch", "epochs_run", "seconds", "test_acc", "error",
            "run_dir", "config"]
    rows = [
        (0.001, 32, 0.41, 2, 2, 3.0, 0.40, ""),
        (0.001, 64, 0.38, 2, 2, 2.5, 0.37, ""),
        (0.003, 32, 0.35, 1, 2, 3.1, 0.33, ""),
        (0.003, 64, 0.30, 2, 2, 2.4, 0.31, ""),
        (0.1, 64, "", "", "", "", "", "non-finite loss"),
    ]
    with open(path, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(cols)
        for r in rows:
            w.writerow([*r, f"runs/tune-cnn/t{r[0]}-{r[1]}", "{}"])


def write_trust(checkpoint: Path, data_root: Path) -> None:
    """The checkpoint's temperature, Mahalanobis statistics and OOD table, as python -m cifar.trust writes them
    (8 images per OOD set: seconds)."""
    from cifar.trust import run_trust

    run_trust(checkpoint, str(data_root), device="cpu", n_ood=8, progress=False, batch_size=100,
              command="python -m cifar.trust (app fixture)", log=lambda _msg: None)


def build_app_checkpoints(root: str | Path) -> Path:
    """Write the synthetic data and a complete checkpoint folder under root; return root/checkpoints."""
    from cifar.bundle import BUNDLE_FILE, write_bundle
    from cifar.checkpoints import run_files
    from cifar.data import load_cifar10

    root = Path(root)
    data_root = write_fake_cifar10(root / "data")
    ckpt = root / "checkpoints"
    ckpt.mkdir(parents=True, exist_ok=True)
    for model in list_models():
        run = root / "runs" / model
        train_tiny(model, data_root, run)
        for src in run_files(run, model).all():
            shutil.copy(src, ckpt / src.name)
        write_trust(ckpt / f"{model}.safetensors", data_root)
    data = load_cifar10(data_root)
    write_bundle(ckpt / BUNDLE_FILE, data.test_images, data.test_labels, np.arange(len(data.test_labels)))
    write_tune_csv(ckpt / TUNE_FILE)
    # The training-data pages' demo subset (checkpoints/influence_demo.npz); its feature cache stays under root.
    from cifar.influence import main as build_influence

    build_influence(["--data-dir", str(data_root), "--checkpoints", str(ckpt), "--cache-dir", str(root / "cache"),
                     "--per-class", "3", "--top-self", "2"])
    return ckpt


def copy_checkpoints(src: Path, dst: Path) -> Path:
    """A private copy of a checkpoint folder that a test may damage."""
    shutil.copytree(src, dst)
    return dst


if __name__ == "__main__":
    # python -m devkit.app_fixture /tmp/appfix  → then CIFAR_CHECKPOINTS=/tmp/appfix/checkpoints streamlit run ...
    print(build_app_checkpoints(sys.argv[1] if len(sys.argv) > 1 else "app-fixture"))


_BUILT: dict[str, Path] = {}


def app_checkpoints_once(tmp_path_factory) -> Path:
    """The fixture checkpoint folder, built once per test session (shared by test_app and test_browser).

    Set APP_FIXTURE_DIR to a folder written by `python -m devkit.app_fixture DIR` to reuse it across
    sessions while developing (it is rebuilt when it lacks a file).
    """
    import os

    if "ckpt" not in _BUILT:
        reuse = os.environ.get("APP_FIXTURE_DIR")
        from cifar.bundle import BUNDLE_FILE
        from cifar.checkpoints import run_files

        folder = Path(reuse or ".") / "checkpoints"
        from cifar.influence import DEMO_FILE

        needed = ([run_files(folder, m).weights for m in list_models()] + [run_files(folder, m).trust for m in list_models()]
                  + [folder / BUNDLE_FILE, folder / TUNE_FILE, folder / DEMO_FILE])
        if reuse and all(f.is_file() for f in needed):
            _BUILT["ckpt"] = Path(reuse) / "checkpoints"
        else:
            _BUILT["ckpt"] = build_app_checkpoints(tmp_path_factory.mktemp("app"))
    return _BUILT["ckpt"]
