"""The two architectures of the report, and the model registry that owns their names.

A model is registered once, with `@register_model`, beside its builder: its name, title, short
name, default Grad-CAM layer and shipped recipe. The CLI choices, the app's picker and titles,
the explain defaults and the tests all read `MODELS` (or `get_model`/`list_models`) from here.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import nn


class ModelError(ValueError):
    """An unknown model name, bad builder arguments, or weights that cannot be fetched."""


@dataclass(frozen=True)
class ModelSpec:
    """Everything the project knows about one registered architecture."""

    name: str  # the registry key: CLI --model, file names (<name>.safetensors), URLs (?model=)
    title: str  # as the report names it
    short: str  # for narrow table headers
    builder: Callable[..., nn.Module]
    module: type[nn.Module]  # the class the builder returns, to recognise a built model
    gradcam_layer: str  # Grad-CAM's default layer: the last stage that still has 8×8 resolution
    shipped_recipe: str  # the recipe of the checkpoint in checkpoints/ (tests/test_shipped.py checks it)
    shipped_flags: str = ""  # the flags its run added to the recipe (tests/test_shipped.py checks them too)
    feature_layer: str = ""  # the module whose output is the penultimate feature vector (cifar.ood's Mahalanobis)


MODELS: dict[str, ModelSpec] = {}


def register_model(name: str, *, title: str, short: str, module: type[nn.Module], gradcam_layer: str,
                   shipped_recipe: str, shipped_flags: str = "", feature_layer: str = "") -> Callable[[Callable[..., nn.Module]], Callable[..., nn.Module]]:
    """Decorator: register a builder under `name` with its display names and defaults."""
    def wrap(builder: Callable[..., nn.Module]) -> Callable[..., nn.Module]:
        if name in MODELS:
            raise ModelError(f"model {name!r} is registered twice")
        MODELS[name] = ModelSpec(name, title, short, builder, module, gradcam_layer, shipped_recipe, shipped_flags,
                                 feature_layer)
        return builder

    return wrap


def list_models() -> tuple[str, ...]:
    """Registered model names, in registration order (the app shows them in this order)."""
    return tuple(MODELS)


def get_model(name: str) -> ModelSpec:
    """The spec of a registered model; ModelError names the valid ones."""
    if name not in MODELS:
        raise ModelError(f"unknown model {name!r}; valid names: {', '.join(MODELS)}")
    return MODELS[name]


def spec_of(model: nn.Module) -> ModelSpec | None:
    """The spec whose class built this model instance, or None for an unregistered module."""
    return next((s for s in MODELS.values() if isinstance(model, s.module)), None)


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


@register_model("cnn", title="CustomCNN", short="CNN", module=CustomCNN, gradcam_layer="conv3.2",
                shipped_recipe="fast", shipped_flags="--epochs 60", feature_layer="fc1")
def custom_cnn(*, num_classes: int = 10, dropout: float = 0.4) -> nn.Module:
    """The report's CustomCNN."""
    return CustomCNN(num_classes=num_classes, dropout=dropout)


class BasicBlock(nn.Module):
    """ResNet's two-conv residual block, with torchvision's module names (conv1, bn1, relu, conv2, bn2, downsample)."""

    def __init__(self, cin: int, cout: int, stride: int = 1):
        super().__init__()
        self.conv1 = nn.Conv2d(cin, cout, 3, stride=stride, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(cout)
        self.relu = nn.ReLU(inplace=True)
        self.conv2 = nn.Conv2d(cout, cout, 3, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(cout)
        self.downsample = (nn.Sequential(nn.Conv2d(cin, cout, 1, stride=stride, bias=False), nn.BatchNorm2d(cout))
                           if stride != 1 or cin != cout else None)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        out += x if self.downsample is None else self.downsample(x)
        return self.relu(out)


class ResNet18(nn.Module):
    """torchvision's resnet18 with the report's CIFAR stem (3×3 stride-1 conv1, no maxpool).

    Written out here rather than built from torchvision, with the same module names, parameter order
    and initialisation, so torchvision's state dicts load as they are (a test checks equal outputs).
    The reason is memory: importing torchvision adds ~160 MB to the app server, whose budget on
    Streamlit Community Cloud's smallest tier is 690 MB.
    """

    def __init__(self, num_classes: int = 10, dropout: float = 0.0):
        super().__init__()
        self.conv1 = nn.Conv2d(3, 64, 3, stride=1, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(64)
        self.relu = nn.ReLU(inplace=True)
        self.maxpool = nn.Identity()  # the ImageNet stem's maxpool would halve 32×32 before layer1
        widths, cin = (64, 128, 256, 512), 64
        for i, width in enumerate(widths, start=1):
            stride = 1 if i == 1 else 2
            self.add_module(f"layer{i}", nn.Sequential(BasicBlock(cin, width, stride), BasicBlock(width, width)))
            cin = width
        self.avgpool = nn.AdaptiveAvgPool2d((1, 1))
        self.fc = (nn.Sequential(nn.Dropout(dropout), nn.Linear(512, num_classes)) if dropout > 0
                   else nn.Linear(512, num_classes))
        for m in self.modules():  # torchvision's init; Linear keeps PyTorch's default
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
            elif isinstance(m, nn.BatchNorm2d):
                nn.init.constant_(m.weight, 1)
                nn.init.constant_(m.bias, 0)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
        x = self.layer4(self.layer3(self.layer2(self.layer1(x))))
        return self.fc(torch.flatten(self.avgpool(x), 1))


@register_model("resnet18", title="ResNet18", short="ResNet", module=ResNet18, gradcam_layer="layer3",
                shipped_recipe="paper", feature_layer="avgpool")
def resnet18_cifar(*, num_classes: int = 10, dropout: float = 0.0, pretrained: bool = False) -> nn.Module:
    """ResNet18 for 32×32 input: 3×3 stride-1 stem, no maxpool, optional Dropout → Linear head.

    pretrained=True starts from torchvision's ImageNet weights (all but the stem and the head, whose
    shapes differ); fetching them needs internet once.
    """
    model = ResNet18(num_classes=num_classes, dropout=dropout)
    if pretrained:
        from torchvision.models import ResNet18_Weights  # only here: see ResNet18's docstring

        try:
            state = ResNet18_Weights.IMAGENET1K_V1.get_state_dict(progress=True)
        except Exception as e:  # offline: URLError / socket errors
            raise ModelError(
                f"Could not fetch torchvision's ImageNet weights for resnet18 ({type(e).__name__}: {e}). "
                "This needs internet access once (they are cached in ~/.cache/torch); "
                "train from scratch with pretrained=False instead."
            ) from None
        head = ("conv1.", "fc.")
        body = {k: v for k, v in state.items() if not k.startswith(head)}
        try:
            result = model.load_state_dict(body, strict=False)
        except RuntimeError as e:  # a body tensor of another shape
            raise ModelError(f"torchvision's ImageNet resnet18 weights do not fit this ResNet18: {e}") from None
        # strict=False only so that the 7×7 stem and the 1000-way head may stay out: anything else
        # missing or extra means the weights are not the ResNet18 we think, and must not pass silently.
        missing = [k for k in result.missing_keys if not k.startswith(head)]
        if missing or result.unexpected_keys:
            raise ModelError(
                "torchvision's ImageNet resnet18 weights do not fit this ResNet18: "
                f"missing {missing[:5]}, unexpected {result.unexpected_keys[:5]}"
            )
    return model


def build_model(name: str, **kwargs) -> nn.Module:
    """Build a registered model by name ("cnn", "resnet18") with its builder's keyword arguments."""
    spec = get_model(name)
    try:
        return spec.builder(**kwargs)
    except TypeError as e:
        raise ModelError(f"bad arguments for model {name!r}: {e}") from None


def count_parameters(model: nn.Module) -> int:
    """Number of trainable parameters."""
    return sum(p.numel() for p in model.parameters() if p.requires_grad)
