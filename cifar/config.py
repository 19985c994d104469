"""One frozen config per run, and the recipes as presets of it.

The CLI flags are generated from the fields below (their `help` metadata is the flag's help), and
the config is saved inside every checkpoint, so a run can always be told and repeated.
"""

from __future__ import annotations

import argparse
import dataclasses
from dataclasses import dataclass, field, fields
from typing import Any, get_type_hints

from cifar.models import list_models
from cifar.runtime import DEVICES

# Each recipe maps model → the fields it sets. Everything not named keeps TrainConfig's defaults.
RECIPES: dict[str, dict[str, dict[str, Any]]] = {
    # The report, faithfully.
    "paper": {
        "cnn": dict(epochs=30, batch_size=32, optimizer="adam", lr=1e-3, scheduler="plateau",
                    plateau_factor=0.1, plateau_patience=3, dropout=0.4, early_stopping=15),
        "resnet18": dict(epochs=75, batch_size=128, optimizer="sgd", lr=0.1, momentum=0.9,
                         weight_decay=5e-4, scheduler="cosine", dropout=0.0, early_stopping=15),
    },
    # Time-to-accuracy on 2 CPU cores: bigger batches (the step is cheaper per image), one-cycle
    # so the run can be short, label smoothing and EMA to make the last epochs count.
    "fast": {
        "cnn": dict(epochs=30, batch_size=128, optimizer="sgd", lr=0.05, momentum=0.9, nesterov=True,
                    weight_decay=5e-4, scheduler="onecycle", label_smoothing=0.1, dropout=0.4,
                    ema_decay=0.999, early_stopping=0),
        "resnet18": dict(epochs=30, batch_size=256, optimizer="sgd", lr=0.2, momentum=0.9, nesterov=True,
                         weight_decay=5e-4, scheduler="onecycle", label_smoothing=0.1, dropout=0.0,
                         ema_decay=0.999, early_stopping=0),
    },
    # ResNet18 in about two hours on 2 CPU cores (no AVX-512), where one 32px epoch takes 30 min:
    # most epochs on downscaled images (16px is 3.3x cheaper per image), the last at full size so
    # the network ends tuned to 32px. EMA with a short horizon (~100 steps), so it averages only
    # the final, full-size weights and BN statistics.
    "cpu": {
        "resnet18": dict(epochs=8, batch_size=256, optimizer="sgd", lr=0.2, momentum=0.9, nesterov=True,
                         weight_decay=5e-4, scheduler="onecycle", onecycle_pct_start=0.25, label_smoothing=0.1,
                         dropout=0.0, ema_decay=0.99, early_stopping=0, train_sizes="16:5,24:2"),
    },
}


def _f(default: Any, help: str, choices: tuple | None = None) -> Any:
    return field(default=default, metadata={"help": help, "choices": choices})


@dataclass(frozen=True)
class TrainConfig:
    """Everything that decides a training run."""

    model: str = _f("cnn", "architecture", list_models())
    recipe: str = _f("paper", "preset of the fields below; any flag overrides it", tuple(RECIPES))
    epochs: int = _f(30, "maximum number of epochs")
    batch_size: int = _f(32, "images per optimiser step")
    optimizer: str = _f("adam", "optimiser", ("adam", "sgd"))
    lr: float = _f(1e-3, "learning rate (the peak for onecycle)")
    momentum: float = _f(0.9, "SGD momentum")
    nesterov: bool = _f(False, "Nesterov momentum for SGD")
    weight_decay: float = _f(0.0, "L2 weight decay (coupled, as in torch.optim)")
    scheduler: str = _f(
        "plateau", "lr schedule: plateau on val acc, cosine over all epochs, onecycle per step, or none",
        ("plateau", "cosine", "onecycle", "none"),
    )
    plateau_factor: float = _f(0.1, "ReduceLROnPlateau factor")
    plateau_patience: int = _f(3, "ReduceLROnPlateau patience, in epochs")
    onecycle_pct_start: float = _f(0.25, "fraction of onecycle steps spent warming up")
    label_smoothing: float = _f(0.0, "cross-entropy label smoothing")
    ema_decay: float = _f(0.0, "EMA of weights and BN buffers per step (0 = off); the EMA model is evaluated and saved")
    dropout: float = _f(0.4, "dropout before the last linear layer (CNN: after fc1; ResNet18: 0 = plain fc)")
    early_stopping: int = _f(15, "stop after this many epochs without a better val accuracy (0 = never)")
    seed: int = _f(42, "seed for initial weights, shuffling, augmentation and dropout")
    split_seed: int = _f(42, "seed of the 45k/5k train/val split")
    val_size: int = _f(5000, "validation images taken from the official training set")
    limit_train: int = _f(0, "train on only the first N training images (0 = all), for smoke runs")
    precision: str = _f("auto", "auto: bf16 autocast on a CPU with bf16 / autocast on CUDA; fp32 forces full", ("auto", "bf16", "fp32"))
    device: str = _f("auto", "where to train: auto tries cuda, then mps (Apple silicon), then cpu", DEVICES)
    eval_batch_size: int = _f(500, "images per forward pass when evaluating")
    train_sizes: str = _f(
        "", "progressive resizing: 'SIZE:EPOCHS,...' trains the first epochs on downscaled images, "
        "e.g. '16:5,24:2' = 5 epochs at 16px, 2 at 24px, the rest at 32px (empty = always 32px)",
    )

    compile: bool = _f(False, "torch.compile the training step's model (evaluation stays eager); the first "
                              "epoch pays the compile time")
    sync_bn: bool = _f(False, "under torchrun, BatchNorm statistics over the global batch (SyncBatchNorm) "
                              "instead of each rank's shard; no effect in one process")

    def __post_init__(self) -> None:
        # Bad values fail when the run is configured, not hours into it (or as a ZeroDivisionError).
        for name in ("epochs", "batch_size", "eval_batch_size"):
            if getattr(self, name) < 1:
                raise ValueError(f"--{name.replace('_', '-')} must be at least 1, not {getattr(self, name)}")
        if not self.lr > 0:
            raise ValueError(f"--lr must be positive, not {self.lr}")
        sizes = self.size_schedule()
        if self.model == "cnn" and any(size != 32 for size, _ in sizes):
            raise ValueError("--train-sizes: CustomCNN trains at 32px only (its fc1 takes exactly 256x4x4 features)")

    def builder_kwargs(self) -> dict[str, Any]:
        """Keyword arguments for models.build_model."""
        return {"dropout": self.dropout}

    def size_schedule(self) -> list[tuple[int, int]]:
        """The parsed --train-sizes as [(size, epochs), ...]; ValueError says what is wrong."""
        out = []
        for part in filter(None, (p.strip() for p in self.train_sizes.split(","))):
            try:
                size, epochs = (int(v) for v in part.split(":"))
            except ValueError:
                raise ValueError(f"--train-sizes: {part!r} is not SIZE:EPOCHS, e.g. 16:5") from None
            if not 8 <= size <= 32 or epochs < 1:
                raise ValueError(f"--train-sizes: {part!r} needs a size in 8..32 and at least 1 epoch")
            out.append((size, epochs))
        return out

    def train_size(self, epoch: int) -> int:
        """Side length of the training images in this (1-based) epoch."""
        end = 0
        for size, epochs in self.size_schedule():
            end += epochs
            if epoch <= end:
                return size
        return 32

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> TrainConfig:
        known = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in d.items() if k in known})


def make_config(model: str = "cnn", recipe: str = "paper", **overrides: Any) -> TrainConfig:
    """The recipe's preset for this model, with overrides on top."""
    if recipe not in RECIPES:
        raise ValueError(f"unknown recipe {recipe!r}; valid: {', '.join(RECIPES)}")
    if model not in RECIPES[recipe]:
        raise ValueError(f"unknown model {model!r}; valid: {', '.join(RECIPES[recipe])}")
    unknown = set(overrides) - {f.name for f in fields(TrainConfig)}
    if unknown:
        raise ValueError(f"unknown config fields: {', '.join(sorted(unknown))}")
    return TrainConfig(model=model, recipe=recipe, **{**RECIPES[recipe][model], **overrides})


def add_config_arguments(parser: argparse.ArgumentParser, skip: tuple[str, ...] = ()) -> None:
    """One --flag per config field, default None so that only flags given override the recipe."""
    hints = get_type_hints(TrainConfig)
    for f in fields(TrainConfig):
        if f.name in skip:
            continue
        flag = "--" + f.name.replace("_", "-")
        kind = hints[f.name]
        help_ = f"{f.metadata['help']} (default: {f.default}; recipes may change it)"
        if kind is bool:
            parser.add_argument(flag, action=argparse.BooleanOptionalAction, default=None, help=help_)
        else:
            parser.add_argument(flag, type=kind, default=None, choices=f.metadata["choices"], help=help_)


def config_from_args(args: argparse.Namespace) -> TrainConfig:
    """A TrainConfig from parsed flags: recipe preset, then every flag that was given."""
    names = {f.name for f in fields(TrainConfig)} - {"model", "recipe"}
    given = {k: v for k, v in vars(args).items() if k in names and v is not None}
    return make_config(args.model or "cnn", args.recipe or "paper", **given)


__all__ = ["TrainConfig", "RECIPES", "make_config", "add_config_arguments", "config_from_args"]
