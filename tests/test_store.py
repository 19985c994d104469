"""cifar_app.store and cifar_app.advice: what the app reads, and the advice when a file is broken."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import numpy as np
import pytest

from cifar_app import advice, store


def test_corrupt_files_become_unavailable(tmp_path):
    paths = store.Paths(tmp_path, tmp_path / "nodata")
    (tmp_path / "cnn.safetensors").write_bytes(b"\x00" * 100)
    with pytest.raises(store.Unavailable, match="cannot be read"):
        store.read_meta("cnn", paths)
    with pytest.raises(store.Unavailable) as e:
        store.load_eval("cnn", paths)
    assert e.value.command.startswith("python -m cifar.evaluate --checkpoint")
    (tmp_path / "cnn.eval.npz").write_bytes(b"PK\x03\x04garbage")
    with pytest.raises(store.Unavailable, match="cannot be read"):
        store.load_eval("cnn", paths)
    with pytest.raises(store.Unavailable, match="demo bundle"):
        store.load_test_images(paths)

def test_summary_is_recomputed_without_the_json(tmp_path):
    paths = store.Paths(tmp_path, tmp_path)
    rng = np.random.default_rng(0)
    labels = np.arange(50) % 10
    probs = rng.dirichlet(np.ones(10), 50)
    np.savez(tmp_path / "cnn.eval.npz", probs=probs, preds=probs.argmax(1), labels=labels, logits=np.log(probs))
    s = store.load_summary("cnn", paths)
    assert s["accuracy"] == pytest.approx((probs.argmax(1) == labels).mean())

def test_test_images_read_only_the_test_batch(cifar_root, tmp_path):
    paths = store.Paths(tmp_path, cifar_root)
    imgs = store.load_test_images(paths)
    assert imgs.full and len(imgs.indices) == 100 and imgs.images.shape == (100, 32, 32, 3)

def test_app_paths_follow_the_environment(monkeypatch, tmp_path):
    monkeypatch.setenv("CIFAR_CHECKPOINTS", str(tmp_path))
    monkeypatch.setenv("CIFAR10_DIR", "/somewhere")
    p = store.app_paths()
    assert p.checkpoints == tmp_path and p.data == Path("/somewhere")
    monkeypatch.delenv("CIFAR_CHECKPOINTS")
    assert store.app_paths().checkpoints == Path("checkpoints")

def test_file_key_changes_when_a_file_is_replaced(tmp_path):
    f = tmp_path / "a"
    assert store.file_key(f) is None
    f.write_bytes(b"1")
    k = store.file_key(f)
    f.write_bytes(b"22")
    os.utime(f, ns=(k[0] + 10**9, k[0] + 10**9))
    assert store.file_key(f) != k

def test_loaded_models_are_channels_last(tmp_path):
    import torch

    from cifar.checkpoints import save_model
    from cifar.models import build_model

    net = build_model("cnn")
    save_model(net, tmp_path / "cnn.safetensors", {"model": "cnn", "builder_kwargs": {}})
    loaded, _ = store.load_checkpoint("cnn", store.Paths(tmp_path, tmp_path))
    assert loaded.conv1[0].weight.is_contiguous(memory_format=torch.channels_last)
    assert not loaded.training

def test_summary_without_json_or_sklearn_says_how_to_rebuild(tmp_path, monkeypatch):
    # The hosted demo (Pipfile) has no scikit-learn: a missing .metrics.json must be a message, not a crash.
    paths = store.Paths(tmp_path, tmp_path)
    probs = np.full((10, 10), 0.1)
    np.savez(tmp_path / "cnn.eval.npz", probs=probs, preds=probs.argmax(1), labels=np.arange(10))
    monkeypatch.setitem(sys.modules, "cifar.metrics", None)  # makes `import cifar.metrics` raise ImportError
    with pytest.raises(store.Unavailable, match="needs scikit-learn") as e:
        store.load_summary("cnn", paths)
    assert e.value.command.startswith("python -m cifar.evaluate --checkpoint")
    assert e.value.command.endswith(" --flip-tta")  # so the rebuilt metrics fill the overview's TTA row

def test_out_dir_of():
    assert advice.out_dir_of("python -m cifar.train --model cnn --out-dir /x/y", "cnn", "paper") == "/x/y"
    assert advice.out_dir_of("python -m cifar.train --out-dir=z", "cnn", "paper") == "z"
    assert advice.out_dir_of("python -m cifar.train --model cnn", "cnn", "paper") == "runs/cnn-paper"

def test_rebuild_command_for_a_missing_checkpoint(tmp_path):
    paths = store.Paths(tmp_path / "ckpt", tmp_path / "nodata")
    with pytest.raises(store.Unavailable) as e:
        store.read_meta("resnet18", paths)
    assert "resnet18.safetensors" in e.value.message and "is missing" in e.value.message
    lines = e.value.command.splitlines()
    assert lines[0] == f"python -m cifar.train --model resnet18 --recipe paper --data-dir {tmp_path / 'nodata'} --download"
    assert lines[1] == (f"cp runs/resnet18-paper/resnet18.safetensors runs/resnet18-paper/resnet18.eval.npz "
                        f"runs/resnet18-paper/resnet18.metrics.json {tmp_path / 'ckpt'}/")
    assert lines[2].startswith("python -m cifar.bundle")

def test_rebuild_command_reuses_the_checkpoints_own_command_on_this_machine(tmp_path):
    paths = store.Paths(tmp_path / "ckpt", tmp_path / "nodata")
    meta = {"command": "python -m cifar.train --model cnn --recipe fast --epochs 60 --data-dir ../shared/cifar10 "
                       "--out-dir /root/runs/cnn --resume", "recipe": "fast"}
    train, copy, *_ = advice.retrain("cnn", paths, meta).command.splitlines()
    # the recipe and its overrides stay; the other machine's folders and --resume go
    assert train == f"python -m cifar.train --model cnn --recipe fast --epochs 60 --data-dir {tmp_path / 'nodata'} --download"
    assert copy.startswith("cp runs/cnn-fast/cnn.safetensors ")

def test_portable_command_drops_both_flag_forms():
    got = advice.portable_command("python -m cifar.train --out-dir=/a --data-dir=/b --quiet --lr 0.01", "--data-dir d")
    assert got == "python -m cifar.train --lr 0.01 --data-dir d"


# ------------------------------------------------------------------------------ advice that fits the damage

SHIPPED = Path(__file__).resolve().parents[1] / "checkpoints"


def test_a_damaged_shipped_checkpoint_is_restored_from_git_not_retrained():
    # The shipped folder itself, read through the app's paths: every shipped file is tracked by git.
    paths = store.Paths(SHIPPED, Path("/nonexistent"))
    fix = advice.for_checkpoint("resnet18", paths)
    assert fix.command == "git checkout -- checkpoints/resnet18.safetensors"
    assert "restores the shipped file" in fix.note
    both = advice.for_evaluation("cnn", paths)
    assert both.command == "git checkout -- checkpoints/cnn.eval.npz checkpoints/cnn.metrics.json"
    assert advice.for_bundle(paths).command == "git checkout -- checkpoints/demo_images.npz"


def test_files_git_does_not_ship_get_the_command_that_rebuilds_them(tmp_path):
    paths = store.Paths(tmp_path / "ckpt", tmp_path / "nodata")
    fix = advice.for_checkpoint("resnet18", paths)
    assert fix.command.startswith("python -m cifar.train --model resnet18 --recipe paper")
    # a retrain says what it costs, on a CPU and on a GPU
    assert "H200 GPU" in fix.note and "CPU cores" in fix.note
    assert advice.for_evaluation("cnn", paths).command.startswith("python -m cifar.evaluate --checkpoint ")
    assert advice.for_bundle(paths).command.startswith("python -m cifar.bundle ")


def test_every_registered_model_has_a_measured_retrain_time():
    from cifar.models import list_models

    assert set(advice.RETRAIN_TIME) == set(list_models())


def test_numbers_keep_the_data_they_were_measured_on_whatever_data_is_here(cifar_root, tmp_path):
    """The shipped metrics say "JPEG copy"; a data folder holding another test set describes the images
    the app shows, never the numbers."""
    from cifar.data import describe_source

    paths = store.Paths(tmp_path, cifar_root)  # the synthetic set: not the official archive, not the copy
    recorded = {"data": {"name": "CIFAR-10 (JPEG re-encoded copy)", "official": False}}
    assert store.recorded_source([recorded])["name"] == "CIFAR-10 (JPEG re-encoded copy)"
    images = describe_source(paths.test_batch)  # what cache.data_source(images=True) says of the folder
    assert images["name"].startswith("CIFAR-10 (not the official archive") and images["official"] is False
    assert store.recorded_source([]) is None


def test_the_default_checkpoint_folder_is_the_repositorys_from_anywhere(monkeypatch, tmp_path):
    monkeypatch.delenv("CIFAR_CHECKPOINTS", raising=False)
    monkeypatch.chdir(tmp_path)  # a server started outside the repository
    assert store.app_paths().checkpoints == advice.REPO / "checkpoints"
    fix = advice.for_checkpoint("cnn", store.app_paths())
    assert fix.command == f"git -C {advice.REPO} checkout -- checkpoints/cnn.safetensors"


def test_retraining_a_model_without_metadata_uses_its_shipped_run(tmp_path):
    fix = advice.for_checkpoint("cnn", store.Paths(tmp_path / "ckpt", tmp_path / "nodata"))
    assert fix.command.startswith("python -m cifar.train --model cnn --recipe fast --epochs 60 ")
    assert "209 min" in fix.note
