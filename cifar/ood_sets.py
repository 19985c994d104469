"""Out-of-distribution image sets made offline from a seed: what the detectors of cifar.ood are measured on.

Every set is uint8 (n, 32, 32, 3), what the models take. Far-OOD sets are synthetic (noise, single
colours, blobs and shapes, tiny images upscaled); near-OOD sets are CIFAR-10 test images damaged
until their object is gone (heavy blur, shuffled patches). Tiny images go through the upload
page's path: a k×k image, bicubically resized to 32×32 (cifar_app.uploads.to_model_input).
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
from PIL import Image, ImageDraw, ImageFilter

SIZE = 32
BLUR_SIGMA = 3.0  # px at 32×32: edges and texture gone, the colour layout left
PATCH = 8  # px: 16 patches of 8×8, shuffled


def uniform_noise(rng: np.random.Generator, n: int, cifar: np.ndarray) -> np.ndarray:
    """Every pixel and channel uniform in 0..255."""
    return rng.integers(0, 256, (n, SIZE, SIZE, 3), dtype=np.uint8)


def gaussian_noise(rng: np.random.Generator, n: int, cifar: np.ndarray) -> np.ndarray:
    """Every pixel and channel N(128, 64²), clipped to 0..255."""
    return np.clip(rng.normal(128, 64, (n, SIZE, SIZE, 3)), 0, 255).round().astype(np.uint8)


def single_colour(rng: np.random.Generator, n: int, cifar: np.ndarray) -> np.ndarray:
    """One uniformly random RGB colour filling the image."""
    colours = rng.integers(0, 256, (n, 1, 1, 3), dtype=np.uint8)
    return np.broadcast_to(colours, (n, SIZE, SIZE, 3)).copy()


def blobs_and_shapes(rng: np.random.Generator, n: int, cifar: np.ndarray) -> np.ndarray:
    """1–4 ellipses, rectangles or triangles of random colours on a random plain background."""
    out = np.empty((n, SIZE, SIZE, 3), np.uint8)
    for i in range(n):
        img = Image.new("RGB", (SIZE, SIZE), tuple(int(v) for v in rng.integers(0, 256, 3)))
        draw = ImageDraw.Draw(img)
        for _ in range(int(rng.integers(1, 5))):
            colour = tuple(int(v) for v in rng.integers(0, 256, 3))
            x0, y0 = rng.integers(-8, SIZE - 4, 2)
            w, h = rng.integers(6, 28, 2)
            kind = rng.integers(0, 3)
            if kind == 0:
                draw.ellipse((int(x0), int(y0), int(x0 + w), int(y0 + h)), fill=colour)
            elif kind == 1:
                draw.rectangle((int(x0), int(y0), int(x0 + w), int(y0 + h)), fill=colour)
            else:
                draw.polygon([tuple(int(v) for v in rng.integers(-4, SIZE + 4, 2)) for _ in range(3)], fill=colour)
        out[i] = np.asarray(img)
    return out


def _tiny(k: int) -> Callable[[np.random.Generator, int, np.ndarray], np.ndarray]:
    def make(rng: np.random.Generator, n: int, cifar: np.ndarray) -> np.ndarray:
        picks = rng.choice(len(cifar), n, replace=len(cifar) < n)
        out = np.empty((n, SIZE, SIZE, 3), np.uint8)
        for i, j in enumerate(picks):
            small = Image.fromarray(cifar[j]).resize((k, k), Image.Resampling.BOX)  # the photo at k×k pixels
            out[i] = np.asarray(small.resize((SIZE, SIZE), Image.Resampling.BICUBIC))
        return out

    make.__doc__ = f"A CIFAR-10 test image shrunk to {k}×{k}, then resized to 32×32 as an upload would be."
    return make


def blurred_cifar(rng: np.random.Generator, n: int, cifar: np.ndarray) -> np.ndarray:
    """A CIFAR-10 test image under a Gaussian blur of sigma 3 px."""
    picks = rng.choice(len(cifar), n, replace=len(cifar) < n)
    blur = ImageFilter.GaussianBlur(BLUR_SIGMA)
    return np.stack([np.asarray(Image.fromarray(cifar[j]).filter(blur)) for j in picks])


def patch_shuffled_cifar(rng: np.random.Generator, n: int, cifar: np.ndarray) -> np.ndarray:
    """A CIFAR-10 test image cut into 16 patches of 8×8, put back in a random order."""
    picks = rng.choice(len(cifar), n, replace=len(cifar) < n)
    g = SIZE // PATCH
    out = np.empty((n, SIZE, SIZE, 3), np.uint8)
    for i, j in enumerate(picks):
        patches = cifar[j].reshape(g, PATCH, g, PATCH, 3).transpose(0, 2, 1, 3, 4).reshape(g * g, PATCH, PATCH, 3)
        patches = patches[rng.permutation(g * g)]
        out[i] = patches.reshape(g, g, PATCH, PATCH, 3).transpose(0, 2, 1, 3, 4).reshape(SIZE, SIZE, 3)
    return out


# name → (title, maker); the order is the table's.
SETS: dict[str, tuple[str, Callable[[np.random.Generator, int, np.ndarray], np.ndarray]]] = {
    "uniform_noise": ("uniform noise", uniform_noise),
    "gaussian_noise": ("Gaussian noise", gaussian_noise),
    "single_colour": ("single colours", single_colour),
    "blobs_shapes": ("blobs and shapes", blobs_and_shapes),
    "tiny_1x1": ("1×1 image upscaled", _tiny(1)),
    "tiny_2x2": ("2×2 image upscaled", _tiny(2)),
    "tiny_4x4": ("4×4 image upscaled", _tiny(4)),
    "blurred_cifar": ("blurred CIFAR-10 (σ 3 px)", blurred_cifar),
    "patch_shuffled_cifar": ("patch-shuffled CIFAR-10 (8×8)", patch_shuffled_cifar),
}


def make_sets(cifar_test: np.ndarray, n: int = 1000, seed: int = 0,
              names: tuple[str, ...] | None = None) -> dict[str, np.ndarray]:
    """Each named set (all by default) with n images, uint8 NHWC; the same seed gives the same images.

    Each set draws from its own generator (seed, set index), so adding a set changes no other.
    """
    chosen = names or tuple(SETS)
    unknown = [s for s in chosen if s not in SETS]
    if unknown:
        raise ValueError(f"unknown OOD sets {unknown}; valid: {', '.join(SETS)}")
    cifar_test = np.asarray(cifar_test)
    return {name: SETS[name][1](np.random.default_rng([seed, list(SETS).index(name)]), n, cifar_test)
            for name in chosen}
