"""A tiny BatchNorm-free model, registered only where a test asks for it; and a `cifar.train` that knows it.

    python -m devkit.tiny_model --model tiny ...                                  # cifar.train's flags
    torchrun --standalone --nproc-per-node 2 -m devkit.tiny_model --model tiny ...

The DDP test compares two ranks with one process. BatchNorm would make them differ by design (each
rank normalises its own slice; torch's SyncBatchNorm runs on GPUs only), so the test trains this
model instead. It is registered here and not in cifar/models.py, so the app's model picker, the CLI
choices of a normal run and the shipped-checkpoint tests never see it.
"""

from __future__ import annotations

import sys

from torch import nn

NAME = "tiny"


class TinyNet(nn.Module):
    """Two strided convolutions, global average pooling and a linear head: 1,562 parameters, no BatchNorm."""

    def __init__(self, num_classes: int = 10, dropout: float = 0.0):
        super().__init__()
        self.conv1 = nn.Conv2d(3, 8, 3, stride=2, padding=1)
        self.conv2 = nn.Conv2d(8, 16, 3, stride=2, padding=1)
        self.relu = nn.ReLU()
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Sequential(nn.Dropout(dropout), nn.Linear(16, num_classes))

    def forward(self, x):
        x = self.relu(self.conv2(self.relu(self.conv1(x))))
        return self.fc(self.pool(x).flatten(1))


def register() -> None:
    """Add the tiny model to the registry and every recipe (as the CNN's preset); idempotent.

    Call it before cifar.config is imported: the CLI's --model choices are read from the registry then.
    """
    from cifar.models import MODELS, register_model

    if NAME not in MODELS:
        @register_model(NAME, title="TinyNet (tests only)", short="Tiny", module=TinyNet, gradcam_layer="conv2",
                        shipped_recipe="paper")
        def tiny(*, num_classes: int = 10, dropout: float = 0.0) -> nn.Module:
            return TinyNet(num_classes=num_classes, dropout=dropout)

    from cifar.config import RECIPES

    for recipe in RECIPES.values():
        recipe.setdefault(NAME, dict(recipe.get("cnn") or next(iter(recipe.values()))))


def unregister() -> None:
    """Take the tiny model out of the registry and the recipes again (a test that registered it in its own process)."""
    from cifar.config import RECIPES
    from cifar.models import MODELS

    MODELS.pop(NAME, None)
    for recipe in RECIPES.values():
        recipe.pop(NAME, None)


def main(argv: list[str] | None = None) -> int:
    register()
    from cifar.train import main as train_main

    return train_main(argv)


if __name__ == "__main__":
    sys.exit(main())
