"""The two architectures of the report and a small name → builder registry."""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import nn


class ModelError(ValueError):
    """An unknown model name, bad builder arguments, or weights that cannot be fetched."""


def _conv_bn_relu(cin: int, cout: int) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(cin, cout, 3, padding=1), nn.BatchNorm2d(cout), nn.ReLU(inplace=True))


class CustomCNN(nn.Module):
    """The report's CustomCNN: three conv-BN-ReLU-pool stages and two linear layers (4,577,290 params)."""

    def __init__(self, num_classes: int = 10, dropout: float = 0.4):
        super().__init__()
        self.conv1 = _conv_bn_relu(3, 64)  # 64×32×32
        self.pool1 = nn.MaxPool2d(2)  # 64×16×16
        self.conv2 = _conv_bn_relu(64, 128)  # 128×16×16
        self.pool2 = nn.MaxPool2d(2)  # 128×8×8
        self.conv3 = _conv_bn_relu(128, 256)  # 256×8×8
        self.pool3 = nn.MaxPool2d(2)  # 256×4×4
        self.flatten = nn.Flatten()  # 4096
        self.fc1 = nn.Sequential(nn.Linear(256 * 4 * 4, 1024), nn.ReLU(inplace=True), nn.Dropout(dropout))
        self.fc2 = nn.Linear(1024, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.pool1(self.conv1(x))
        x = self.pool2(self.conv2(x))
        x = self.pool3(self.conv3(x))
        return self.fc2(self.fc1(self.flatten(x)))


def custom_cnn(*, num_classes: int = 10, dropout: float = 0.4) -> nn.Module:
    """The report's CustomCNN."""
    return CustomCNN(num_classes=num_classes, dropout=dropout)


def resnet18_cifar(*, num_classes: int = 10, dropout: float = 0.0, pretrained: bool = False) -> nn.Module:
    """torchvision's resnet18 for 32×32 input: 3×3 stride-1 stem, no maxpool, optional Dropout → Linear head."""
    from torchvision.models import ResNet18_Weights, resnet18

    if pretrained:
        try:
            model = resnet18(weights=ResNet18_Weights.IMAGENET1K_V1)
        except Exception as e:  # offline: URLError / socket errors
            raise ModelError(
                f"Could not fetch torchvision's ImageNet weights for resnet18 ({type(e).__name__}: {e}). "
                "This needs internet access once (they are cached in ~/.cache/torch); "
                "train from scratch with pretrained=False instead."
            ) from None
        model.fc = nn.Linear(model.fc.in_features, num_classes)
    else:
        model = resnet18(weights=None, num_classes=num_classes)
    # The ImageNet stem (7×7 stride 2 + maxpool) would shrink 32×32 to 8×8 before layer1.
    model.conv1 = nn.Conv2d(3, 64, kernel_size=3, stride=1, padding=1, bias=False)
    model.maxpool = nn.Identity()
    if dropout > 0:
        model.fc = nn.Sequential(nn.Dropout(dropout), nn.Linear(model.fc.in_features, num_classes))
    return model


MODELS: dict[str, Callable[..., nn.Module]] = {"cnn": custom_cnn, "resnet18": resnet18_cifar}


def build_model(name: str, **kwargs) -> nn.Module:
    """Build a registered model by name ("cnn", "resnet18") with its builder's keyword arguments."""
    if name not in MODELS:
        raise ModelError(f"unknown model {name!r}; valid names: {', '.join(sorted(MODELS))}")
    try:
        return MODELS[name](**kwargs)
    except TypeError as e:
        raise ModelError(f"bad arguments for model {name!r}: {e}") from None


def count_parameters(model: nn.Module) -> int:
    """Number of trainable parameters."""
    return sum(p.numel() for p in model.parameters() if p.requires_grad)
