"""The command lines: `python -m cifar.train` and `python -m cifar.evaluate`."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from dataclasses import fields
from pathlib import Path

import numpy as np
import pytest
import torch

import cifar.evaluate as evaluate_mod
import cifar.runtime as runtime_mod
from cifar import metrics
from cifar.checkpoints import read_metadata
from cifar.config import TrainConfig
from cifar.evaluate import load_evaluation
from cifar.train import RESUME_FILE, main as train_main
from conftest import tiny_args

REPO = Path(__file__).resolve().parents[1]


def run_module(*argv: str) -> subprocess.CompletedProcess:
    """Run `python -m <argv>` from the repository root, as a user would."""
    env = {k: v for k, v in os.environ.items() if k != "CIFAR10_DIR"}
    return subprocess.run([sys.executable, "-m", *argv], cwd=REPO, env=env, capture_output=True, text=True,
                          timeout=600)


def copy_checkpoint(reference_run: Path, tmp_path: Path) -> Path:
    """The reference checkpoint alone in a fresh folder, so evaluating it does not touch the reference."""
    dst = tmp_path / "cnn.safetensors"
    shutil.copy(reference_run / "cnn.safetensors", dst)
    return dst


def test_train_help_lists_every_flag(capsys):
    # In-process: the killed-run test in test_train.py already proves `python -m cifar.train` starts.
    with pytest.raises(SystemExit) as e:
        train_main(["--help"])
    assert e.value.code == 0
    out = capsys.readouterr().out
    # One flag per config field (generated from the dataclass), plus the run's own flags.
    flags = ["--" + f.name.replace("_", "-") for f in fields(TrainConfig)]
    flags += ["--data-dir", "--download", "--out-dir", "--resume", "--quiet"]
    missing = [f for f in flags if f not in out]
    assert not missing, f"not in --help: {missing}"
    for f in ["--lr", "--batch-size", "--recipe", "--resume", "--limit-train", "--data-dir", "--download"]:
        assert f in out


def test_evaluate_help_lists_its_flags():
    # A real process: this is the test that `python -m cifar.evaluate` is wired up.
    r = run_module("cifar.evaluate", "--help")
    assert r.returncode == 0, r.stderr
    for f in ["--checkpoint", "--data-dir", "--download", "--device", "--precision", "--quiet"]:
        assert f in r.stdout


def test_train_without_data_is_one_clear_error(tmp_path, capsys):
    missing = tmp_path / "no-data-here"
    rc = train_main(["--data-dir", str(missing), "--out-dir", str(tmp_path / "run"), "--quiet"])
    out, err = capsys.readouterr()
    assert rc == 2
    assert "Traceback" not in err and "Traceback" not in out
    error_lines = [line for line in err.splitlines() if line.startswith("error:")]
    assert len(error_lines) == 1, err
    assert str(missing) in error_lines[0]
    assert "--download" in err and "--data-dir" in err
    assert not (tmp_path / "run").exists()  # nothing half-created


def test_end_to_end_writes_the_three_outputs(reference_run):
    # reference_run is `cifar.train.main(tiny_args(...))`, a complete tiny CLI run.
    for name in ["cnn.safetensors", "cnn.eval.npz", "cnn.metrics.json"]:
        assert (reference_run / name).is_file(), name
    meta = read_metadata(reference_run / "cnn.safetensors")
    summary = json.loads((reference_run / "cnn.metrics.json").read_text())
    assert summary["accuracy"] == pytest.approx(meta["test_acc"], abs=1e-7)
    ev = load_evaluation(reference_run / "cnn.safetensors")
    assert ev["logits"].shape == (100, 10) and ev["probs"].shape == (100, 10)
    np.testing.assert_allclose(ev["probs"].sum(1), 1.0, rtol=1e-5)
    np.testing.assert_array_equal(ev["preds"], ev["logits"].argmax(1))


def test_evaluate_reproduces_the_stored_test_accuracy(cifar_root, reference_run, tmp_path, capsys):
    ckpt = copy_checkpoint(reference_run, tmp_path)
    # The flags the checkpoint was trained with (CPU, fp32), so the comparison can be exact anywhere.
    rc = evaluate_mod.main(["--checkpoint", str(ckpt), "--data-dir", str(cifar_root), "--device", "cpu",
                            "--precision", "fp32", "--quiet"])
    assert rc == 0
    meta = read_metadata(ckpt)
    summary = json.loads((tmp_path / "cnn.metrics.json").read_text())
    assert summary["accuracy"] == pytest.approx(meta["test_acc"], abs=1e-7)
    # Same predictions as the run saved at the end of training, image by image.
    ours, theirs = load_evaluation(ckpt), load_evaluation(reference_run / "cnn.safetensors")
    np.testing.assert_array_equal(ours["preds"], theirs["preds"])
    np.testing.assert_allclose(ours["logits"], theirs["logits"], rtol=1e-5, atol=1e-5)
    assert f"test accuracy {meta['test_acc']:.4f}" in capsys.readouterr().out


def test_evaluate_default_flags_reproduce_here(cifar_root, reference_run, tmp_path):
    # The brief's exact invocation: auto evaluates in the precision the checkpoint was trained in.
    ckpt = copy_checkpoint(reference_run, tmp_path)
    assert evaluate_mod.main(["--checkpoint", str(ckpt), "--data-dir", str(cifar_root), "--quiet"]) == 0
    summary = json.loads((tmp_path / "cnn.metrics.json").read_text())
    assert summary["accuracy"] == pytest.approx(read_metadata(ckpt)["test_acc"], abs=1e-7)


def test_evaluate_flip_tta_is_reported_beside_the_single_pass_headline(cifar_root, reference_run, tmp_path, monkeypatch,
                                                                       capsys):
    ckpt = copy_checkpoint(reference_run, tmp_path)
    real = evaluate_mod.predict_logits
    seen = []

    def record(model, images, rt, *args, **kwargs):
        seen.append(images.clone())
        return real(model, images, rt, *args, **kwargs)

    monkeypatch.setattr(evaluate_mod, "predict_logits", record)
    assert evaluate_mod.main(["--checkpoint", str(ckpt), "--data-dir", str(cifar_root), "--quiet", "--flip-tta"]) == 0
    plain, mirrored = seen  # two passes: the test images, then the same images mirrored left-right
    assert torch.equal(mirrored, plain.flip(3)) and not torch.equal(mirrored, plain)
    summary = json.loads((tmp_path / "cnn.metrics.json").read_text())
    saved = load_evaluation(ckpt)
    # The headline and the saved predictions stay single-pass ...
    assert summary["accuracy"] == pytest.approx(read_metadata(ckpt)["test_acc"], abs=1e-7)
    # ... and the TTA number is the mean softmax of both passes, recomputed here from fresh logits.
    model, _ = evaluate_mod.load_model(ckpt)
    rt = runtime_mod.Runtime.decide("cpu", "fp32")
    twin = metrics.softmax(real(rt.prepare_model(model), mirrored, rt).numpy())
    expected = metrics.accuracy(saved["labels"], (saved["probs"] + twin).argmax(1))
    assert summary["flip_tta_accuracy"] == pytest.approx(expected)
    assert f"flip TTA accuracy {expected:.4f}" in capsys.readouterr().out


def test_evaluate_auto_uses_the_checkpoints_precision(cifar_root, reference_run, tmp_path, monkeypatch):
    ckpt = copy_checkpoint(reference_run, tmp_path)
    seen = {}

    def record(model, images, rt, *args, **kwargs):
        seen["autocast"] = rt.autocast_dtype
        return torch.zeros(len(images), 10)

    # Pretend to be a bf16 CPU, and skip the (emulated, slow) forward pass: only the choice matters.
    monkeypatch.setattr(runtime_mod, "cpu_has_bf16", lambda: True)
    monkeypatch.setattr(evaluate_mod, "predict_logits", record)
    assert read_metadata(ckpt)["config"]["precision"] == "fp32"
    evaluate_mod.evaluate_checkpoint(ckpt, str(cifar_root), device="cpu", progress=False)
    assert seen["autocast"] is None


def test_evaluate_needs_only_the_test_batch(cifar_root, reference_run, tmp_path):
    ckpt = copy_checkpoint(reference_run, tmp_path)
    only_test = tmp_path / "data" / "cifar-10-batches-py"
    only_test.mkdir(parents=True)
    src = next(cifar_root.rglob("test_batch"))
    shutil.copy(src, only_test / "test_batch")
    assert evaluate_mod.main(["--checkpoint", str(ckpt), "--data-dir", str(tmp_path / "data"), "--quiet"]) == 0
    summary = json.loads((tmp_path / "cnn.metrics.json").read_text())
    assert summary["accuracy"] == pytest.approx(read_metadata(ckpt)["test_acc"], abs=1e-7)


def test_evaluate_unusable_device_is_one_clear_error(cifar_root, reference_run, tmp_path, capsys, monkeypatch):
    ckpt = copy_checkpoint(reference_run, tmp_path)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    rc = evaluate_mod.main(["--checkpoint", str(ckpt), "--data-dir", str(cifar_root), "--device", "cuda", "--quiet"])
    err = capsys.readouterr().err
    assert rc == 2 and err.startswith("error: ") and "CUDA is not available" in err
    with pytest.raises(SystemExit):  # argparse names the valid choices
        evaluate_mod.main(["--checkpoint", str(ckpt), "--device", "gpu"])
    assert "invalid choice: 'gpu'" in capsys.readouterr().err


def test_evaluate_bad_checkpoint_is_one_clear_error(cifar_root, tmp_path, capsys):
    bad = tmp_path / "cnn.safetensors"
    bad.write_bytes(b"not a checkpoint at all")
    rc = evaluate_mod.main(["--checkpoint", str(bad), "--data-dir", str(cifar_root), "--quiet"])
    err = capsys.readouterr().err
    assert rc == 2 and err.startswith("error: ") and str(bad) in err
    assert not (tmp_path / "cnn.eval.npz").exists()


def test_train_twice_into_one_folder_needs_resume(cifar_root, reference_run, tmp_path, capsys):
    run = tmp_path / "run"
    run.mkdir()
    shutil.copy(reference_run / RESUME_FILE, run / RESUME_FILE)
    before = (run / RESUME_FILE).read_bytes()
    rc = train_main(tiny_args(cifar_root, run))
    err = capsys.readouterr().err
    assert rc == 2
    assert err.startswith("error: ") and str(run / RESUME_FILE) in err and "--resume" in err
    assert (run / RESUME_FILE).read_bytes() == before  # the earlier run is not overwritten
    assert {p.name for p in run.iterdir()} == {RESUME_FILE}


@pytest.mark.parametrize("device", [
    "gpu",
    pytest.param("cuda", marks=pytest.mark.skipif(torch.cuda.is_available(), reason="needs a machine without CUDA")),
])
def test_bad_device_is_one_clear_error(cifar_root, tmp_path, capsys, device):
    argv = tiny_args(cifar_root, tmp_path / "run")
    argv[argv.index("--device") + 1] = device
    try:
        rc = train_main(argv)
    except SystemExit as e:  # argparse's "invalid choice" would be fine too
        rc = e.code
    assert rc == 2
    assert "error:" in capsys.readouterr().err
