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


# ------------------------------------------------------------------------------------- the config itself


def test_make_config_defaults_to_the_paper_cnn():
    assert make_config() == make_config("cnn", "paper") == TrainConfig()


def test_unknown_recipe_model_or_field_is_refused():
    with pytest.raises(ValueError, match=r"unknown recipe 'slow'; valid: paper, fast, cpu"):
        make_config("cnn", "slow")
    with pytest.raises(ValueError, match=r"unknown model 'vgg'; valid: cnn, resnet18$"):
        make_config("vgg", "paper")
    with pytest.raises(ValueError, match=r"unknown model 'cnn'; valid: resnet18"):
        make_config("cnn", "cpu")  # the cpu recipe exists for ResNet18 only
    with pytest.raises(ValueError, match=r"unknown config fields: lr_max, warmup"):
        make_config("cnn", "paper", warmup=1, lr_max=0.1)


def parse(*flags: str, skip: tuple[str, ...] = ()):
    import argparse

    from cifar.config import add_config_arguments, config_from_args

    parser = argparse.ArgumentParser()
    add_config_arguments(parser, skip=skip)
    return parser, config_from_args(parser.parse_args(list(flags)))


def test_flags_parse_into_the_config_over_the_recipe():
    _, cfg = parse("--model", "resnet18", "--recipe", "fast", "--lr", "0.01", "--epochs", "3", "--no-nesterov",
                   "--train-sizes", "16:1", "--label-smoothing", "0")
    assert (cfg.model, cfg.recipe, cfg.lr, cfg.epochs, cfg.nesterov, cfg.train_sizes) == ("resnet18", "fast", 0.01, 3,
                                                                                           False, "16:1")
    assert cfg.label_smoothing == 0.0  # a flag set to a falsy value still overrides the recipe's 0.1
    assert cfg.batch_size == 256 and cfg.ema_decay == 0.999  # the rest is the recipe's
    _, plain = parse()
    assert plain == make_config("cnn", "paper")
    _, on = parse("--model", "resnet18", "--nesterov")
    assert on.nesterov is True and isinstance(on.lr, float) and isinstance(on.epochs, int)


def test_flags_take_only_valid_choices_and_skipped_fields_are_absent(capsys):
    with pytest.raises(SystemExit):
        parse("--optimizer", "rmsprop")
    assert "invalid choice: 'rmsprop'" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        parse("--device", "cpu", skip=("device",))
    _, cfg = parse("--lr", "0.5", "--no-nesterov", skip=("epochs",))  # fields after a skipped one remain
    assert (cfg.lr, cfg.nesterov, cfg.epochs) == (0.5, False, 30)
    parser, _ = parse()
    helps = {a.dest: a.help for a in parser._actions}
    assert helps["nesterov"] == "Nesterov momentum for SGD (default: False; recipes may change it)"
    assert helps["lr"] == "learning rate (the peak for onecycle) (default: 0.001; recipes may change it)"
    assert helps["split_seed"] == "seed of the 45k/5k train/val split (default: 42; recipes may change it)"


@pytest.mark.parametrize("spec, sizes", [
    ("", [32, 32, 32, 32]),
    ("16:2,24:1", [16, 16, 24, 32]),
    (" 8:1 , 32:1 ,", [8, 32, 32, 32]),  # spaces and a trailing comma are fine; 8 and 32 are the bounds
])
def test_train_sizes_per_epoch(spec, sizes):
    cfg = make_config("resnet18", "paper", train_sizes=spec)
    assert [cfg.train_size(epoch) for epoch in range(1, 5)] == sizes


@pytest.mark.parametrize("spec", ["7:1", "33:1", "16:0", "16", "a:b", "16:1:2"])
def test_bad_train_sizes_are_refused(spec):
    with pytest.raises(ValueError, match="--train-sizes"):
        make_config("resnet18", "paper", train_sizes=spec)


def test_the_cnn_may_name_its_one_size_only():
    assert make_config("cnn", "paper", train_sizes="32:2").train_size(1) == 32
    with pytest.raises(ValueError, match=r"^--train-sizes: CustomCNN trains at 32px only \(its fc1 takes exactly "
                                         r"256x4x4 features\)$"):
        make_config("cnn", "paper", train_sizes="16:1")


@pytest.mark.parametrize("field, value", [("epochs", 0), ("batch_size", 0), ("eval_batch_size", 0), ("lr", 0.0),
                                          ("lr", -0.1), ("lr", float("nan"))])
def test_impossible_values_are_refused(field, value):
    with pytest.raises(ValueError, match=f"--{field.replace('_', '-')} must be"):
        make_config("cnn", "paper", **{field: value})


def test_the_smallest_possible_values_are_accepted():
    cfg = make_config("cnn", "paper", epochs=1, batch_size=1, eval_batch_size=1, lr=1e-12)
    assert (cfg.epochs, cfg.batch_size, cfg.eval_batch_size) == (1, 1, 1)


def test_config_round_trips_through_a_dict_and_builds_the_model_with_its_dropout():
    cfg = make_config("resnet18", "cpu", dropout=0.25)
    assert TrainConfig.from_dict({**cfg.to_dict(), "field_of_a_newer_version": 1}) == cfg
    assert cfg.to_dict()["train_sizes"] == "16:5,24:2"
    assert cfg.builder_kwargs() == {"dropout": 0.25}
