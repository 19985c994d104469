"""captum FGSM/PGD in pixel space and the minimal flipping ε, on tiny models whose answers are known."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from cifar import adversarial as A


class Linear2(nn.Module):
    """Two logits, +w·x and −w·x: the cross-entropy gradient for class 0 is 2·p1·w, so sign(∇) = sign(w)."""

    def __init__(self, w: torch.Tensor):
        super().__init__()
        self.w = nn.Parameter(w.flatten(), requires_grad=False)

    def forward(self, x):
        z = x.flatten(1) @ self.w
        return torch.stack([-z, z], dim=1)


@pytest.fixture
def linear():
    torch.manual_seed(0)
    w = torch.randn(3, 8, 8)
    w[w.abs() < 1e-2] = 0.5  # keep every weight clearly signed
    return A.PixelModel(Linear2(w)), w


def test_fgsm_moves_every_pixel_by_epsilon_in_the_sign_of_its_weight(linear):
    pixel, w = linear
    x = 0.3 + 0.4 * torch.rand(2, 3, 8, 8)  # inside [ε, 1 − ε], so the bounds never clip
    eps = 4 / 255
    adv = A.attack(pixel, x, torch.tensor([0, 0]), eps, "fgsm")
    # the wrapper's normalisation (x − 0.5)/0.5 has a positive scale, so the sign is the weight's
    torch.testing.assert_close(adv - x, eps * torch.sign(w).expand_as(x), atol=1e-6, rtol=0)


def test_fgsm_stays_in_the_pixel_range(linear):
    pixel, _ = linear
    x = torch.rand(4, 3, 8, 8)
    x[0] = 0.0
    x[1] = 1.0
    adv = A.attack(pixel, x, torch.zeros(4, dtype=torch.long), 8 / 255, "fgsm")
    assert adv.min() >= 0 and adv.max() <= 1


def _small_cnn() -> nn.Module:
    torch.manual_seed(1)
    return nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.ReLU(), nn.AdaptiveAvgPool2d(4), nn.Flatten(),
                         nn.Linear(128, 10))


def test_pgd_stays_in_the_epsilon_ball_and_the_pixel_range():
    pixel = A.PixelModel(_small_cnn()).eval()
    x = torch.rand(6, 3, 16, 16)
    x[0] = 0.0  # edges: the projection and the [0, 1] clamp must both hold
    x[1] = 1.0
    eps = 8 / 255
    y = A.predict(pixel, x)
    adv = A.attack(pixel, x, y, eps, "pgd")
    assert (adv - x).abs().max() <= eps + 1e-6
    assert adv.min() >= 0 and adv.max() <= 1
    assert not torch.equal(adv, x)  # it did move
    # and it raised the loss it was asked to raise
    assert A.cross_entropy(pixel(adv), y).sum() > A.cross_entropy(pixel(x), y).sum()


def test_the_cross_entropy_loss_takes_logits():
    logits = torch.tensor([[2.0, -1.0, 0.5]])
    expected = -torch.log_softmax(logits, 1)[0, 2]
    torch.testing.assert_close(A.cross_entropy(logits, torch.tensor([2]))[0], expected)
    torch.testing.assert_close(A.cross_entropy(logits, 2)[0], expected)


@pytest.mark.parametrize("name", list(A.ATTACKS))
def test_min_flip_epsilon_flips_and_one_step_less_does_not(name, linear):
    pixel, _ = linear
    torch.manual_seed(2)
    # an image the linear model calls class 0 by a small margin, so a small ε flips it
    x = torch.full((1, 3, 8, 8), 0.5) + 0.05 * torch.rand(1, 3, 8, 8)
    w = pixel.model.w.view(1, 3, 8, 8)
    margin = float(((x - 0.5) / 0.5).flatten() @ w.flatten())
    x = (x - torch.sign(w) * (margin + 0.3) / (2 * w.abs().sum())).clamp(0, 1)  # now z ≈ −0.3: class 0
    assert int(A.predict(pixel, x)[0]) == 0
    eps, adv, pred = A.min_flip_epsilon(pixel, x, name=name)
    assert pred == 0 and eps is not None and 0 < eps <= A.MAX_EPSILON
    assert int(A.predict(pixel, adv)[0]) != pred
    assert int(A.predict(pixel, A.attack(pixel, x, pred, eps, name))[0]) != pred
    below = eps - A.EPSILON_UNIT
    assert int(A.predict(pixel, A.attack(pixel, x, pred, below, name))[0]) == pred
    assert eps == pytest.approx(round(eps / A.EPSILON_UNIT) * A.EPSILON_UNIT)


def test_min_flip_epsilon_says_none_when_the_budget_is_too_small(linear):
    pixel, w = linear
    x = (0.5 - 0.4 * torch.sign(w)).unsqueeze(0)  # deep inside class 0
    eps, adv, pred = A.min_flip_epsilon(pixel, x, name="fgsm", max_epsilon=1 / 255)
    assert pred == 0 and eps is None and adv is None


def test_accuracy_vs_epsilon_starts_at_clean_accuracy_and_falls():
    pixel = A.PixelModel(_small_cnn()).eval()
    x = torch.rand(12, 3, 16, 16)
    y = A.predict(pixel, x)  # labels = clean predictions: clean accuracy is 1
    accs = A.accuracy_vs_epsilon(pixel, x, y, [0, 2 / 255, 32 / 255], "pgd", batch_size=5)
    assert accs[0] == 1.0 and accs[2] <= accs[1] <= accs[0] and accs[2] < 1.0


def test_to_pixels_round_trip():
    img = np.random.default_rng(0).integers(0, 256, (2, 4, 4, 3), dtype=np.uint8)
    np.testing.assert_array_equal(A.to_uint8(A.to_pixels(img)), img)
    with pytest.raises(ValueError, match="uint8"):
        A.to_pixels(img.astype(np.float32))
