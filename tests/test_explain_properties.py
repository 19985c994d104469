"""What each attribution method computes, checked against its definition on networks small enough to
work out by hand (trust-methods.md; the Captum docs).

Each registered method has a property of its own here (PROPERTIES at the end lists them, and a test
fails when a method is registered without one):

- Saliency is the gradient of the target logit (signed, summed over channels);
- Guided Backprop differs from Saliency exactly by the negative gradients that pass back through a
  ReLU: with only positive ones the two are equal;
- Integrated Gradients of a linear model is (x - baseline) · weight, for either baseline, and its
  `steps` are the images it evaluates;
- SmoothGrad averages `n_samples` gradients at x + N(0, stdev²): through a ReLU the gradient is a
  coin flip whose odds the noise sets;
- Occlusion is the logit drop of each window set to the baseline, averaged over the windows that
  cover a pixel;
- Grad-CAM is ReLU(sum over channels of the mean gradient times the activation), upsampled.

The nets are random but seeded; numbers go through the app's explanation copy (channels_last,
fp32), so "equal" means equal up to float32 rounding (atol 1e-5 on values of order 1).
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from cifar import explain as E

ATOL = 1e-5  # float32 sums of ~200 products, in another memory layout than the hand computation
SIZE = 8  # images are 3×8×8: every method and hand computation stays tiny


class Counting(nn.Module):
    """Identity that counts the images passing through it (so a test sees how many a method evaluated)."""

    def __init__(self):
        super().__init__()
        self.seen = 0

    def forward(self, x):
        self.seen += x.shape[0]
        return x


def seen(model: nn.Module) -> int:
    """Images the model's explanation copy has evaluated since the last reset."""
    return E._COPIES[model][1][0].seen


def reset(model: nn.Module) -> None:
    E._COPIES[model][1][0].seen = 0


def linear_net(seed: int = 0) -> nn.Sequential:
    torch.manual_seed(seed)
    return nn.Sequential(Counting(), nn.Flatten(), nn.Linear(3 * SIZE * SIZE, 10))


def relu_net(seed: int = 0, positive_head: bool = False) -> nn.Sequential:
    """conv → ReLU → linear head; with positive_head every weight of the head is ≥ 0."""
    torch.manual_seed(seed)
    net = nn.Sequential(Counting(), nn.Conv2d(3, 4, 3, padding=1), nn.ReLU(), nn.Flatten(), nn.Linear(4 * SIZE * SIZE, 10))
    if positive_head:
        with torch.no_grad():
            net[4].weight.abs_()
    return net


def image(seed: int = 1, low: float = -1.0, high: float = 1.0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.rand(1, 3, SIZE, SIZE, generator=g) * (high - low) + low


def hand_grad(f, x: torch.Tensor) -> np.ndarray:
    """d f(x) / dx summed over channels, as an (H, W) array."""
    x = x.clone().requires_grad_(True)
    (g,) = torch.autograd.grad(f(x), x)
    return g[0].sum(0).numpy()


# ----------------------------------------------------------------------------------- Saliency


@pytest.mark.parametrize("target", [0, 3])
def test_saliency_is_the_signed_gradient_of_the_target_logit(target):
    net, x = relu_net(), image()
    attr = E.attribute(net, x, target, "Saliency")
    expected = hand_grad(lambda v: net(v)[0, target], x)
    np.testing.assert_allclose(attr, expected, rtol=0, atol=ATOL)
    assert (expected < 0).any()  # so a method that took |gradient| would fail above


# ------------------------------------------------------------------------------ Guided Backprop


def test_guided_backprop_equals_saliency_when_no_negative_gradient_reaches_a_relu():
    net, x, target = relu_net(positive_head=True), image(), 2
    np.testing.assert_allclose(E.attribute(net, x, target, "Guided Backprop"), E.attribute(net, x, target, "Saliency"),
                               rtol=0, atol=ATOL)


def test_guided_backprop_drops_exactly_the_negative_gradients_at_the_relu():
    net, x, target = relu_net(), image(), 2
    conv, head = net[1], net[4]
    # The gradient arriving at the ReLU's output is the head's row for the target (the head is linear).
    g = head.weight[target].detach().view(4, SIZE, SIZE)
    assert (g < 0).any() and (g > 0).any()
    guided = E.attribute(net, x, target, "Guided Backprop")
    saliency = E.attribute(net, x, target, "Saliency")
    # Guided Backprop passes back only relu(g), and only where the ReLU was open (conv output > 0)...
    np.testing.assert_allclose(guided, hand_grad(lambda v: (F.relu(conv(v)) * g.clamp(min=0)).sum(), x),
                               rtol=0, atol=ATOL)
    # ...so it differs from Saliency by exactly the negative part: where negative gradients went through.
    dropped = hand_grad(lambda v: (F.relu(conv(v)) * g.clamp(max=0)).sum(), x)
    np.testing.assert_allclose(saliency - guided, dropped, rtol=0, atol=ATOL)
    assert np.abs(dropped).max() > 0.01


# -------------------------------------------------------------------------- Integrated Gradients


@pytest.mark.parametrize("baseline, value", [("black", -1.0), ("zero", 0.0)])
def test_integrated_gradients_of_a_linear_model_is_input_minus_baseline_times_weight(baseline, value):
    net, x, target = linear_net(), image(), 4
    attr = E.attribute(net, x, target, "Integrated Gradients", baseline=baseline, steps=8)
    w = net[2].weight[target].detach().view(3, SIZE, SIZE)
    np.testing.assert_allclose(attr, ((x[0] - value) * w).sum(0).numpy(), rtol=0, atol=ATOL)


@pytest.mark.parametrize("steps", [8, 20])
def test_integrated_gradients_evaluates_one_image_per_step(steps):
    net, x = relu_net(), image()
    E.attribute(net, x, 0, "Integrated Gradients", steps=2)  # builds the copy
    reset(net)
    E.attribute(net, x, 0, "Integrated Gradients", steps=steps)
    assert seen(net) == steps


# ---------------------------------------------------------------------------------- SmoothGrad


HEAD = 0.5  # not 1: a method that squared the gradients (VarGrad, smoothgrad_sq) must change the numbers


def relu_sum_net() -> nn.Sequential:
    """logit = HEAD · sum of ReLU(pixels): its gradient at a pixel is HEAD where the pixel is > 0, else 0."""
    net = nn.Sequential(Counting(), nn.ReLU(), nn.Flatten(), nn.Linear(3 * 32 * 32, 10))
    with torch.no_grad():
        net[3].weight.fill_(HEAD)
        net[3].bias.zero_()
    return net


@pytest.mark.parametrize("n_samples", [4, 7])
def test_smoothgrad_averages_n_samples_gradients(n_samples):
    net = relu_sum_net()
    x = torch.rand(1, 3, 32, 32, generator=torch.Generator().manual_seed(2)) * 0.3  # > 0: Saliency is 3·HEAD everywhere
    torch.manual_seed(0)
    E.attribute(net, x, 0, "SmoothGrad", n_samples=2, stdev=0.1)  # builds the copy
    reset(net)
    attr = E.attribute(net, x, 0, "SmoothGrad", n_samples=n_samples, stdev=0.2)
    assert seen(net) == n_samples
    # Each sample's gradient is 0 or HEAD per channel, so the mean is HEAD · k / n_samples.
    k = attr / HEAD * n_samples
    np.testing.assert_allclose(k, np.round(k), atol=1e-4)
    assert 0 <= k.min() and k.max() <= 3 * n_samples and k.max() > 2 * n_samples
    assert np.any(np.round(k) % 2 == 1)  # odd counts: the divisor is n_samples, not a multiple of it


@pytest.mark.parametrize("stdev", [0.05, 0.5])
def test_smoothgrad_follows_its_noise_level(stdev):
    # Per channel, the expected gradient is P(x + noise > 0) = Φ(x / stdev): the noise level sets the map.
    net = relu_sum_net()
    x = torch.rand(1, 3, 32, 32, generator=torch.Generator().manual_seed(2)) * 0.3
    torch.manual_seed(0)
    attr = E.attribute(net, x, 0, "SmoothGrad", n_samples=64, stdev=stdev)
    expected = HEAD * torch.special.ndtr(x[0] / stdev).sum(0).numpy()  # Φ, the normal CDF
    # Monte Carlo: the mean over 1024 pixels of 3 channels' averages of 64 coin flips (×HEAD) has a
    # standard deviation under 0.0017 (HEAD · sqrt(3 / 4 / 64 / 1024)); 0.005 is 3 of them.
    assert attr.mean() == pytest.approx(expected.mean(), abs=0.005)
    # Pixel by pixel, a brighter pixel is surer to stay open (one pixel's noise: sd 0.11 over 3 channels).
    assert np.corrcoef(attr.ravel(), expected.ravel())[0, 1] > 0.5
    saliency = E.attribute(net, x, 0, "Saliency")
    np.testing.assert_array_equal(saliency, 3 * HEAD)  # no noise: every pixel open


# ------------------------------------------------------------------------------------ Occlusion


def occlusion_by_hand(net, x, target, window, stride, value) -> np.ndarray:
    """Mean over the windows covering each pixel of logit(x) - logit(x with the window set to value)."""
    with torch.no_grad():
        full = net(x)[0, target].item()
        total, count = torch.zeros(SIZE, SIZE), torch.zeros(SIZE, SIZE)
        for top in range(0, SIZE - window + 1, stride):
            for left in range(0, SIZE - window + 1, stride):
                occluded = x.clone()
                occluded[..., top:top + window, left:left + window] = value
                total[top:top + window, left:left + window] += full - net(occluded)[0, target].item()
                count[top:top + window, left:left + window] += 1
    return (total / count.clamp(min=1)).numpy()


@pytest.mark.parametrize("baseline, value", [("black", -1.0), ("zero", 0.0)])
@pytest.mark.parametrize("window, stride", [(4, 4), (4, 2), (3, 1)])
def test_occlusion_is_the_logit_drop_of_each_window_at_the_baseline(baseline, value, window, stride):
    net, x, target = relu_net(), image(), 6
    attr = E.attribute(net, x, target, "Occlusion", window=window, stride=stride, baseline=baseline)
    np.testing.assert_allclose(attr, occlusion_by_hand(net, x, target, window, stride, value), rtol=0, atol=ATOL)


def test_occlusion_depends_on_its_baseline():
    net, x = relu_net(), image()
    black = E.attribute(net, x, 6, "Occlusion", window=4, stride=4, baseline="black")
    grey = E.attribute(net, x, 6, "Occlusion", window=4, stride=4, baseline="zero")
    assert np.abs(black - grey).max() > 0.01


# ------------------------------------------------------------------------------------- Grad-CAM


def cam_net(seed: int = 0) -> nn.Sequential:
    torch.manual_seed(seed)
    return nn.Sequential(Counting(), nn.Conv2d(3, 4, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2), nn.Flatten(),
                         nn.Linear(4 * (SIZE // 2) ** 2, 10))


@pytest.mark.parametrize("layer", ["1", "3"])  # the conv (8×8, no upsampling) and the pool (4×4, upsampled)
def test_gradcam_is_the_relu_of_gradient_weighted_channels_upsampled(layer):
    net, x, target = cam_net(), image(), 1
    attr = E.attribute(net, x, target, "Grad-CAM", layer=layer)
    upto = int(layer) + 1
    with torch.enable_grad():
        a = net[:upto](x).detach().requires_grad_(True)
        (grad,) = torch.autograd.grad(net[upto:](a)[0, target], a)
    weights = grad.mean(dim=(2, 3), keepdim=True)  # one weight per channel: the mean gradient over space
    cam = F.relu((weights * a).sum(1, keepdim=True)).detach()
    expected = F.interpolate(cam, size=(SIZE, SIZE), mode="bilinear", align_corners=False)[0, 0].numpy()
    np.testing.assert_allclose(attr, expected, rtol=0, atol=ATOL)
    unclipped = (weights * a).sum(1)
    assert (unclipped < 0).any() and (unclipped > 0).any()  # the ReLU above mattered


# ------------------------------------------------------------------------------------- the registry

PROPERTIES = {
    "Saliency": [test_saliency_is_the_signed_gradient_of_the_target_logit],
    "Guided Backprop": [test_guided_backprop_equals_saliency_when_no_negative_gradient_reaches_a_relu,
                        test_guided_backprop_drops_exactly_the_negative_gradients_at_the_relu],
    "Integrated Gradients": [test_integrated_gradients_of_a_linear_model_is_input_minus_baseline_times_weight,
                             test_integrated_gradients_evaluates_one_image_per_step],
    "SmoothGrad": [test_smoothgrad_averages_n_samples_gradients, test_smoothgrad_follows_its_noise_level],
    "Occlusion": [test_occlusion_is_the_logit_drop_of_each_window_at_the_baseline, test_occlusion_depends_on_its_baseline],
    "Grad-CAM": [test_gradcam_is_the_relu_of_gradient_weighted_channels_upsampled],
}


def test_every_registered_method_has_a_property_check():
    # A method added to the registry needs a check of what it computes here, not only that it runs.
    assert set(PROPERTIES) == set(E.METHODS)
