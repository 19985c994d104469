"""What the training loop decides, pinned so that a plausible bug fails a test, not only a crash.

The best epoch and its ties, early stopping, ReduceLROnPlateau's direction and its lr drops, the
optimiser and loss settings reaching torch, EMA weights being what is scored and shipped,
--split-seed reaching the split, and resume.pt written atomically.

Where the loop's decision depends on validation accuracy, the accuracies are scripted: the real
loop trains and really evaluates each epoch (`scripted_fit` wraps cifar.train.evaluate_split and
records the weights it was given), then reports the accuracy the test chose. So a tie, a plateau or
a late improvement happens exactly when the test needs it, on the tiny synthetic set.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F

import cifar.train as train_mod
from cifar.checkpoints import FORMAT, RESUME_FILE, load_model, load_state, save_state
from cifar.config import make_config
from cifar.data import load_cifar10, make_splits
from cifar.evaluate import load_evaluation
from cifar.runtime import Runtime
from conftest import tiny_args
from devkit.fake_cifar import VAL_SIZE


def tiny(**overrides):
    """A CPU fp32 CustomCNN run tinier than conftest's: one step of 16 images per epoch, 16 val images."""
    base = dict(device="cpu", precision="fp32", val_size=16, limit_train=16, batch_size=16,
                eval_batch_size=100, early_stopping=0)
    return make_config("cnn", "paper", **{**base, **overrides})


@pytest.fixture(scope="module")
def splits(cifar_root):
    cfg = tiny()
    return make_splits(load_cifar10(cifar_root), cfg.val_size, cfg.split_seed, cfg.limit_train)


def scripted_fit(monkeypatch, cfg, splits, run_dir, accs, losses=None):
    """fit() with epoch e's val accuracy (and loss, if given) set to accs[e-1]
    → (metadata, weights scored each epoch, log lines)."""
    real = train_mod.evaluate_split
    scored: list[dict[str, torch.Tensor]] = []

    def evaluate_split(model, x, y, rt, batch_size):
        loss, _ = real(model, x, y, rt, batch_size)
        epoch = len(scored)
        scored.append({k: v.detach().clone() for k, v in model.state_dict().items()})
        return (losses[epoch] if losses else loss), accs[epoch]

    monkeypatch.setattr(train_mod, "evaluate_split", evaluate_split)
    lines: list[str] = []
    meta = train_mod.fit(cfg, splits, run_dir, progress=False, log=lines.append)
    return meta, scored, lines


def shipped(run_dir) -> dict[str, torch.Tensor]:
    model, _ = load_model(run_dir / "cnn.safetensors")
    return model.state_dict()


def same_weights(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> bool:
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


# ---------------------------------------------------------------------------------------------
# The best epoch


def test_the_best_epoch_is_shipped_and_a_tie_goes_to_the_earliest(monkeypatch, splits, tmp_path):
    # Epochs 2 and 3 tie at the top; the last epoch (4) is worse. The earliest best, epoch 2, ships.
    cfg = tiny(epochs=4)
    meta, scored, _ = scripted_fit(monkeypatch, cfg, splits, tmp_path, [0.3, 0.5, 0.5, 0.4])
    assert meta["best_epoch"] == 2 and meta["val_acc"] == 0.5 and meta["epochs_run"] == 4
    assert meta["train_acc"] == meta["history"][1]["train_acc"]
    assert not same_weights(scored[1], scored[2]) and not same_weights(scored[1], scored[3])  # the epochs differ
    assert same_weights(shipped(tmp_path), scored[1])
    # The test-set predictions saved beside it are epoch 2's too.
    model, _ = load_model(tmp_path / "cnn.safetensors")
    expected = train_mod.predict_logits(model, splits.test_x, Runtime.decide("cpu", "fp32"), 100).argmax(1).numpy()
    np.testing.assert_array_equal(load_evaluation(tmp_path / "cnn.safetensors")["preds"], expected)


# ---------------------------------------------------------------------------------------------
# Early stopping


@pytest.mark.parametrize("patience, accs, epochs_run, best", [
    (2, [0.5, 0.4, 0.4, 0.9, 0.9, 0.9], 3, 1),  # two epochs without a better one after epoch 1: stop after 3
    (2, [0.5, 0.4, 0.6, 0.5, 0.5, 0.9], 5, 3),  # epoch 3 improves, which restarts the count
    (0, [0.5, 0.4, 0.4, 0.4, 0.4, 0.4], 6, 1),  # 0 = never stop early
])
def test_early_stopping_after_n_epochs_without_improvement(monkeypatch, splits, tmp_path, patience, accs, epochs_run,
                                                           best):
    cfg = tiny(epochs=6, early_stopping=patience, scheduler="none")
    meta, _, lines = scripted_fit(monkeypatch, cfg, splits, tmp_path, accs)
    assert meta["epochs_run"] == epochs_run and len(meta["history"]) == epochs_run
    assert meta["best_epoch"] == best
    stopped = [line for line in lines if line.startswith("early stopping")]
    assert stopped == ([f"early stopping: no better val accuracy for {patience} epochs"] if epochs_run < 6 else [])


# ---------------------------------------------------------------------------------------------
# ReduceLROnPlateau


@pytest.mark.parametrize("accs, losses, lrs", [
    # Flat accuracy: the third epoch without a gain beyond patience 1 halves the lr, and again two later.
    ([0.5] * 6, None, [1e-3, 1e-3, 1e-3, 5e-4, 5e-4, 2.5e-4]),
    # Rising accuracy is progress in mode "max" (with a falling loss beside it): the lr never drops.
    ([0.1, 0.2, 0.3, 0.4, 0.5, 0.6], [2.0, 1.9, 1.8, 1.7, 1.6, 1.5], [1e-3] * 6),
    # Falling accuracy, even while the loss also falls, is a plateau: the accuracy decides, not the loss.
    ([0.6, 0.5, 0.4, 0.3, 0.2, 0.1], [2.0, 1.9, 1.8, 1.7, 1.6, 1.5], [1e-3, 1e-3, 1e-3, 5e-4, 5e-4, 2.5e-4]),
])
def test_plateau_schedule_follows_val_accuracy(monkeypatch, splits, tmp_path, accs, losses, lrs):
    cfg = tiny(epochs=6, scheduler="plateau", plateau_factor=0.5, plateau_patience=1, lr=1e-3)
    meta, _, _ = scripted_fit(monkeypatch, cfg, splits, tmp_path, accs, losses)
    # history's lr is the optimiser's param_groups lr at the start of each epoch: what torch really used.
    assert [h["lr"] for h in meta["history"]] == pytest.approx(lrs, rel=1e-12)  # x0.5 is exact in binary


def test_the_paper_recipe_schedules_on_plateau_in_max_mode():
    cfg = make_config("cnn", "paper")
    opt = train_mod.make_optimizer(cfg, torch.nn.Linear(2, 2))
    sched = train_mod.make_scheduler(cfg, opt, 10)
    assert isinstance(sched, torch.optim.lr_scheduler.ReduceLROnPlateau)
    assert (sched.mode, sched.factor, sched.patience) == ("max", 0.1, 3)


# ---------------------------------------------------------------------------------------------
# Optimiser and loss settings reach torch


def sgd_by_hand(w: float, grad: float, lr: float, momentum: float, nesterov: bool, wd: float, steps: int) -> list[float]:
    """torch.optim.SGD's documented update, written out: weight decay, then momentum, then Nesterov."""
    out, buf = [], None
    for _ in range(steps):
        d = grad + wd * w
        buf = d if buf is None else momentum * buf + d
        w -= lr * (d + momentum * buf if nesterov else buf)
        out.append(w)
    return out


@pytest.mark.parametrize("momentum, nesterov, wd", [(0.9, True, 0.01), (0.9, False, 0.0), (0.5, False, 0.1),
                                                    (0.0, False, 0.0)])
def test_sgd_gets_the_configs_momentum_nesterov_and_weight_decay(momentum, nesterov, wd):
    cfg = make_config("resnet18", "fast", lr=0.1, momentum=momentum, nesterov=nesterov, weight_decay=wd)
    w = torch.nn.Parameter(torch.tensor([1.0]))
    opt = train_mod.make_optimizer(cfg, torch.nn.ParameterList([w]))
    seen = []
    for _ in range(4):
        w.grad = torch.tensor([0.5])
        opt.step()
        seen.append(w.item())
    assert seen == pytest.approx(sgd_by_hand(1.0, 0.5, 0.1, momentum, nesterov, wd, 4), rel=1e-6)  # float32 steps


@pytest.mark.parametrize("wd", [0.0, 0.01])
def test_adam_gets_the_configs_lr_and_weight_decay(wd):
    # A weight with zero gradient moves only through (coupled) weight decay; Adam's first step is lr·sign(d).
    cfg = make_config("cnn", "paper", lr=0.01, weight_decay=wd)
    w = torch.nn.Parameter(torch.tensor([1.0, 1.0]))
    opt = train_mod.make_optimizer(cfg, torch.nn.ParameterList([w]))
    w.grad = torch.tensor([0.0, 1.0])
    opt.step()
    d = np.array([0.0, 1.0]) + wd * 1.0
    expected = 1.0 - 0.01 * d / (np.abs(d) + 1e-8)
    assert w.detach().numpy() == pytest.approx(expected, rel=1e-6)


@pytest.mark.parametrize("smoothing", [0.0, 0.1, 0.3])
def test_the_training_loss_uses_the_configs_label_smoothing(smoothing):
    # A model whose logits are its bias (zero weights): the loss of any batch is known in closed form.
    model = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(3 * 32 * 32, 10))
    with torch.no_grad():
        model[1].weight.zero_()
        model[1].bias.copy_(torch.arange(10.0))
    x, y = torch.randint(0, 256, (16, 3, 32, 32), dtype=torch.uint8), torch.full((16,), 3)
    cfg = make_config("cnn", "paper", batch_size=16, label_smoothing=smoothing)
    opt = torch.optim.SGD(model.parameters(), lr=1e-3)
    loss, _ = train_mod.train_one_epoch(model, opt, None, cfg, type("S", (), {"train_x": x, "train_y": y}),
                                        Runtime.decide("cpu", "fp32"), torch.Generator().manual_seed(0), None, 1,
                                        progress=False)
    expected = F.cross_entropy(torch.arange(10.0)[None], torch.tensor([3]), label_smoothing=smoothing).item()
    assert loss == pytest.approx(expected, rel=1e-6)


# ---------------------------------------------------------------------------------------------
# EMA


def test_ema_weights_are_what_is_scored_and_shipped(monkeypatch, splits, tmp_path):
    decay = 0.5
    cfg = tiny(epochs=3, ema_decay=decay, scheduler="none")
    trained: list[torch.nn.Module] = []  # the model the optimiser steps
    ema: list[torch.Tensor] = []  # an EMA of its parameters after every step, kept by hand beside the loop
    at_epoch_end: list[tuple[list[torch.Tensor], list[torch.Tensor], list[torch.Tensor]]] = []  # (scored, ema, raw)
    real_make, real_eval = train_mod.make_optimizer, train_mod.evaluate_split

    def make_optimizer(cfg, model):
        trained.append(model)
        opt = real_make(cfg, model)

        def after_step(opt, *_):
            params = [p.detach() for p in model.parameters()]
            if not ema:  # AveragedModel's first update copies the weights
                ema.extend(p.clone() for p in params)
            else:
                for e, p in zip(ema, params):
                    e.mul_(decay).add_(p, alpha=1 - decay)

        opt.register_step_post_hook(after_step)
        return opt

    def evaluate_split(model, x, y, rt, batch_size):
        at_epoch_end.append(([p.detach().clone() for p in model.parameters()], [e.clone() for e in ema],
                             [p.detach().clone() for p in trained[0].parameters()]))
        return real_eval(model, x, y, rt, batch_size)[0], [0.3, 0.6, 0.4][len(at_epoch_end) - 1]

    monkeypatch.setattr(train_mod, "make_optimizer", make_optimizer)
    monkeypatch.setattr(train_mod, "evaluate_split", evaluate_split)
    meta = train_mod.fit(cfg, splits, tmp_path, progress=False, log=lambda _: None)

    assert meta["best_epoch"] == 2 and len(at_epoch_end) == 3
    # Each epoch scores the EMA, not the trained weights, which differ from it after the first step.
    for epoch, (scored, ema_w, raw) in enumerate(at_epoch_end, 1):
        for s, e in zip(scored, ema_w):
            # atol: torch's EMA is a lerp, the hand-kept one a multiply-add; they round differently.
            torch.testing.assert_close(s, e, rtol=0, atol=1e-6, msg=f"epoch {epoch}")
        if epoch > 1:
            assert any(not torch.allclose(e, r, atol=1e-4) for e, r in zip(ema_w, raw)), "EMA equals the raw weights"
    # ...and the best epoch's EMA weights are what ships.
    model, _ = load_model(tmp_path / "cnn.safetensors")
    for p, e in zip(model.parameters(), at_epoch_end[1][1]):
        torch.testing.assert_close(p.detach(), e, rtol=0, atol=1e-6)


# ---------------------------------------------------------------------------------------------
# --split-seed


def test_make_splits_depends_on_the_split_seed(fake_data):
    a, b, a2 = (make_splits(fake_data, VAL_SIZE, seed) for seed in (1, 2, 1))
    assert torch.equal(a.val_x, a2.val_x) and torch.equal(a.val_y, a2.val_y)
    assert not torch.equal(a.val_x, b.val_x)
    for s in (a, b):  # each is a partition of the official training set
        assert len(s.train_y) + len(s.val_y) == len(fake_data.train_labels) and len(s.val_y) == VAL_SIZE
        assert sorted(s.train_y.tolist() + s.val_y.tolist()) == sorted(fake_data.train_labels.tolist())


def test_the_cli_split_seed_reaches_the_split(monkeypatch, cifar_root, fake_data, tmp_path):
    used = []
    real = train_mod.make_splits

    def make_splits_spy(*args, **kwargs):
        used.append(real(*args, **kwargs))
        return used[-1]

    monkeypatch.setattr(train_mod, "make_splits", make_splits_spy)
    assert train_mod.main(tiny_args(cifar_root, tmp_path / "run", "--split-seed", "7", "--epochs", "1")) == 0
    (got,) = used
    want, default = make_splits(fake_data, VAL_SIZE, 7, 64), make_splits(fake_data, VAL_SIZE, 42, 64)
    assert torch.equal(got.val_x, want.val_x) and torch.equal(got.train_x, want.train_x)
    assert not torch.equal(got.val_x, default.val_x)
    meta = load_model(tmp_path / "run" / "cnn.safetensors")[1]
    assert meta["data"]["split_seed"] == 7 and meta["config"]["split_seed"] == 7
    assert meta["config"]["seed"] == 42  # the training seed stays its own


# ---------------------------------------------------------------------------------------------
# resume.pt is written atomically


class _FailsToPickle:
    """An object whose serialisation fails halfway through a torch.save, like a full disk or a kill."""

    def __reduce__(self):
        raise OSError("no space left on device")


def test_a_failed_save_state_leaves_the_previous_state_intact(tmp_path):
    path = tmp_path / RESUME_FILE
    save_state({"format": FORMAT, "epoch": 1, "weights": torch.ones(1000)}, path)
    before = path.read_bytes()
    with pytest.raises(OSError, match="no space"):
        save_state({"format": FORMAT, "epoch": 2, "weights": torch.zeros(100_000), "x": _FailsToPickle()}, path)
    assert path.read_bytes() == before  # a plain torch.save(path) would have truncated it
    assert load_state(path)["epoch"] == 1
    assert [p.name for p in tmp_path.iterdir()] == [RESUME_FILE]  # the temporary file is gone too


def test_save_state_replaces_the_file_in_one_step(tmp_path, monkeypatch):
    # The new state is complete on disk before it takes the old one's name: the one write to the final
    # path is the rename.
    path = tmp_path / RESUME_FILE
    save_state({"format": FORMAT, "epoch": 1}, path)
    renames = []
    real_replace = train_mod.os.replace

    def replace(src, dst):
        renames.append((src, dst))
        assert load_state(src)["epoch"] == 2 and load_state(dst)["epoch"] == 1
        return real_replace(src, dst)

    monkeypatch.setattr("cifar.checkpoints.os.replace", replace)
    save_state({"format": FORMAT, "epoch": 2}, path)
    assert len(renames) == 1 and str(renames[0][1]) == str(path)
    assert load_state(path)["epoch"] == 2


# ---------------------------------------------------------------------------------------------
# The CLI's own decisions: where a run goes, --download, and a second run into the same folder


def test_the_cli_downloads_trains_into_runs_model_recipe_and_refuses_to_start_over(monkeypatch, tmp_path, capsys):
    import torchvision.datasets.utils as tv_utils

    from devkit.fake_cifar import write_fake_cifar10

    fetched = []

    def fake_download(url, download_root, md5=None, **kwargs):  # the network, stood in for
        fetched.append(download_root)
        write_fake_cifar10(download_root)

    monkeypatch.setattr(tv_utils, "download_and_extract_archive", fake_download)
    monkeypatch.chdir(tmp_path)
    flags = ["--data-dir", "data", "--download", "--device", "cpu", "--precision", "fp32", "--val-size", "16",
             "--limit-train", "16", "--batch-size", "16", "--eval-batch-size", "100", "--epochs", "1", "--quiet"]
    assert train_mod.main(flags) == 0
    assert fetched == ["data"]
    run = tmp_path / "runs" / "cnn-paper"  # no --out-dir: runs/<model>-<recipe>
    assert (run / "cnn.safetensors").is_file() and (run / RESUME_FILE).is_file()
    capsys.readouterr()
    # The same command again would overwrite a run: refused, naming the file and both ways out.
    before = (run / RESUME_FILE).read_bytes()
    assert train_mod.main(flags) == 2
    err = capsys.readouterr().err
    assert f"error: {Path('runs') / 'cnn-paper' / RESUME_FILE} exists from an earlier run: add --resume" in err
    assert "another --out-dir" in err and (run / RESUME_FILE).read_bytes() == before
