"""cifar_app.training: history, size phases, recipe text and the tuning grid."""

from __future__ import annotations

import json

import pytest

from cifar_app import formats, training


def test_recipe_text_and_durations():
    from cifar.config import make_config

    text = training.recipe_text(make_config("resnet18", "fast").to_dict())
    assert text.startswith("SGD (momentum 0.9, Nesterov, wd 0.0005), lr 0.2, batch 256, OneCycleLR")
    assert "label smoothing 0.1" in text and "EMA 0.999" in text and "resizing" not in text
    cpu = training.recipe_text(make_config("resnet18", "cpu").to_dict())
    assert cpu.endswith("8 epochs, progressive resizing 16:5,24:2 (size:epochs, then 32px)")
    assert formats.duration(48.4) == "48 s"
    assert formats.duration(725) == "12 min 05 s"
    assert formats.duration(None) == "—"


# ------------------------------------------------------------------------------ history and tuning


HISTORY = [dict(epoch=e, train_loss=2.0 / e, train_acc=0.3 * e, val_loss=2.1 / e, val_acc=0.28 * e, lr=0.1 / e,
                seconds=3.0) for e in (1, 2, 3)]

def test_size_phases():
    sized = [dict(h, train_size=s) for h, s in zip(HISTORY + [dict(HISTORY[0], epoch=4)], (16, 16, 24, 32))]
    assert training.size_phases(sized) == [{"size": 16, "first": 1, "last": 2}, {"size": 24, "first": 3, "last": 3},
                                          {"size": 32, "first": 4, "last": 4}]
    assert training.size_phases_text(sized).startswith("Progressive resizing: epochs 1–2 on 16px, 3 on 24px, 4 on 32px images.")
    # Histories from before --train-sizes have no train_size: all 32px, nothing to say.
    assert training.size_phases(HISTORY) == [{"size": 32, "first": 1, "last": 3}]
    assert training.size_phases_text(HISTORY) == ""

def test_history_long_and_summary():
    rows = training.history_long(HISTORY)
    assert len(rows) == 12
    assert {"epoch": 2, "split": "val", "metric": "accuracy", "value": 0.56} in rows
    assert training.lr_records(HISTORY)[2] == {"epoch": 3, "lr": pytest.approx(0.1 / 3)}
    h = training.history_summary({"history": HISTORY, "best_epoch": 2, "epochs_run": 3})
    assert h["best_val_acc"] == 0.56 and h["gap"] == pytest.approx(0.6 - 0.56)

def test_history_long_skips_non_finite_values():
    rows = training.history_long([dict(epoch=1, train_loss=float("nan"), train_acc=0.1, val_loss=1.0, val_acc=0.1)])
    assert len(rows) == 3

def test_tune_grid_keeps_the_best_per_cell_and_counts_failures():
    rows = [
        {"lr": "0.001", "batch_size": "32", "best_val_acc": "0.80", "epochs_run": "5"},
        {"lr": "0.001", "batch_size": "32", "best_val_acc": "0.85", "epochs_run": "5"},  # another weight decay, same cell
        {"lr": "0.003", "batch_size": "64", "best_val_acc": "0.70", "epochs_run": "3"},
        {"lr": "0.1", "batch_size": "64", "best_val_acc": "", "epochs_run": ""},
    ]
    grid = training.tune_grid(rows)
    cells = {(c["lr"], c["batch_size"]): c for c in grid["cells"]}
    assert cells[(0.001, 32)]["best_val_acc"] == 0.85 and cells[(0.001, 32)]["trials"] == 2
    assert cells[(0.1, 64)]["best_val_acc"] is None and grid["n_failed"] == 1
    assert grid["best"]["lr"] == 0.001 and grid["n_trials"] == 4
    assert grid["epochs"] == [3, 5]  # the failed trial's empty count is left out

def test_tune_grid_epochs_come_from_the_config_cap_not_an_early_stop():
    config = json.dumps({"epochs": 30, "lr": 0.001})
    rows = [{"lr": "0.001", "batch_size": "32", "best_val_acc": "0.8", "epochs_run": "22", "config": config},
            {"lr": "0.003", "batch_size": "32", "best_val_acc": "0.7", "epochs_run": "nan", "config": "{}"}]
    assert training.tune_grid(rows)["epochs"] == [30]  # the nan row (hand-edited) is skipped, not an error
    assert training.tune_epochs_note([30], 30) == " within 30 epochs per trial."
    assert "a cap well short of the report's 30" in training.tune_epochs_note([5], 30)
    assert training.tune_epochs_note([], 30) == "."

def test_tune_grid_names_missing_columns():
    with pytest.raises(ValueError, match="best_val_acc"):
        training.tune_grid([{"lr": "0.1", "batch_size": "32"}])
