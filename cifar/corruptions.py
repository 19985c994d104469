"""CIFAR-10-C corruptions (Hendrycks & Dietterich, ICLR 2019) in numpy and PIL only, at 5 severities.

All 15 benchmark corruptions, with the CIFAR parameters of the paper's `make_cifar_c.py`. The app
runs them live, and the hosted app must not import SciPy, scikit-image or OpenCV, so every filter the
reference borrows from them is written here in numpy (Gaussian filters, the defocus disk, bilinear
zoom, affine warp, map_coordinates). Images are uint8 (N, 32, 32, 3) in and out, like the reference's
saved arrays (it casts with np.uint8, which truncates; so does `corrupt`).

Deterministic: image i of a batch draws from its own generator seeded by (seed, corruption, severity,
its test index), so one image corrupted alone on the live page equals the same image in the sweep.

Where we differ from the reference (also in the README):

- motion_blur and snow: the reference calls ImageMagick's MotionBlurImage. Ours is its kernel
  rebuilt: a one-sided line of 2·radius+1 taps along the angle, Gaussian weights exp(-i²/2σ²) over
  the tap distance i, each tap rounded to the nearest pixel, edge pixels repeated. ImageMagick's
  exact sub-pixel handling and virtual-pixel rules are not reproduced.
- frost: the reference blends crops of six photographs of frost (not shipped here). Ours blends a
  procedural texture: a plasma fractal plus random ice streaks (motion-blurred sparse crystals),
  tinted pale blue, at the reference's (image, frost) weights. It looks like frost; it is not the
  same picture, so frost numbers are the least comparable to published CIFAR-10-C results.
- defocus_blur, glass_blur, zoom_blur, elastic_transform, snow's zoom: the reference uses OpenCV
  (GaussianBlur, filter2D, getAffineTransform, warpAffine, cvtColor), scikit-image (gaussian) and
  SciPy (zoom, map_coordinates). Ours reimplements each with the same border rules (reflect-101 for
  OpenCV, edge for skimage's default, half-sample symmetric for SciPy's "reflect"), linear
  interpolation; differences are float rounding.
- glass_blur: the reference's pixel "swap" is, through numpy views, a copy from a random
  neighbour up or left; we reproduce what it does (see `_glass_blur`), not what it says.
- impulse_noise: scikit-image's random_noise(mode="s&p") re-done: each value (per channel) is
  replaced with probability `amount`, half by 0 and half by 1.
- brightness: +V in HSV done exactly without a colour-space round trip (HSV with the same hue and
  saturation scales R, G and B by V'/V).
- Random draws use numpy's Generator (PCG64), not the reference's global RandomState, so our images
  are not the published CIFAR-10-C arrays pixel for pixel; the distributions are the same.
"""

from __future__ import annotations

import io
import zlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
from PIL import Image

SEVERITIES = (1, 2, 3, 4, 5)
VERSION = 1  # bump when a corruption's output changes: cifar.robustness then recomputes its saved parts
FAMILIES = ("noise", "blur", "weather", "digital")
# Our test images are already JPEG (quality 75); see cifar/data.py KNOWN_COPIES.


@dataclass(frozen=True)
class Corruption:
    """A registered corruption: its batch function, family and the reference's parameter per severity."""

    name: str
    title: str
    family: str
    params: tuple  # one entry per severity 1..5, as make_cifar_c.py spells them
    run: Callable[[np.ndarray, object, list[np.random.Generator]], np.ndarray]  # (float N,H,W,3 in [0,1], param, rngs)
    deviation: str  # "" when it follows the reference's maths exactly


CORRUPTIONS: dict[str, Corruption] = {}


def register_corruption(name: str, *, title: str, family: str, params: Sequence, deviation: str = "") -> Callable:
    """Decorator: register a corruption under `name`. The CLI, the page and the tests read this registry."""
    if family not in FAMILIES:
        raise ValueError(f"unknown family {family!r}; valid: {', '.join(FAMILIES)}")
    if len(params) != len(SEVERITIES):
        raise ValueError(f"{name}: need one parameter per severity {SEVERITIES}, got {len(params)}")

    def wrap(run):
        if name in CORRUPTIONS:
            raise ValueError(f"corruption {name!r} is registered twice")
        CORRUPTIONS[name] = Corruption(name, title, family, tuple(params), run, deviation)
        return run

    return wrap


def get_corruption(name: str) -> Corruption:
    """A registered corruption; ValueError names the valid ones."""
    if name not in CORRUPTIONS:
        raise ValueError(f"unknown corruption {name!r}; valid: {', '.join(CORRUPTIONS)}")
    return CORRUPTIONS[name]


def list_corruptions() -> list[str]:
    """Names in the benchmark's order (noise, blur, weather, digital)."""
    return list(CORRUPTIONS)


def _rngs(seed: int, name: str, severity: int, indices: np.ndarray) -> list[np.random.Generator]:
    key = zlib.crc32(name.encode())  # a stable number per name (hash() is salted per process)
    return [np.random.default_rng([int(seed), key, int(severity), int(i)]) for i in indices]


def corrupt(images: np.ndarray, name: str, severity: int, *, seed: int = 0,
            indices: Sequence[int] | np.ndarray | None = None) -> np.ndarray:
    """Corrupt uint8 images (N, H, W, 3) or one (H, W, 3); same shape and dtype back.

    `indices` (default 0..N-1) are the images' test indices: image i's randomness depends only on
    (seed, name, severity, indices[i]), not on the batch it came in.
    """
    spec = get_corruption(name)
    if severity not in SEVERITIES:
        raise ValueError(f"severity must be one of {SEVERITIES}, got {severity!r}")
    x = np.asarray(images)
    single = x.ndim == 3
    if single:
        x = x[None]
    if x.dtype != np.uint8 or x.ndim != 4 or x.shape[-1] != 3:
        raise ValueError(f"expected uint8 images (N, H, W, 3) or (H, W, 3), got {np.asarray(images).dtype} "
                         f"{np.asarray(images).shape}")
    idx = np.arange(len(x)) if indices is None else np.asarray(indices, dtype=np.int64).reshape(-1)
    if len(idx) != len(x):
        raise ValueError(f"got {len(idx)} indices for {len(x)} images")
    out = spec.run(x.astype(np.float64) / 255.0, spec.params[severity - 1], _rngs(seed, name, severity, idx))
    # Truncation, as the reference's np.uint8(...); the 1e-6 keeps an exact k/255 from landing on k-1.
    out = np.uint8(np.clip(out, 0.0, 1.0) * 255.0 + 1e-6)
    return out[0] if single else out


# ------------------------------------------------------------------------------ numpy filters


def _pad(x: np.ndarray, r: int, mode: str, axes=(1, 2)) -> np.ndarray:
    """Pad H and W of (N, H, W, ...) by r. mode: 'edge' (skimage default 'nearest'), 'reflect101'
    (OpenCV's default, numpy 'reflect'), 'symmetric' (SciPy's 'reflect')."""
    width = [(0, 0)] * x.ndim
    for a in axes:
        width[a] = (r, r)
    np_mode = {"edge": "edge", "reflect101": "reflect", "symmetric": "symmetric"}[mode]
    return np.pad(x, width, mode=np_mode)


def gaussian_kernel(sigma: float, truncate: float = 4.0) -> np.ndarray:
    """SciPy's 1-D Gaussian: radius int(truncate·σ + 0.5), weights exp(-x²/2σ²) normalised."""
    if sigma <= 0:
        return np.ones(1)
    r = int(truncate * sigma + 0.5)
    t = np.arange(-r, r + 1, dtype=np.float64)
    k = np.exp(-0.5 * (t / sigma) ** 2)
    return k / k.sum()


def _correlate1d(x: np.ndarray, k: np.ndarray, axis: int, mode: str) -> np.ndarray:
    r = len(k) // 2
    if r == 0:
        return x * k[0]
    p = _pad(x, r, mode, axes=(axis,))
    n = x.shape[axis]
    out = np.zeros_like(x, dtype=np.float64)
    for j, w in enumerate(k):
        out += w * np.take(p, np.arange(j, j + n), axis=axis)
    return out


def gaussian_filter(x: np.ndarray, sigma: float, *, mode: str = "edge", truncate: float = 4.0) -> np.ndarray:
    """Gaussian blur over H and W of (N, H, W[, C]) floats (skimage.filters.gaussian / scipy's)."""
    k = gaussian_kernel(sigma, truncate)
    return _correlate1d(_correlate1d(x, k, 1, mode), k, 2, mode)


def filter2d(x: np.ndarray, kernel: np.ndarray, mode: str = "reflect101") -> np.ndarray:
    """2-D correlation of (N, H, W, C) with a centred odd kernel (cv2.filter2D, reflect-101 border)."""
    r = kernel.shape[0] // 2
    p = _pad(x, r, mode)
    h, w = x.shape[1:3]
    out = np.zeros_like(x, dtype=np.float64)
    for (i, j), v in np.ndenumerate(kernel):
        if v != 0:
            out += v * p[:, i:i + h, j:j + w]
    return out


def _sample(img: np.ndarray, rows: np.ndarray, cols: np.ndarray, mode: str) -> np.ndarray:
    """Bilinear sample (H, W, C) at float coordinates (H', W'); out-of-range by the border `mode`."""
    h, w = img.shape[:2]

    def fold(i, n):
        if mode == "edge":
            return np.clip(i, 0, n - 1)
        if mode == "reflect101":  # ... 2 1 | 0 1 2 ... n-1 | n-2 ...
            period = 2 * (n - 1)
            i = np.mod(i, period)
            return np.where(i >= n, period - i, i)
        period = 2 * n  # symmetric: ... 1 0 | 0 1 ... n-1 | n-1 n-2 ...
        i = np.mod(i, period)
        return np.where(i >= n, period - 1 - i, i)

    r0, c0 = np.floor(rows).astype(np.int64), np.floor(cols).astype(np.int64)
    fr, fc = (rows - r0)[..., None], (cols - c0)[..., None]
    r0f, r1f, c0f, c1f = fold(r0, h), fold(r0 + 1, h), fold(c0, w), fold(c0 + 1, w)
    top = img[r0f, c0f] * (1 - fc) + img[r0f, c1f] * fc
    bottom = img[r1f, c0f] * (1 - fc) + img[r1f, c1f] * fc
    return top * (1 - fr) + bottom * fr


def clipped_zoom(img: np.ndarray, zoom: float) -> np.ndarray:
    """Zoom the centre of (H, W, C) by `zoom` and crop back to H×W (the reference's clipped_zoom:
    scipy.ndimage.zoom order 1 of the centre crop ceil(H/zoom))."""
    h = img.shape[0]
    ch = int(np.ceil(h / zoom))
    top = (h - ch) // 2
    crop = img[top:top + ch, top:top + ch]
    n_out = int(round(ch * zoom))
    # scipy.ndimage.zoom (grid_mode=False): output o samples input o·(in-1)/(out-1).
    coords = np.arange(n_out) * ((ch - 1) / (n_out - 1) if n_out > 1 else 0.0)
    trim = (n_out - h) // 2
    coords = coords[trim:trim + h]
    rr, cc = np.meshgrid(coords, coords, indexing="ij")
    return _sample(crop, rr, cc, "edge")


def motion_kernel_taps(radius: float, sigma: float, angle_deg: float) -> list[tuple[int, int, float]]:
    """ImageMagick's motion-blur kernel as (row offset, column offset, weight) taps: 2·radius+1 points
    along `angle` from the pixel, weights exp(-i²/2σ²) normalised (one-sided)."""
    width = 2 * int(np.ceil(radius)) + 1
    i = np.arange(width, dtype=np.float64)
    weights = np.exp(-(i ** 2) / (2 * sigma ** 2))
    weights /= weights.sum()
    a = np.deg2rad(angle_deg)
    dr, dc = np.rint(i * np.sin(a)).astype(int), np.rint(i * np.cos(a)).astype(int)
    return [(int(r), int(c), float(w)) for r, c, w in zip(dr, dc, weights)]


def motion_blur_image(img: np.ndarray, radius: float, sigma: float, angle_deg: float) -> np.ndarray:
    """Blur (H, W, C) along a line (see `motion_kernel_taps`), edge pixels repeated."""
    taps = motion_kernel_taps(radius, sigma, angle_deg)
    r = max(max(abs(t[0]), abs(t[1])) for t in taps)
    p = np.pad(img, ((r, r), (r, r), (0, 0)), mode="edge")
    h, w = img.shape[:2]
    out = np.zeros(img.shape, dtype=np.float64)
    for dr, dc, wt in taps:
        out += wt * p[r + dr:r + dr + h, r + dc:r + dc + w]
    return out


def plasma_fractal(rng: np.random.Generator, mapsize: int = 32, wibbledecay: float = 3.0) -> np.ndarray:
    """A (mapsize, mapsize) height map in [0, 1] by the diamond-square algorithm (the reference's)."""
    if mapsize & (mapsize - 1):
        raise ValueError(f"mapsize must be a power of two, got {mapsize}")
    a = np.empty((mapsize, mapsize), dtype=np.float64)
    a[0, 0] = 0
    step, wibble = mapsize, 100.0

    def wibbled_mean(arr):
        return arr / 4 + wibble * rng.uniform(-wibble, wibble, arr.shape)

    while step >= 2:
        half = step // 2
        corners = a[0:mapsize:step, 0:mapsize:step]
        sq = corners + np.roll(corners, -1, axis=0)
        sq = sq + np.roll(sq, -1, axis=1)
        a[half:mapsize:step, half:mapsize:step] = wibbled_mean(sq)
        dr = a[half:mapsize:step, half:mapsize:step]
        ul = a[0:mapsize:step, 0:mapsize:step]
        a[0:mapsize:step, half:mapsize:step] = wibbled_mean(dr + np.roll(dr, 1, axis=0) + ul + np.roll(ul, -1, axis=1))
        a[half:mapsize:step, 0:mapsize:step] = wibbled_mean(dr + np.roll(dr, 1, axis=1) + ul + np.roll(ul, -1, axis=0))
        step //= 2
        wibble /= wibbledecay
    a -= a.min()
    return a / a.max()


def _gray(x: np.ndarray) -> np.ndarray:
    """cv2.COLOR_RGB2GRAY on (..., 3): 0.299 R + 0.587 G + 0.114 B, keeping a channel axis."""
    return (x @ np.array([0.299, 0.587, 0.114]))[..., None]


def _per_image(x: np.ndarray, rngs, fn) -> np.ndarray:
    return np.stack([fn(img, rng) for img, rng in zip(x, rngs)]) if len(x) else x


# ------------------------------------------------------------------------------ noise


@register_corruption("gaussian_noise", title="Gaussian noise", family="noise", params=(0.04, 0.06, 0.08, 0.09, 0.10))
def _gaussian_noise(x, c, rngs):
    return x + np.stack([r.normal(0.0, c, x.shape[1:]) for r in rngs])


@register_corruption("shot_noise", title="Shot noise", family="noise", params=(500, 250, 100, 75, 50))
def _shot_noise(x, c, rngs):
    return np.stack([r.poisson(img * c) for img, r in zip(x, rngs)]) / c


@register_corruption("impulse_noise", title="Impulse noise", family="noise", params=(0.01, 0.02, 0.03, 0.05, 0.07),
                     deviation="scikit-image's salt-and-pepper re-done in numpy (same rule)")
def _impulse_noise(x, c, rngs):
    def one(img, r):
        hit = r.random(img.shape) < c
        salt = r.random(img.shape) < 0.5
        return np.where(hit, salt.astype(img.dtype), img)

    return _per_image(x, rngs, one)


# ------------------------------------------------------------------------------ blur


def disk_kernel(radius: float, alias_blur: float) -> np.ndarray:
    """The reference's defocus disk: a 17×17 aliased disk, normalised, then a 3×3 Gaussian (σ = alias_blur)."""
    t = np.arange(-8, 9)
    xx, yy = np.meshgrid(t, t)
    d = ((xx ** 2 + yy ** 2) <= radius ** 2).astype(np.float64)
    d /= d.sum()
    g = np.exp(-(np.arange(-1, 2) ** 2) / (2 * alias_blur ** 2))
    g /= g.sum()
    return filter2d(d[None, :, :, None], np.outer(g, g))[0, :, :, 0]  # cv2.GaussianBlur: reflect-101 border


@register_corruption("defocus_blur", title="Defocus blur", family="blur",
                     params=((0.3, 0.4), (0.4, 0.5), (0.5, 0.6), (1, 0.2), (1.5, 0.1)),
                     deviation="OpenCV's GaussianBlur and filter2D re-done in numpy (reflect-101 border)")
def _defocus_blur(x, c, rngs):
    return filter2d(x, disk_kernel(*c))


def glass_shuffle(y: np.ndarray, offsets: np.ndarray, delta: int) -> np.ndarray:
    """The glass blur's local shuffle of uint8 (N, H, W, C): offsets (N, iterations, H-2δ, W-2δ, 2)
    hold (dx, dy) for the pixels (H-δ … δ+1) × (W-δ … δ+1), in the reference's visiting order."""
    n, h, w = y.shape[:3]
    y = y.copy()
    rows, cols = np.arange(h - delta, delta, -1), np.arange(w - delta, delta, -1)
    b = np.arange(n)[:, None, None]
    hh, ww = np.meshgrid(rows, cols, indexing="ij")
    for it in range(offsets.shape[1]):
        dx, dy = offsets[:, it, :, :, 0], offsets[:, it, :, :, 1]
        y[b, hh, ww] = y[b, hh + dy, ww + dx]  # fancy indexing reads a copy first: a gather
    return y


@register_corruption("glass_blur", title="Glass blur", family="blur",
                     params=((0.05, 1, 1), (0.25, 1, 1), (0.4, 1, 1), (0.25, 1, 2), (0.4, 1, 2)),
                     deviation="scikit-image's gaussian re-done in numpy (edge border)")
def _glass_blur(x, c, rngs):
    sigma, delta, iterations = c
    n, h, w = x.shape[:3]
    y = np.uint8(gaussian_filter(x, sigma) * 255)
    # The reference's "local shuffle" walks the pixels from the bottom-right and writes
    # `x[h, w], x[h', w'] = x[h', w'], x[h, w]` with (h', w') = (h + dy, w + dx), dx, dy in
    # [-delta, delta) (randint excludes the top). On a numpy array those are views, so it is not a
    # swap: x[h, w] takes the value at (h', w') and (h', w') keeps its own. The source is always
    # above or left of (h, w), not yet visited, so each pass is a gather from the image before it;
    # that is what we do (a real swap would drag pixels across the image and is far harsher).
    offsets = np.stack([r.integers(-delta, delta, size=(iterations, h - 2 * delta, w - 2 * delta, 2)) for r in rngs])
    y = glass_shuffle(y, offsets, delta)
    return gaussian_filter(y / 255.0, sigma)


@register_corruption("motion_blur", title="Motion blur", family="blur",
                     params=((6, 1), (6, 1.5), (6, 2), (8, 2), (9, 2.5)),
                     deviation="ImageMagick's MotionBlurImage rebuilt in numpy: one-sided Gaussian line of "
                               "2·radius+1 taps rounded to whole pixels, edge border")
def _motion_blur(x, c, rngs):
    # The reference round-trips through a PNG (uint8) before blurring.
    x = np.floor(x * 255.0 + 1e-6) / 255.0
    return _per_image(x, rngs, lambda img, r: motion_blur_image(img, c[0], c[1], r.uniform(-45, 45)))


@register_corruption("zoom_blur", title="Zoom blur", family="blur",
                     params=tuple(tuple(np.arange(1, top, 0.01).round(2)) for top in (1.06, 1.11, 1.16, 1.21, 1.26)),
                     deviation="scipy.ndimage.zoom (order 1) re-done in numpy")
def _zoom_blur(x, c, rngs):
    def one(img, _r):
        out = np.zeros_like(img, dtype=np.float64)
        for z in c:
            out += clipped_zoom(img, float(z))
        return (img + out) / (len(c) + 1)

    return _per_image(x, rngs, one)


# ------------------------------------------------------------------------------ weather


@register_corruption("snow", title="Snow", family="weather",
                     params=((0.1, 0.2, 1, 0.6, 8, 3, 0.95), (0.1, 0.2, 1, 0.5, 10, 4, 0.9),
                             (0.15, 0.3, 1.75, 0.55, 10, 4, 0.9), (0.25, 0.3, 2.25, 0.6, 12, 6, 0.85),
                             (0.3, 0.3, 1.25, 0.65, 14, 12, 0.8)),
                     deviation="the snow layer's motion blur is our ImageMagick rebuild (see motion_blur); "
                               "OpenCV's grey conversion and SciPy's zoom re-done in numpy")
def _snow(x, c, rngs):
    loc, scale, zoom, threshold, radius, sigma, keep = c

    def one(img, r):
        layer = r.normal(loc, scale, img.shape[:2])[..., None]
        layer = clipped_zoom(layer, zoom)
        layer[layer < threshold] = 0
        layer = np.uint8(np.clip(layer, 0, 1) * 255) / 255.0  # the reference's 8-bit PNG round trip
        layer = np.floor(motion_blur_image(layer, radius, sigma, r.uniform(-135, -45)) * 255 + 1e-6) / 255.0
        img = keep * img + (1 - keep) * np.maximum(img, _gray(img) * 1.5 + 0.5)
        return img + layer + np.rot90(layer, k=2)

    return _per_image(x, rngs, one)


def frost_texture(rng: np.random.Generator, size: int = 32) -> np.ndarray:
    """A procedural frost texture (size, size, 3) in [0, 1]: a plasma fractal haze plus ice streaks
    (sparse bright crystals motion-blurred in a few directions), tinted pale blue."""
    haze = plasma_fractal(rng, 64, 1.6)[:size, :size, None]
    streaks = np.zeros((size, size, 1))
    for angle in rng.uniform(0, 180, size=4):  # each set of crystals grows needles in its own direction
        crystals = (rng.random((size, size, 1)) < 0.02).astype(np.float64)
        streaks += motion_blur_image(crystals, int(rng.integers(2, 5)), 1.5, angle)
    streaks = np.clip(streaks * 3.0, 0, 1)
    grey = np.clip(0.6 * haze + 0.7 * streaks, 0, 1)
    return grey * np.array([0.84, 0.92, 1.0])  # frost photos are bluish white


@register_corruption("frost", title="Frost", family="weather",
                     params=((1, 0.2), (1, 0.3), (0.9, 0.4), (0.85, 0.4), (0.75, 0.45)),
                     deviation="procedural frost texture (plasma haze + motion-blurred crystals) instead of the "
                               "reference's six frost photographs; same blend weights")
def _frost(x, c, rngs):
    return _per_image(x, rngs, lambda img, r: c[0] * img + c[1] * frost_texture(r, img.shape[0]))


@register_corruption("fog", title="Fog", family="weather",
                     params=((0.2, 3), (0.5, 3), (0.75, 2.5), (1, 2), (1.5, 1.75)))
def _fog(x, c, rngs):
    def one(img, r):
        m = img.max()
        h, w = img.shape[:2]
        size = 1 << int(np.ceil(np.log2(max(h, w, 2))))
        img = img + c[0] * plasma_fractal(r, size, c[1])[:h, :w, None]
        return img * m / (m + c[0])

    return _per_image(x, rngs, one)


# ------------------------------------------------------------------------------ digital


@register_corruption("brightness", title="Brightness", family="digital", params=(0.05, 0.1, 0.15, 0.2, 0.3),
                     deviation="HSV value shift done without the colour-space round trip (same result)")
def _brightness(x, c, rngs):
    v = x.max(axis=-1, keepdims=True)
    v2 = np.clip(v + c, 0, 1)
    # Same hue and saturation, value v → v2: every channel scales by v2/v (a black pixel becomes grey v2).
    return np.where(v > 0, x * (v2 / np.where(v > 0, v, 1)), v2)


@register_corruption("contrast", title="Contrast", family="digital", params=(0.75, 0.5, 0.4, 0.3, 0.15))
def _contrast(x, c, rngs):
    means = x.mean(axis=(1, 2), keepdims=True)
    return (x - means) * c + means


@register_corruption("elastic_transform", title="Elastic", family="digital",
                     params=tuple((32 * a, 32 * s, 32 * d) for a, s, d in
                                  ((0, 0, 0.08), (0.05, 0.2, 0.07), (0.08, 0.06, 0.06), (0.1, 0.04, 0.05),
                                   (0.1, 0.03, 0.03))),
                     deviation="OpenCV's affine warp (reflect-101), scikit-image's gaussian and SciPy's "
                               "map_coordinates (order 1, reflect) re-done in numpy")
def _elastic(x, c, rngs):
    alpha, sigma, affine = c

    def one(img, r):
        h, w = img.shape[:2]
        centre = np.float32((h, w)) // 2
        side = min(h, w) // 3
        pts1 = np.float32([centre + side, [centre[0] + side, centre[1] - side], centre - side])
        pts2 = pts1 + r.uniform(-affine, affine, size=pts1.shape).astype(np.float32)
        # cv2.getAffineTransform(pts1, pts2): M with pts2 = M · [pts1, 1]; points are (x, y).
        m = np.linalg.solve(np.hstack([pts1, np.ones((3, 1))]).astype(np.float64), pts2.astype(np.float64)).T
        inv = np.linalg.inv(np.vstack([m, [0, 0, 1]]))[:2]
        yy, xx = np.mgrid[0:h, 0:w].astype(np.float64)
        src_x = inv[0, 0] * xx + inv[0, 1] * yy + inv[0, 2]
        src_y = inv[1, 0] * xx + inv[1, 1] * yy + inv[1, 2]
        img = _sample(img.astype(np.float32), src_y, src_x, "reflect101").astype(np.float32)
        dx = (gaussian_filter(r.uniform(-1, 1, size=(1, h, w)), sigma, mode="symmetric", truncate=3)[0]
              * alpha).astype(np.float32)
        dy = (gaussian_filter(r.uniform(-1, 1, size=(1, h, w)), sigma, mode="symmetric", truncate=3)[0]
              * alpha).astype(np.float32)
        return _sample(img, yy + dy, xx + dx, "symmetric")

    return _per_image(x, rngs, one)


def _pil_each(x: np.ndarray, fn) -> np.ndarray:
    """Apply a PIL function to each image of a float batch (via uint8, as the reference's PIL images)."""
    u8 = np.uint8(np.clip(x, 0, 1) * 255.0 + 0.5)
    return np.stack([np.asarray(fn(Image.fromarray(img)), dtype=np.float64) for img in u8]) / 255.0


@register_corruption("pixelate", title="Pixelate", family="digital", params=(0.95, 0.9, 0.85, 0.75, 0.65))
def _pixelate(x, c, rngs):
    h, w = x.shape[1:3]

    def one(im: Image.Image) -> Image.Image:
        return im.resize((int(w * c), int(h * c)), Image.BOX).resize((w, h), Image.BOX)

    return _pil_each(x, one)


def jpeg(image: np.ndarray, quality: int) -> np.ndarray:
    """One uint8 (H, W, 3) image through PIL's JPEG encoder and decoder at `quality`."""
    buf = io.BytesIO()
    Image.fromarray(image).save(buf, "JPEG", quality=int(quality))
    buf.seek(0)
    return np.asarray(Image.open(buf).convert("RGB"))


@register_corruption("jpeg_compression", title="JPEG", family="digital", params=(80, 65, 58, 50, 40))
def _jpeg(x, c, rngs):
    return _pil_each(x, lambda im: Image.fromarray(jpeg(np.asarray(im), c)))
