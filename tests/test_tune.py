"""cifar.tune: the pure grid helpers, and tiny grids end to end on synthetic data (conftest's cifar_root)."""

import csv
import json
from pathlib import Path

import pytest

from cifar import tune
from cifar.config import make_config
from cifar.train import TrainingError

# Tiny and deterministic: 64 training images, one epoch, CPU fp32.
TINY = ["--model", "cnn", "--epochs", "1", "--val-size", "80", "--limit-train", "64", "--eval-batch-size", "100",
        "--device", "cpu", "--precision", "fp32", "--quiet"]


def rows_of(path):
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def test_parse_set_types_values_by_field():
    axes = tune.parse_set(["weight-decay=0,5e-4", "nesterov=true,no", "optimizer=sgd", "plateau_patience=2,4"])
    assert axes == {"weight_decay": [0.0, 5e-4], "nesterov": [True, False], "optimizer": ["sgd"],
                    "plateau_patience": [2, 4]}
    assert isinstance(axes["plateau_patience"][0], int)


@pytest.mark.parametrize("spec, message", [
    ("momentun=0.9", "unknown config field 'momentun'"),
    ("batch_size=32,abc", "'abc' is not a valid int"),
    ("lr=fast", "'fast' is not a valid float"),
    ("nesterov=maybe", "'maybe' is not a valid bool"),
    ("optimizer=adamw", "'adamw' is not one of adam, sgd"),
    ("lr", "expected FIELD=V1,V2"),
    ("lr=", "expected FIELD=V1,V2"),
])
def test_parse_set_rejects_bad_specs(spec, message):
    with pytest.raises(ValueError, match=message):
        tune.parse_set([spec])


def test_parse_set_rejects_a_field_given_twice():
    with pytest.raises(ValueError, match="given twice"):
        tune.parse_set(["lr=0.1", "lr=0.2"])


def test_expand_grid_is_the_product_first_axis_slowest():
    grid = tune.expand_grid({"lr": [0.001, 0.003], "batch_size": [32, 64, 128]})
    assert len(grid) == 6
    assert grid[0] == {"lr": 0.001, "batch_size": 32}
    assert grid[1] == {"lr": 0.001, "batch_size": 64}
    assert grid[-1] == {"lr": 0.003, "batch_size": 128}
    assert tune.expand_grid({}) == [{}]


def test_trial_config_layers_recipe_flags_and_trial():
    cfg = tune.trial_config({"model": "resnet18", "recipe": "fast", "epochs": 3}, {"lr": 0.05})
    assert (cfg.model, cfg.recipe, cfg.epochs, cfg.lr) == ("resnet18", "fast", 3, 0.05)
    assert cfg.batch_size == make_config("resnet18", "fast").batch_size  # untouched fields keep the preset


def test_best_row_by_val_acc_skips_failed_rows_first_on_ties():
    rows = [{"lr": "a", "best_val_acc": "0.5"}, {"lr": "b", "best_val_acc": ""},
            {"lr": "c", "best_val_acc": "0.7"}, {"lr": "d", "best_val_acc": "0.7"}]
    assert tune.best_row(rows)["lr"] == "c"
    assert tune.best_row([{"best_val_acc": ""}]) is None
    assert tune.best_row([]) is None


def test_train_flags_rebuild_the_config():
    from cifar.config import config_from_args
    from cifar.train import build_parser

    cfg = make_config("cnn", "paper", lr=0.003, batch_size=64, nesterov=True, epochs=5)
    flags = tune.train_flags(cfg)
    assert "--nesterov" in flags and "--dropout" not in flags  # only what differs from the recipe
    assert config_from_args(build_parser().parse_args(flags)) == cfg


def fake_fit(calls, interrupt_at=None):
    """A stand-in for train.fit that records each trial's config and returns metadata like fit's."""
    def fit(cfg, splits, run_dir, **kw):
        calls.append(cfg)
        if len(calls) == interrupt_at:
            raise KeyboardInterrupt
        if cfg.lr > 1:
            raise TrainingError("loss became nan at epoch 1, step 1: training diverged.")
        # Lower lr scores better, so the best row is known; the split is the one the trial asked for.
        assert len(splits.val_y) == cfg.val_size
        return {"val_acc": 0.5 - cfg.lr, "best_epoch": 1, "epochs_run": cfg.epochs, "wall_time_s": 0.1,
                "test_acc": 0.4}
    return fit


def test_grid_end_to_end_with_the_real_loop(cifar_root, tmp_path, capsys):
    out = tmp_path / "tune"
    argv = [*TINY, "--lr", "0.001", "0.003", "--batch-size", "16", "--data-dir", str(cifar_root),
            "--out-dir", str(out)]
    assert tune.main(argv) == 0
    text = capsys.readouterr().out
    rows = rows_of(out / "tune.csv")
    assert list(rows[0]) == ["lr", "batch_size", *tune.RESULT_COLUMNS]
    assert [r["lr"] for r in rows] == ["0.001", "0.003"]
    for row in rows:
        assert 0 <= float(row["best_val_acc"]) <= 1 and 0 <= float(row["test_acc"]) <= 1
        assert row["best_epoch"] == "1" and row["epochs_run"] == "1" and float(row["seconds"]) > 0
        cfg = json.loads(row["config"])
        assert (cfg["lr"], cfg["batch_size"], cfg["epochs"], cfg["limit_train"]) == (float(row["lr"]), 16, 1, 64)
        run_dir = Path(row["run_dir"])
        assert run_dir.parent == out and (run_dir / "cnn.safetensors").is_file()
        assert "epoch   1/1" in (run_dir / "train.log").read_text()
    assert rows[0]["run_dir"] != rows[1]["run_dir"]
    assert "best of 2 trials by val acc" in text and str(out / "tune.csv") in text
    assert "reproduce: python -m cifar.train --model cnn --recipe paper" in text


def test_rerun_needs_resume_and_resume_skips_finished(cifar_root, tmp_path, monkeypatch, capsys):
    calls = []
    monkeypatch.setattr(tune, "fit", fake_fit(calls))
    out = tmp_path / "tune"
    argv = [*TINY, "--lr", "0.001", "0.003", "--set", "weight_decay=0,0.0005", "--data-dir", str(cifar_root),
            "--out-dir", str(out)]
    assert tune.main(argv) == 0
    rows = rows_of(out / "tune.csv")
    assert [(r["weight_decay"], r["lr"]) for r in rows] == [("0.0", "0.001"), ("0.0", "0.003"),
                                                           ("0.0005", "0.001"), ("0.0005", "0.003")]
    assert "best of 4 trials by val acc: weight_decay=0.0 lr=0.001:" in capsys.readouterr().out

    assert tune.main(argv) == 2
    assert "--resume" in capsys.readouterr().err
    assert tune.main([*argv, "--resume"]) == 0
    assert capsys.readouterr().out.count("skipped") == 4
    assert len(calls) == 4 and len(rows_of(out / "tune.csv")) == 4


def test_interrupted_grid_keeps_rows_and_resume_runs_the_rest(cifar_root, tmp_path, monkeypatch, capsys):
    out = tmp_path / "tune"
    argv = [*TINY, "--lr", "0.001", "0.002", "0.003", "--data-dir", str(cifar_root), "--out-dir", str(out)]
    calls = []
    monkeypatch.setattr(tune, "fit", fake_fit(calls, interrupt_at=2))
    assert tune.main(argv) == 130
    assert "--resume" in capsys.readouterr().err
    assert [r["lr"] for r in rows_of(out / "tune.csv")] == ["0.001"]

    calls.clear()
    monkeypatch.setattr(tune, "fit", fake_fit(calls))
    assert tune.main([*argv, "--resume"]) == 0
    assert sorted(c.lr for c in calls) == [0.002, 0.003]  # the interrupted trial is queued again, after 0.003
    assert [r["lr"] for r in rows_of(out / "tune.csv")] == ["0.001", "0.002", "0.003"]


def test_splits_follow_each_trials_val_size(cifar_root, tmp_path, monkeypatch):
    calls = []
    monkeypatch.setattr(tune, "fit", fake_fit(calls))
    argv = [*TINY, "--set", "val_size=40,80", "--data-dir", str(cifar_root), "--out-dir", str(tmp_path / "t")]
    argv.remove("--val-size"), argv.remove("80")
    assert tune.main(argv) == 0  # fake_fit checks the split size
    assert [c.val_size for c in calls] == [40, 80]


def test_diverged_trial_is_a_row_not_a_crash(cifar_root, tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(tune, "fit", fake_fit([]))
    out = tmp_path / "tune"
    assert tune.main([*TINY, "--lr", "0.001", "100", "--data-dir", str(cifar_root), "--out-dir", str(out)]) == 0
    rows = rows_of(out / "tune.csv")
    assert rows[1]["error"].startswith("loss became nan") and rows[1]["best_val_acc"] == ""
    text = capsys.readouterr().out
    assert "failed: loss became nan" in text and "by val acc: lr=0.001:" in text


@pytest.mark.parametrize("extra, message", [
    (["--set", "momentun=0.9"], "unknown config field"),
    (["--set", "batch_size=big"], "'big' is not a valid int"),
    (["--lr", "0.1", "--set", "lr=0.2"], "both given"),
    (["--weight-decay", "0", "--set", "weight_decay=0.1"], "both given"),
])
def test_bad_grid_is_a_clear_error(extra, message, tmp_path, capsys):
    assert tune.main([*TINY, *extra, "--data-dir", str(tmp_path), "--out-dir", str(tmp_path / "t")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and message in err and "Traceback" not in err


def test_missing_data_is_a_clear_error(tmp_path, capsys):
    assert tune.main([*TINY, "--lr", "0.001", "--data-dir", str(tmp_path / "nowhere"),
                      "--out-dir", str(tmp_path / "t")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: CIFAR-10 not found") and "Traceback" not in err
    assert not (tmp_path / "t" / "tune.csv").exists()
