"""Each recipe's values, written out here rather than read back from cifar.config.

The `paper` recipe is the report's (shared/reference/seed-report.md, "Training" of each model): a
changed learning rate, batch size, schedule, epoch count or weight decay there must fail a test,
so the expected values are literals, not RECIPES compared with itself.
"""

from __future__ import annotations

import dataclasses

import pytest

from cifar.config import RECIPES, TrainConfig, make_config
from cifar.models import list_models

# Every field a recipe can decide, per (recipe, model). Fields absent here must keep TrainConfig's default.
EXPECTED = {
    # Report, CustomCNN: Adam, lr 0.001, batch 32, ReduceLROnPlateau(mode='max', factor=0.1, patience=3) on
    # val accuracy, 30 epochs, early stopping with patience 15, Dropout(0.4) after fc1, no weight decay.
    ("paper", "cnn"): dict(epochs=30, batch_size=32, optimizer="adam", lr=1e-3, weight_decay=0.0,
                           scheduler="plateau", plateau_factor=0.1, plateau_patience=3, dropout=0.4,
                           early_stopping=15, label_smoothing=0.0, ema_decay=0.0, train_sizes=""),
    # Report, ResNet18: SGD, momentum 0.9, weight decay 5e-4, lr 0.1, batch 128, CosineAnnealingLR over
    # 75 epochs, early stopping with patience 15; from scratch without dropout (plain fc).
    ("paper", "resnet18"): dict(epochs=75, batch_size=128, optimizer="sgd", lr=0.1, momentum=0.9, nesterov=False,
                                weight_decay=5e-4, scheduler="cosine", dropout=0.0, early_stopping=15,
                                label_smoothing=0.0, ema_decay=0.0, train_sizes=""),
    ("fast", "cnn"): dict(epochs=30, batch_size=128, optimizer="sgd", lr=0.05, momentum=0.9, nesterov=True,
                          weight_decay=5e-4, scheduler="onecycle", onecycle_pct_start=0.25, label_smoothing=0.1,
                          dropout=0.4, ema_decay=0.999, early_stopping=0, train_sizes=""),
    ("fast", "resnet18"): dict(epochs=30, batch_size=256, optimizer="sgd", lr=0.2, momentum=0.9, nesterov=True,
                               weight_decay=5e-4, scheduler="onecycle", onecycle_pct_start=0.25, label_smoothing=0.1,
                               dropout=0.0, ema_decay=0.999, early_stopping=0, train_sizes=""),
    ("cpu", "resnet18"): dict(epochs=8, batch_size=256, optimizer="sgd", lr=0.2, momentum=0.9, nesterov=True,
                              weight_decay=5e-4, scheduler="onecycle", onecycle_pct_start=0.25, label_smoothing=0.1,
                              dropout=0.0, ema_decay=0.99, early_stopping=0, train_sizes="16:5,24:2"),
}
# What no recipe changes: every run splits 45k/5k with seed 42 and seeds its training with 42.
COMMON = dict(seed=42, split_seed=42, val_size=5000, limit_train=0, eval_batch_size=500, precision="auto",
              device="auto")


def test_every_recipe_and_model_is_pinned():
    assert {(r, m) for r, models in RECIPES.items() for m in models} == set(EXPECTED)
    assert {m for _, m in EXPECTED} == set(list_models())


@pytest.mark.parametrize("recipe, model", sorted(EXPECTED))
def test_recipe_values(recipe, model):
    cfg = make_config(model, recipe)
    got = {k: getattr(cfg, k) for k in {**EXPECTED[recipe, model], **COMMON}}
    assert got == {**EXPECTED[recipe, model], **COMMON}
    assert (cfg.model, cfg.recipe) == (model, recipe)


def test_the_defaults_are_the_paper_cnn():
    # A bare TrainConfig() is the report's CustomCNN run, so an omitted recipe still means the report.
    cfg = TrainConfig()
    assert {k: getattr(cfg, k) for k in EXPECTED["paper", "cnn"]} == EXPECTED["paper", "cnn"]
    assert (cfg.model, cfg.recipe, cfg.momentum, cfg.nesterov) == ("cnn", "paper", 0.9, False)


def test_flags_override_the_recipe_and_only_what_they_name():
    cfg = make_config("resnet18", "paper", lr=0.05, epochs=3)
    assert (cfg.lr, cfg.epochs) == (0.05, 3)
    rest = {k: v for k, v in EXPECTED["paper", "resnet18"].items() if k not in ("lr", "epochs")}
    assert {k: getattr(cfg, k) for k in rest} == rest
    assert dataclasses.replace(make_config("resnet18", "paper"), lr=0.05, epochs=3) == cfg
