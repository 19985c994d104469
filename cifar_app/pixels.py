"""Pixels for display: colormaps, nearest-neighbour upscaling, feature-map tiles and attribution
overlays. numpy only (uint8 RGB out), so the app never needs matplotlib.
"""

from __future__ import annotations

import numpy as np

# ------------------------------------------------------------------------------ pixels

# 9 evenly spaced anchors of matplotlib's colormaps (RGB 0-255), interpolated linearly.
COLORMAPS = {
    "viridis": [(68, 1, 84), (71, 45, 123), (59, 82, 139), (44, 114, 142), (33, 145, 140), (40, 174, 128),
                (94, 201, 98), (173, 220, 48), (253, 231, 37)],
    "inferno": [(0, 0, 4), (33, 12, 74), (87, 16, 110), (138, 34, 106), (188, 55, 84), (228, 90, 49),
                (249, 142, 9), (249, 203, 53), (252, 255, 164)],
    "coolwarm": [(59, 76, 192), (98, 130, 234), (141, 176, 254), (185, 208, 249), (221, 220, 220),
                 (245, 196, 172), (244, 152, 122), (221, 95, 75), (180, 4, 38)],
}


def colormap(values: np.ndarray, name: str = "viridis") -> np.ndarray:
    """Values in [0, 1] (clipped; NaN → 0) → uint8 RGB of shape values.shape + (3,)."""
    anchors = np.asarray(COLORMAPS[name], dtype=np.float32)
    v = np.clip(np.nan_to_num(np.asarray(values, dtype=np.float32)), 0.0, 1.0) * (len(anchors) - 1)
    lo = np.floor(v).astype(np.int64).clip(0, len(anchors) - 2)
    frac = (v - lo)[..., None]
    return np.round(anchors[lo] * (1 - frac) + anchors[lo + 1] * frac).astype(np.uint8)


def upscale_nearest(image: np.ndarray, scale: int) -> np.ndarray:
    """Each pixel repeated scale × scale times: (H, W[, C]) → (H·s, W·s[, C]), no smoothing."""
    image = np.asarray(image)
    s = max(int(scale), 1)
    return image.repeat(s, axis=0).repeat(s, axis=1)


def channel_tiles(maps: np.ndarray, scale: int = 4, name: str = "viridis") -> list[np.ndarray]:
    """One colour image per channel of a (C, H, W) stack, each scaled to its own min..max.

    Per-channel scaling shows each channel's pattern; compare strengths with the captions. A flat
    channel (max == min) is drawn at the colormap's low end.
    """
    maps = np.asarray(maps, dtype=np.float32)
    lo = maps.min(axis=(1, 2), keepdims=True)
    span = maps.max(axis=(1, 2), keepdims=True) - lo
    norm = np.divide(maps - lo, span, out=np.zeros_like(maps), where=span > 0)
    return [upscale_nearest(colormap(m, name), scale) for m in norm]


def overlay(image: np.ndarray, shown: np.ndarray, opacity: float, mode: str = "signed", scale: int = 8) -> np.ndarray:
    """An attribution heatmap over an image, both upscaled nearest-neighbour.

    image: uint8 (H, W, 3). shown: explain.to_display output, [-1, 1] for "signed" (blue negative,
    red positive) or [0, 1] for "absolute" (inferno). Each pixel's heat colour is blended in with
    weight opacity × |value|, so pixels without attribution keep the image's own colour.
    """
    if mode not in ("signed", "absolute"):
        raise ValueError(f"mode must be 'signed' or 'absolute', got {mode!r}")
    img = np.asarray(image, dtype=np.float32)
    v = np.nan_to_num(np.asarray(shown, dtype=np.float32))
    if v.shape != img.shape[:2]:
        raise ValueError(f"attribution {v.shape} and image {img.shape[:2]} differ in size")
    heat = colormap((v + 1) / 2, "coolwarm") if mode == "signed" else colormap(v, "inferno")
    w = (float(np.clip(opacity, 0.0, 1.0)) * np.clip(np.abs(v), 0.0, 1.0))[..., None]
    out = np.round(img * (1 - w) + heat.astype(np.float32) * w).astype(np.uint8)
    return upscale_nearest(out, scale)


def heat_image(shown: np.ndarray, mode: str = "signed", scale: int = 8) -> np.ndarray:
    """The attribution map alone as a colour image (coolwarm for signed, inferno for absolute)."""
    v = np.nan_to_num(np.asarray(shown, dtype=np.float32))
    heat = colormap((v + 1) / 2, "coolwarm") if mode == "signed" else colormap(v, "inferno")
    return upscale_nearest(heat, scale)


def dark_share(image: np.ndarray, level: int = 48) -> float:
    """Share of the central half of an image (where CIFAR's object sits) whose pixels' brightest channel
    is below `level` (of 255): how much of the object is near black.

    A black baseline (Integrated Gradients, Occlusion) treats such pixels as already "absent", so they
    get little attribution whatever their role; the Attributions page says so when this is large.
    """
    img = np.asarray(image)
    if not img.size:
        return 0.0
    h, w = img.shape[:2]
    centre = img[h // 4: h - h // 4, w // 4: w - w // 4]
    return float((centre.max(axis=-1) < level).mean())
