"""cifar.train: determinism, resume (in-process and after a real kill), divergence, and the checkpoint it writes.

Every run here is the tiny one from conftest (64 training images, 3 epochs, CPU fp32), and most tests
compare against the session's `reference_run` instead of training again.
"""

from __future__ import annotations

import dataclasses
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import torch
import torch.nn.functional as F

import cifar.evaluate as evaluate_mod
import cifar.runtime as runtime_mod
import cifar.train as train_mod
from cifar import CLASSES
from cifar.checkpoints import load_model, load_state, read_metadata
from cifar.data import load_cifar10, make_splits
from cifar.evaluate import load_evaluation
from cifar.config import make_config
from cifar.runtime import Runtime
from cifar.train import RESUME_FILE, TrainingError, build_parser, fit, main
from conftest import TINY_EPOCHS, tiny_args
from devkit.fake_cifar import VAL_SIZE

REPO = Path(__file__).resolve().parents[1]
OUTPUTS = {"resume.pt", "cnn.safetensors", "cnn.eval.npz", "cnn.metrics.json"}


def _quiet(*args, **kwargs):
    pass


def tiny_config(data_dir, out_dir, **overrides):
    """The TrainConfig that `python -m cifar.train <tiny_args>` builds, with overrides."""
    cfg = train_mod.config_from_args(build_parser().parse_args(tiny_args(data_dir, out_dir)))
    return dataclasses.replace(cfg, **overrides)


@pytest.fixture(scope="module")
def tiny_splits(cifar_root):
    cfg = tiny_config(cifar_root, "unused")
    return make_splits(load_cifar10(cifar_root), cfg.val_size, cfg.split_seed, cfg.limit_train)


def without_seconds(history):
    """Histories of two runs match in everything but the time each epoch took."""
    return [{k: v for k, v in h.items() if k != "seconds"} for h in history]


def weights(path):
    model, _ = load_model(path)
    return model.state_dict()


def assert_same_weights(a, b):
    wa, wb = weights(a), weights(b)
    assert wa.keys() == wb.keys()
    for k in wa:
        assert torch.equal(wa[k], wb[k]), k


def copy_resume_state(reference_run, tmp_path) -> Path:
    """A new run folder holding only the reference run's resume.pt (a finished 3-epoch run)."""
    run = tmp_path / "run"
    run.mkdir()
    shutil.copy(reference_run / RESUME_FILE, run / RESUME_FILE)
    return run


# ---------------------------------------------------------------------------------------------
# Determinism


class _Stop(Exception):
    """Raised from inside the loop once the first training batch's loss is known."""


def first_step(monkeypatch, cfg, splits, run_dir):
    """(initial weights, first-batch loss) of the real loop: fit runs until its first loss, then stops."""
    seen = {}
    real_build = train_mod.build_model

    def build(name, **kwargs):
        model = real_build(name, **kwargs)
        seen.setdefault("weights", {k: v.clone() for k, v in model.state_dict().items()})
        return model

    def cross_entropy(*args, **kwargs):
        seen["loss"] = F.cross_entropy(*args, **kwargs).item()
        raise _Stop

    monkeypatch.setattr(train_mod, "build_model", build)
    monkeypatch.setattr(train_mod, "F", SimpleNamespace(cross_entropy=cross_entropy))
    with pytest.raises(_Stop):
        fit(cfg, splits, run_dir, progress=False, log=_quiet)
    return seen["weights"], seen["loss"]


def test_same_seed_same_start(monkeypatch, cifar_root, tiny_splits, tmp_path):
    cfg = tiny_config(cifar_root, tmp_path)
    w1, loss1 = first_step(monkeypatch, cfg, tiny_splits, tmp_path / "a")
    w2, loss2 = first_step(monkeypatch, cfg, tiny_splits, tmp_path / "b")
    assert loss1 == loss2  # exactly: same weights, same shuffle, same crops and flips, same dropout
    assert all(torch.equal(w1[k], w2[k]) for k in w1)
    # ...and the seed is what decides it.
    w3, loss3 = first_step(monkeypatch, dataclasses.replace(cfg, seed=7), tiny_splits, tmp_path / "c")
    assert loss3 != loss1
    assert not torch.equal(w1["conv1.0.weight"], w3["conv1.0.weight"])


# ---------------------------------------------------------------------------------------------
# Resume


def test_stop_then_resume_equals_uninterrupted(cifar_root, tiny_splits, reference_run, tmp_path):
    cfg = tiny_config(cifar_root, tmp_path)
    ref = read_metadata(reference_run / "cnn.safetensors")

    assert fit(cfg, tiny_splits, tmp_path, progress=False, log=_quiet, stop_after=1) == {}
    state = load_state(tmp_path / RESUME_FILE)
    assert state["epoch"] == 1 and not (tmp_path / "cnn.safetensors").exists()
    # A fresh run with the same seed repeats the reference's first epoch exactly.
    assert without_seconds(state["history"]) == without_seconds(ref["history"][:1])

    meta = fit(cfg, tiny_splits, tmp_path, resume=True, progress=False, log=_quiet)
    assert without_seconds(meta["history"]) == without_seconds(ref["history"])
    for key in ["best_epoch", "val_acc", "test_acc"]:
        assert meta[key] == ref[key], key
    assert_same_weights(tmp_path / "cnn.safetensors", reference_run / "cnn.safetensors")
    # Only the epochs of the second session are timed again; the first session's time is carried.
    assert meta["history"][0]["seconds"] == state["history"][0]["seconds"]


def test_resume_restores_onecycle_ema_and_momentum(cifar_root, tiny_splits, tmp_path):
    # The "fast" recipe carries more state across the break: a per-step OneCycle schedule, SGD
    # momentum buffers and the EMA weights that are evaluated and saved.
    cfg = tiny_config(cifar_root, tmp_path, recipe="fast", epochs=2, optimizer="sgd", scheduler="onecycle",
                      ema_decay=0.9, lr=0.05, momentum=0.9, nesterov=True, label_smoothing=0.1)
    straight = fit(cfg, tiny_splits, tmp_path / "a", progress=False, log=_quiet)
    fit(cfg, tiny_splits, tmp_path / "b", progress=False, log=_quiet, stop_after=1)
    # A longer run cannot reuse a one-cycle schedule laid out for 2 epochs: refused, saying how to go on.
    with pytest.raises(TrainingError, match=r"2-epoch run whose onecycle schedule .* --epochs 2"):
        fit(dataclasses.replace(cfg, epochs=3), tiny_splits, tmp_path / "b", resume=True, progress=False, log=_quiet)
    resumed = fit(cfg, tiny_splits, tmp_path / "b", resume=True, progress=False, log=_quiet)
    assert without_seconds(resumed["history"]) == without_seconds(straight["history"])
    assert resumed["history"][1]["lr"] != resumed["history"][0]["lr"]  # the schedule really moved
    assert_same_weights(tmp_path / "a" / "cnn.safetensors", tmp_path / "b" / "cnn.safetensors")


def test_killed_process_resumes_to_the_same_result(cifar_root, reference_run, tmp_path):
    out = tmp_path / "run"
    # A real interruption: the process is SIGKILLed (no cleanup, no except blocks) as soon as the
    # first epoch's resume.pt appears; OMP_NUM_THREADS=1 is inherited from conftest.
    log = tmp_path / "killed.log"  # a file, not a pipe: a full pipe would stall the child
    with open(log, "wb") as sink:
        proc = subprocess.Popen([sys.executable, "-m", "cifar.train", *tiny_args(cifar_root, out)], cwd=REPO,
                                stdout=sink, stderr=subprocess.STDOUT)
        try:
            deadline = time.monotonic() + 600
            while not (out / RESUME_FILE).exists():
                assert proc.poll() is None, f"training exited early:\n{log.read_text()[-2000:]}"
                assert time.monotonic() < deadline, "no resume.pt after 10 minutes"
                time.sleep(0.02)
            os.kill(proc.pid, signal.SIGKILL)
        finally:
            if proc.poll() is None:
                proc.kill()
            proc.wait()
    assert proc.returncode == -signal.SIGKILL
    killed_at = load_state(out / RESUME_FILE)["epoch"]
    assert 1 <= killed_at < TINY_EPOCHS and not (out / "cnn.safetensors").exists(), "the kill came too late"

    assert main(tiny_args(cifar_root, out, "--resume")) == 0
    meta = read_metadata(out / "cnn.safetensors")
    ref = read_metadata(reference_run / "cnn.safetensors")
    assert without_seconds(meta["history"]) == without_seconds(ref["history"])
    assert meta["test_acc"] == ref["test_acc"]
    assert_same_weights(out / "cnn.safetensors", reference_run / "cnn.safetensors")


def test_resume_of_a_finished_run_rewrites_the_same_checkpoint(cifar_root, tiny_splits, reference_run, tmp_path):
    run = copy_resume_state(reference_run, tmp_path)
    # eval_batch_size may change between sessions; nothing is trained, the best epoch is re-finished.
    cfg = tiny_config(cifar_root, run, eval_batch_size=50)
    meta = fit(cfg, tiny_splits, run, resume=True, progress=False, log=_quiet)
    ref = read_metadata(reference_run / "cnn.safetensors")
    assert meta["history"] == ref["history"]  # seconds too: they come from resume.pt
    assert meta["best_epoch"] == ref["best_epoch"] and meta["test_acc"] == ref["test_acc"]
    assert_same_weights(run / "cnn.safetensors", reference_run / "cnn.safetensors")


def test_resume_with_a_changed_config_is_refused(cifar_root, tiny_splits, reference_run, tmp_path):
    run = copy_resume_state(reference_run, tmp_path)
    before = (run / RESUME_FILE).read_bytes()
    cfg = tiny_config(cifar_root, run, lr=0.01)
    with pytest.raises(TrainingError, match=r"different run \(differs in lr\)") as e:
        fit(cfg, tiny_splits, run, resume=True, progress=False, log=_quiet)
    assert str(run / RESUME_FILE) in str(e.value)
    assert (run / RESUME_FILE).read_bytes() == before
    assert not (run / "cnn.safetensors").exists()


def test_resume_pt_is_written_atomically(reference_run):
    # mkstemp's ".resume.pt.*.tmp" files must all have been renamed away.
    assert {p.name for p in reference_run.iterdir()} == OUTPUTS


# ---------------------------------------------------------------------------------------------
# Divergence


def test_nan_loss_stops_and_keeps_the_last_good_state(monkeypatch, cifar_root, tiny_splits, reference_run, tmp_path):
    run = copy_resume_state(reference_run, tmp_path)
    before = (run / RESUME_FILE).read_bytes()
    real_epoch = train_mod.train_one_epoch

    def poisoned_epoch(model, *args, **kwargs):
        # Every forward pass of this epoch returns NaN logits, as a diverged network would.
        handle = model.register_forward_hook(lambda m, i, out: out * float("nan"))
        try:
            return real_epoch(model, *args, **kwargs)
        finally:
            handle.remove()

    monkeypatch.setattr(train_mod, "train_one_epoch", poisoned_epoch)
    # One more epoch (epochs may grow on resume) on top of the reference's three.
    cfg = tiny_config(cifar_root, run, epochs=TINY_EPOCHS + 1)
    with pytest.raises(TrainingError, match=rf"loss became nan at epoch {TINY_EPOCHS + 1}, step 1") as e:
        fit(cfg, tiny_splits, run, resume=True, progress=False, log=_quiet)
    assert "--lr" in str(e.value)
    # The state of the last finished epoch is untouched and still loads.
    assert (run / RESUME_FILE).read_bytes() == before
    state = load_state(run / RESUME_FILE)
    assert state["epoch"] == TINY_EPOCHS and len(state["history"]) == TINY_EPOCHS
    assert {p.name for p in run.iterdir()} == {RESUME_FILE}


def test_huge_lr_diverges_with_a_clear_error(cifar_root, tmp_path, capsys):
    # No patching: SGD at lr 1e6 really blows up within the first epoch.
    rc = main(tiny_args(cifar_root, tmp_path / "run", "--optimizer", "sgd", "--lr", "1e6"))
    err = capsys.readouterr().err
    assert rc == 2
    assert "error: loss became" in err and "diverged" in err and "--lr" in err
    assert not (tmp_path / "run" / "cnn.safetensors").exists()


# ---------------------------------------------------------------------------------------------
# What the finished run writes


def test_checkpoint_metadata_describes_the_run(cifar_root, reference_run, fake_data):
    meta = read_metadata(reference_run / "cnn.safetensors")
    cfg = tiny_config(cifar_root, reference_run)

    assert meta["model"] == "cnn" and meta["builder_kwargs"] == {"dropout": 0.4}
    assert meta["parameters"] == 4_577_290
    assert meta["config"] == cfg.to_dict()
    assert meta["classes"] == list(CLASSES)
    assert meta["normalization"] == {"mean": [0.5] * 3, "std": [0.5] * 3}
    assert meta["data"]["source"] == fake_data.source
    assert meta["data"]["split_seed"] == 42
    assert (meta["data"]["n_train"], meta["data"]["n_val"], meta["data"]["n_test"]) == (64, VAL_SIZE, 100)

    history = meta["history"]
    assert [h["epoch"] for h in history] == list(range(1, TINY_EPOCHS + 1)) and meta["epochs_run"] == TINY_EPOCHS
    for h in history:
        assert set(h) == {"epoch", "train_loss", "train_acc", "val_loss", "val_acc", "lr", "seconds", "train_size"}
        assert h["train_size"] == 32  # no --train-sizes: every epoch at full size
        assert 0 <= h["train_acc"] <= 1 and 0 <= h["val_acc"] <= 1 and h["seconds"] > 0
        assert np.isfinite(h["train_loss"]) and np.isfinite(h["val_loss"])
    assert history[0]["lr"] == cfg.lr
    assert meta["wall_time_s"] == round(sum(h["seconds"] for h in history), 1)

    # The best epoch is the first with the highest val accuracy, and its numbers are the ones reported.
    val = [h["val_acc"] for h in history]
    assert meta["best_epoch"] == val.index(max(val)) + 1
    assert meta["val_acc"] == max(val)
    assert meta["train_acc"] == history[meta["best_epoch"] - 1]["train_acc"]

    # test_acc is the accuracy of the predictions saved beside the checkpoint.
    ev = load_evaluation(reference_run / "cnn.safetensors")
    assert meta["test_acc"] == pytest.approx(float((ev["preds"] == ev["labels"]).mean()), abs=1e-7)
    np.testing.assert_array_equal(ev["labels"], fake_data.test_labels)

    assert meta["command"].startswith("python -m cifar.train ") and "--limit-train 64" in meta["command"]
    assert meta["git_commit"] and meta["torch_version"] == torch.__version__
    assert "fp32" in meta["hardware"]


def test_a_bf16_run_ships_fp32_test_predictions_that_evaluate_reproduces(cifar_root, tiny_splits, reference_run,
                                                                          tmp_path, monkeypatch):
    # A GPU run trains in bf16; its test accuracy must still be reproducible on a CPU without bf16.
    saved = load_state(reference_run / RESUME_FILE)
    cfg = train_mod.TrainConfig.from_dict(saved["config"])
    st = train_mod.TrainState.from_resume(saved)
    used = []
    real = train_mod.predict_logits

    def record(model, images, rt, *args, **kwargs):
        used.append(rt.autocast_dtype)
        return real(model, images, rt, *args, **kwargs)

    monkeypatch.setattr(train_mod, "predict_logits", record)
    meta = train_mod.finish(cfg, tiny_splits, tmp_path, st, Runtime(torch.device("cpu"), torch.bfloat16, True),
                            "python -m cifar.train", log=_quiet)
    assert used == [None]  # the test set is scored once, in fp32
    assert (meta["precision"], meta["eval_precision"]) == ("bfloat16", "fp32")
    assert "bfloat16" in meta["hardware"]
    # The shipped predictions are the fp32 ones of the uninterrupted reference run, image by image.
    np.testing.assert_array_equal(load_evaluation(tmp_path / "cnn.safetensors")["preds"],
                                  load_evaluation(reference_run / "cnn.safetensors")["preds"])

    # cifar.evaluate's auto precision follows eval_precision, not the bf16 of training.
    monkeypatch.setattr(runtime_mod, "cpu_has_bf16", lambda: True)  # bf16 would be chosen if asked for
    summary = evaluate_mod.evaluate_checkpoint(tmp_path / "cnn.safetensors", str(cifar_root), device="cpu",
                                               progress=False)
    assert used[-1] is None and summary["accuracy"] == pytest.approx(meta["test_acc"], abs=1e-7)


def test_fp32_on_cuda_turns_tf32_off_only_inside_the_block():
    # Entering the context only flips backend flags, so this runs on machines without CUDA too.
    cudnn, matmul = torch.backends.cudnn, torch.backends.cuda.matmul
    saved = cudnn.allow_tf32, matmul.allow_tf32  # matmul's flag is a property: monkeypatch cannot restore it
    try:
        cudnn.allow_tf32 = matmul.allow_tf32 = True
        with Runtime(torch.device("cuda"), None, True).autocast():
            assert not cudnn.allow_tf32 and not matmul.allow_tf32
        assert cudnn.allow_tf32 and matmul.allow_tf32
    finally:
        cudnn.allow_tf32, matmul.allow_tf32 = saved
    assert Runtime(torch.device("cuda"), torch.bfloat16, True).scoring().autocast_dtype is None


def test_git_commit_outside_a_checkout_falls_back_to_the_environment(monkeypatch):
    def no_git(*args, **kwargs):
        raise FileNotFoundError("git")
    monkeypatch.setattr(train_mod.subprocess, "run", no_git)
    monkeypatch.delenv("GIT_COMMIT", raising=False)
    assert train_mod.git_commit() == "unknown"
    monkeypatch.setenv("GIT_COMMIT", "abc1234")
    assert train_mod.git_commit() == "abc1234"


@pytest.mark.parametrize("diff_rc, expected", [(0, "abc1234"), (1, "abc1234-dirty")])
def test_git_commit_says_when_the_package_differs_from_head(monkeypatch, diff_rc, expected):
    calls = []

    def fake_git(args, **kwargs):
        calls.append(args)
        return SimpleNamespace(stdout="abc1234\n", returncode=diff_rc)

    monkeypatch.setattr(train_mod.subprocess, "run", fake_git)
    assert train_mod.git_commit() == expected
    # The diff is limited to cifar/, the code that trains.
    assert calls[1][:4] == ["git", "diff", "--quiet", "HEAD"] and calls[1][-1] == "."


def test_tiny_training_learns(reference_run):
    # The synthetic classes are colours: 12 steps get well above chance (10%). A loop that did not
    # learn (labels shuffled against images, no optimiser step) would stay near 10%.
    meta = read_metadata(reference_run / "cnn.safetensors")
    assert meta["test_acc"] > 0.4 and meta["val_acc"] > 0.4


def test_progressive_resizing_trains_small_then_full_size(cifar_root, tmp_path, monkeypatch):
    seen = []
    real = torch.nn.functional.interpolate

    def spy(x, *args, **kwargs):
        seen.append(tuple(kwargs.get("size") or args[0]))
        return real(x, *args, **kwargs)

    monkeypatch.setattr(torch.nn.functional, "interpolate", spy)
    cfg = make_config("resnet18", "cpu", epochs=3, train_sizes="16:1,24:1", batch_size=16, limit_train=32,
                      val_size=16, ema_decay=0.0)
    meta = fit(cfg, make_splits(load_cifar10(cifar_root), cfg.val_size, cfg.split_seed, cfg.limit_train), tmp_path,
               progress=False, log=_quiet)
    assert [h["train_size"] for h in meta["history"]] == [16, 24, 32]
    assert set(seen) == {(16, 16), (24, 24)} and len(seen) == 4  # 2 steps at each small size, none at 32
    assert meta["config"]["train_sizes"] == "16:1,24:1"


@pytest.mark.parametrize("spec, message", [("16-2", "SIZE:EPOCHS"), ("40:1", "8..32"), ("16:0", "at least 1 epoch")])
def test_bad_train_sizes_fail_before_training(spec, message):
    with pytest.raises(ValueError, match=message):
        make_config("resnet18", "cpu", train_sizes=spec)


@pytest.mark.parametrize("field, value", [("epochs", 0), ("batch_size", 0), ("eval_batch_size", -1), ("lr", 0.0)])
def test_impossible_settings_fail_before_training(field, value):
    with pytest.raises(ValueError, match=f"--{field.replace('_', '-')} must be"):
        make_config("cnn", "paper", **{field: value})


def test_train_accuracy_counts_the_images_seen_when_fewer_than_a_batch():
    # 8 images, batch 16: one short step. A model that always says class 0, on images of class 0.
    model = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(3 * 32 * 32, 10))
    with torch.no_grad():
        model[1].weight.zero_()
        model[1].bias.copy_(torch.tensor([10.0] + [0.0] * 9))
    x, y = torch.randint(0, 256, (8, 3, 32, 32), dtype=torch.uint8), torch.zeros(8, dtype=torch.long)
    splits = SimpleNamespace(train_x=x, train_y=y)
    cfg = make_config("cnn", "paper", batch_size=16, lr=1e-9)
    opt = torch.optim.SGD(model.parameters(), lr=cfg.lr)
    rt = Runtime.decide("cpu", "fp32")
    _, acc = train_mod.train_one_epoch(model, opt, None, cfg, splits, rt, torch.Generator().manual_seed(0), None, 1,
                                       progress=False)
    assert acc == 1.0


def test_fp16_gets_a_loss_scaler_that_the_step_uses():
    cpu = torch.device("cpu")
    assert isinstance(Runtime(cpu, torch.float16, False).grad_scaler(), torch.amp.GradScaler)
    assert Runtime(cpu, torch.bfloat16, True).grad_scaler() is None and Runtime.decide("cpu", "fp32").grad_scaler() is None

    # The scaled step through the project's (fused) optimiser: the scale is a power of two, so the
    # unscaled update equals the plain one exactly, and both move the weights.
    cfg = make_config("cnn", "fast", batch_size=8)
    x, y = torch.randint(0, 256, (16, 3, 32, 32), dtype=torch.uint8), torch.randint(0, 10, (16,))
    rt = Runtime.decide("cpu", "fp32")
    weights = []
    for scaler in (None, torch.amp.GradScaler("cpu")):
        torch.manual_seed(0)
        model = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(3 * 32 * 32, 10))
        start = model[1].weight.detach().clone()
        train_mod.train_one_epoch(model, train_mod.make_optimizer(cfg, model), None, cfg,
                                  SimpleNamespace(train_x=x, train_y=y), rt, torch.Generator().manual_seed(0), None, 1,
                                  progress=False, scaler=scaler)
        assert not torch.equal(model[1].weight, start)
        weights.append(model[1].weight.detach())
    assert torch.allclose(weights[0], weights[1], rtol=0, atol=1e-7)


def test_the_cnn_refuses_progressive_resizing():
    with pytest.raises(ValueError, match="32px only"):
        make_config("cnn", "paper", train_sizes="16:2")
