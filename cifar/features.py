"""Penultimate features: the input of a model's final linear layer, captured with a scoped forward hook
(for a registered model: the output of its registry `feature_layer`, the same vector in eval mode).

Training-data attribution (cifar.influence) and the embedding map read the same vector the classifier
head sees: CustomCNN's 1,024 fc1 activations (after ReLU and dropout, which is the identity in eval
mode), ResNet18's 512 pooled channels.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import torch
from torch import nn


def final_linear(model: nn.Module) -> nn.Linear:
    """The classifier head: the last nn.Linear the model registers (CustomCNN's fc2, ResNet18's fc)."""
    last = None
    for module in model.modules():
        if isinstance(module, nn.Linear):
            last = module
    if last is None:
        raise ValueError(f"{type(model).__name__} has no nn.Linear layer, so it has no penultimate features")
    return last


@contextlib.contextmanager
def capture_penultimate(model: nn.Module) -> Iterator[list[torch.Tensor]]:
    """Inside the block, every forward pass appends its final layer's input (detached) to the yielded
    list. The hook is removed on exit, whatever happens inside."""
    captured: list[torch.Tensor] = []

    def hook(_module, inputs, _output):
        captured.append(inputs[0].detach())

    handle = final_linear(model).register_forward_hook(hook)
    try:
        yield captured
    finally:
        handle.remove()


@torch.no_grad()
def penultimate(model: nn.Module, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(features (N, D), logits (N, C)) of a normalised NCHW batch, from one forward pass, both float32.

    A registered model's features are the output of its registry `feature_layer`, captured by
    cifar.explain.capture as the Mahalanobis detector (cifar.ood) reads them: in eval mode the same
    vector as the input of the final linear layer, which is what an unregistered model (a test's
    small one) is captured by.
    """
    from cifar.explain import capture
    from cifar.models import spec_of

    spec = spec_of(model)
    if spec is not None and spec.feature_layer:
        with capture(model, spec.feature_layer) as acts:
            logits = model(x)
        return acts[spec.feature_layer].float().flatten(1), logits.float()
    with capture_penultimate(model) as captured:
        logits = model(x)
    return captured[-1].float().flatten(1), logits.float()
