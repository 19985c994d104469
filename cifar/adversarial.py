"""Adversarial perturbations with captum.robust: FGSM, PGD and the smallest ε that flips a prediction.

Attacks run in [0, 1] pixel space, L∞, with the model's normalisation inside a wrapper
(`PixelModel`), so captum's scalar bounds (0, 1) are the real pixel range and ε is in pixel units
(8/255 = eight grey levels, the usual budget). The loss is cross-entropy on the logits: captum's
default, -log(output), assumes the model outputs probabilities, which ours do not.

No Streamlit here; the app calls these through cifar_app.cache.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from cifar import MEAN, STD

MAX_EPSILON = 8 / 255  # the usual L∞ budget on CIFAR-10
EPSILON_UNIT = 0.25 / 255  # the minimal-ε search's resolution: a quarter of one grey level
PGD_STEPS = 10
PGD_STEP_FACTOR = 2.5  # step size = 2.5 ε / steps (Madry et al.): the walk can cross the ball and come back


class PixelModel(nn.Module):
    """[0, 1] pixels (N, 3, H, W) → the wrapped model's logits: (x − mean) / std happens inside."""

    def __init__(self, model: nn.Module, mean: Sequence[float] = MEAN, std: Sequence[float] = STD):
        super().__init__()
        self.model = model
        self.register_buffer("mean", torch.tensor(mean, dtype=torch.float32).view(1, -1, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(std, dtype=torch.float32).view(1, -1, 1, 1), persistent=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model((x - self.mean) / self.std)


def cross_entropy(outputs: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Per-example cross-entropy of logits (captum sums the per-example gradients)."""
    if not isinstance(target, torch.Tensor):
        target = torch.as_tensor(target, device=outputs.device)
    target = target.reshape(-1).expand(outputs.shape[0]) if target.numel() == 1 else target.reshape(-1)
    return F.cross_entropy(outputs, target.long(), reduction="none")


def to_pixels(images: np.ndarray) -> torch.Tensor:
    """uint8 (N, H, W, 3) or (H, W, 3) → float (N, 3, H, W) in [0, 1]."""
    a = np.asarray(images)
    if a.dtype != np.uint8 or a.shape[-1] != 3 or a.ndim not in (3, 4):
        raise ValueError(f"expected uint8 images (N, H, W, 3) or (H, W, 3), got {a.dtype} {a.shape}")
    if a.ndim == 3:
        a = a[None]
    return torch.from_numpy(np.ascontiguousarray(a)).permute(0, 3, 1, 2).float() / 255.0


def to_uint8(x: torch.Tensor) -> np.ndarray:
    """float (N, 3, H, W) in [0, 1] → uint8 (N, H, W, 3), rounded (what a saved image would hold)."""
    return (x.detach().clamp(0, 1) * 255).round().byte().permute(0, 2, 3, 1).cpu().numpy()


def _target(target, n: int) -> torch.Tensor:
    t = torch.as_tensor(target, dtype=torch.long).reshape(-1)
    return t.expand(n) if t.numel() == 1 else t


def fgsm(model: nn.Module, x: torch.Tensor, target, epsilon: float) -> torch.Tensor:
    """captum FGSM, untargeted: x + ε·sign(∇ CE), clamped to [0, 1]. `model` takes [0, 1] pixels."""
    from captum.robust import FGSM

    attack = FGSM(model, loss_func=cross_entropy, lower_bound=0.0, upper_bound=1.0)
    return attack.perturb(x, epsilon=float(epsilon), target=_target(target, len(x))).detach()


def pgd(model: nn.Module, x: torch.Tensor, target, epsilon: float, *, steps: int = PGD_STEPS,
        step_size: float | None = None) -> torch.Tensor:
    """captum PGD, L∞, untargeted, no random start (deterministic): stays in the ε-ball and [0, 1]."""
    from captum.robust import PGD

    if epsilon <= 0:
        return x.detach().clone()
    step_size = PGD_STEP_FACTOR * epsilon / steps if step_size is None else step_size
    attack = PGD(model, loss_func=cross_entropy, lower_bound=0.0, upper_bound=1.0)
    return attack.perturb(x, radius=float(epsilon), step_size=float(step_size), step_num=int(steps),
                          target=_target(target, len(x)), random_start=False, norm="Linf").detach()


@dataclass(frozen=True)
class Attack:
    name: str
    title: str
    run: Callable[..., torch.Tensor]  # (pixel model, x, target, epsilon) → adversarial x
    help: str


ATTACKS: dict[str, Attack] = {
    "fgsm": Attack("fgsm", "FGSM", fgsm, "one gradient-sign step of size ε (Goodfellow et al. 2015)"),
    "pgd": Attack("pgd", "PGD", pgd, f"{PGD_STEPS} gradient-sign steps of 2.5ε/{PGD_STEPS}, projected back into "
                                     "the ε-ball (Madry et al. 2018)"),
}


def get_attack(name: str) -> Attack:
    """A registered attack; ValueError names the valid ones."""
    if name not in ATTACKS:
        raise ValueError(f"unknown attack {name!r}; valid: {', '.join(ATTACKS)}")
    return ATTACKS[name]


def attack(model: nn.Module, x: torch.Tensor, target, epsilon: float, name: str = "pgd") -> torch.Tensor:
    """Run the named attack (eval mode, fp32) on [0, 1] pixels; `model` takes [0, 1] pixels."""
    if not 0 <= epsilon <= 1:
        raise ValueError(f"epsilon must be in [0, 1] (pixel units), got {epsilon}")
    with _eval(model), warnings.catch_warnings():
        # captum announces that it set requires_grad on the input, on every call
        warnings.filterwarnings("ignore", message=".*required_grads has been set automatically.*")
        return get_attack(name).run(model, x, target, epsilon)


class _eval:
    def __init__(self, model: nn.Module):
        self.model, self.was = model, model.training

    def __enter__(self):
        self.model.eval()

    def __exit__(self, *exc):
        self.model.train(self.was)


@torch.no_grad()
def predict(model: nn.Module, x: torch.Tensor, batch_size: int = 500) -> torch.Tensor:
    """Predicted classes of [0, 1] pixels."""
    with _eval(model):
        return torch.cat([model(c).argmax(1) for c in x.split(batch_size)])


def min_flip_epsilon(model: nn.Module, x: torch.Tensor, *, name: str = "fgsm", max_epsilon: float = MAX_EPSILON,
                     unit: float = EPSILON_UNIT) -> tuple[float | None, torch.Tensor | None, int]:
    """The smallest ε (a multiple of `unit`, at most max_epsilon) at which the attack changes the
    model's prediction of one image x (1, 3, H, W), by captum's MinParamPerturbation (binary search).

    Returns (ε, the adversarial image, the clean prediction); (None, None, pred) when no ε up to the
    budget flips it. The search runs on whole units (integers) so float steps cannot drift, and
    ε = 0 is its lower end, so ε − unit is a level that was tested and does not flip (for a monotone
    attack it is the largest such level).
    """
    from captum.robust import MinParamPerturbation

    if x.ndim != 4 or x.shape[0] != 1:
        raise ValueError(f"expected one image (1, 3, H, W), got {tuple(x.shape)}")
    run = get_attack(name).run
    pred = int(predict(model, x)[0])
    levels = int(round(max_epsilon / unit))

    def at_level(inputs: torch.Tensor, level: int) -> torch.Tensor:
        return run(model, inputs, pred, level * unit)

    search = MinParamPerturbation(model, attack=at_level, arg_name="level", arg_min=0, arg_max=levels + 1,
                                  arg_step=1, mode="binary")
    with _eval(model), warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*required_grads has been set automatically.*")
        adv, level = search.evaluate(x, target=pred)
    if level is None:
        return None, None, pred
    return level * unit, adv.detach(), pred


def accuracy_vs_epsilon(model: nn.Module, x: torch.Tensor, labels: torch.Tensor, epsilons: Sequence[float],
                        name: str, *, batch_size: int = 100, progress: Callable[[int], None] | None = None) -> list[float]:
    """Accuracy on adversarial copies of x (labels as targets) at each ε, in batches."""
    correct = np.zeros(len(epsilons))
    for i in range(0, len(x), batch_size):
        xb, yb = x[i:i + batch_size], labels[i:i + batch_size]
        for k, eps in enumerate(epsilons):
            adv = attack(model, xb, yb, float(eps), name) if eps > 0 else xb
            correct[k] += int((predict(model, adv) == yb).sum())
        if progress is not None:
            progress(len(xb))
    return (correct / max(len(x), 1)).tolist()


# ------------------------------------------------------------------------------ one image, for the app


@dataclass(frozen=True)
class Adversarial:
    """One image attacked on one model: the adversarial pixels and the perturbation (float, [0, 1] units)."""

    pixels: np.ndarray  # float32 (3, H, W) in [0, 1]
    delta: np.ndarray  # float32 (3, H, W): pixels − clean, in [−ε, ε]
    epsilon: float
    attack: str
    target: int  # the class the attack pushed away from (the clean prediction)


def _pixel_twin(model: nn.Module, mean: Sequence[float], std: Sequence[float]) -> PixelModel:
    # The explanation copy (fp32, eval, no parameter gradients, no in-place ReLU), shared with the
    # attributions; callers hold explain's lock.
    from cifar.explain import _explainer

    return PixelModel(_explainer(model), mean, std).eval()


def attack_image(model: nn.Module, image: np.ndarray, epsilon: float, name: str = "pgd", *,
                 mean: Sequence[float] = MEAN, std: Sequence[float] = STD) -> Adversarial:
    """Attack one uint8 (H, W, 3) image away from the model's own clean prediction."""
    from cifar.explain import _LOCK

    with _LOCK:
        pixel = _pixel_twin(model, mean, std)
        x = to_pixels(image)
        pred = int(predict(pixel, x)[0])
        adv = attack(pixel, x, pred, float(epsilon), name) if epsilon > 0 else x
    return Adversarial(adv[0].numpy().astype(np.float32), (adv - x)[0].numpy().astype(np.float32), float(epsilon),
                       name, pred)


def min_flip_for_image(model: nn.Module, image: np.ndarray, name: str = "fgsm", *, mean: Sequence[float] = MEAN,
                       std: Sequence[float] = STD, max_epsilon: float = MAX_EPSILON) -> Adversarial | None:
    """The smallest-ε adversarial copy of one uint8 image (min_flip_epsilon), None when ε ≤ max does not flip it."""
    from cifar.explain import _LOCK

    with _LOCK:
        pixel = _pixel_twin(model, mean, std)
        x = to_pixels(image)
        eps, adv, pred = min_flip_epsilon(pixel, x, name=name, max_epsilon=max_epsilon)
    if eps is None:
        return None
    return Adversarial(adv[0].numpy().astype(np.float32), (adv - x)[0].numpy().astype(np.float32), eps, name, pred)


def normalize_pixels(pixels: np.ndarray, mean: Sequence[float] = MEAN, std: Sequence[float] = STD) -> torch.Tensor:
    """float (3, H, W) in [0, 1] → (1, 3, H, W) normalised with (mean, std), the models' input."""
    x = torch.from_numpy(np.ascontiguousarray(pixels, dtype=np.float32))[None]
    m = torch.tensor(mean, dtype=torch.float32).view(1, -1, 1, 1)
    s = torch.tensor(std, dtype=torch.float32).view(1, -1, 1, 1)
    return (x - m) / s


def pixels_to_image(pixels: np.ndarray) -> np.ndarray:
    """float (3, H, W) in [0, 1] → uint8 (H, W, 3), rounded: for display only."""
    return np.round(np.clip(pixels, 0, 1).transpose(1, 2, 0) * 255).astype(np.uint8)


def amplified(delta: np.ndarray, epsilon: float) -> np.ndarray:
    """A perturbation (3, H, W) in [−ε, ε] as a uint8 (H, W, 3) picture: mid-grey = 0, ±ε = 0/255."""
    if epsilon <= 0:
        return np.full(delta.shape[1:] + (3,), 128, dtype=np.uint8)
    shown = 0.5 + 0.5 * np.clip(delta / epsilon, -1, 1)
    return np.round(shown.transpose(1, 2, 0) * 255).astype(np.uint8)
