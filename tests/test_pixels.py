"""cifar_app.pixels: colormaps, upscaling, tiles and overlays."""

from __future__ import annotations

import numpy as np
import pytest

from cifar_app import pixels


def test_colormap_ends_and_shape():
    out = pixels.colormap(np.array([[0.0, 1.0], [np.nan, 2.0]]))
    assert out.shape == (2, 2, 3) and out.dtype == np.uint8
    assert out[0, 0].tolist() == [68, 1, 84] and out[0, 1].tolist() == [253, 231, 37]
    assert out[1, 0].tolist() == [68, 1, 84] and out[1, 1].tolist() == [253, 231, 37]

def test_upscale_nearest_repeats_pixels():
    img = np.arange(12, dtype=np.uint8).reshape(2, 2, 3)
    big = pixels.upscale_nearest(img, 3)
    assert big.shape == (6, 6, 3)
    assert (big[:3, :3] == img[0, 0]).all() and (big[3:, 3:] == img[1, 1]).all()

def test_channel_tiles_scale_each_channel():
    maps = np.stack([np.arange(16, dtype=np.float32).reshape(4, 4), np.full((4, 4), 5.0, np.float32)])
    tiles = pixels.channel_tiles(maps, scale=2)
    assert len(tiles) == 2 and tiles[0].shape == (8, 8, 3)
    assert tiles[0][0, 0].tolist() == [68, 1, 84] and tiles[0][-1, -1].tolist() == [253, 231, 37]
    assert (tiles[1] == [68, 1, 84]).all()  # a flat channel

def test_overlay_leaves_zero_attribution_untouched():
    img = np.full((4, 4, 3), 100, np.uint8)
    shown = np.zeros((4, 4), np.float32)
    shown[0, 0] = 1.0
    out = pixels.overlay(img, shown, opacity=1.0, mode="signed", scale=1)
    assert (out[1:, 1:] == 100).all()
    assert out[0, 0].tolist() == [180, 4, 38]  # full positive = coolwarm's red end
    half = pixels.overlay(img, shown, opacity=0.5, mode="signed", scale=1)
    assert half[0, 0].tolist() == [140, 52, 69]
    assert pixels.overlay(img, shown, 0.0, "absolute", scale=2).shape == (8, 8, 3)
    with pytest.raises(ValueError):
        pixels.overlay(img, shown[:2], 1.0)


def test_dark_share_counts_near_black_pixels_in_the_centre():
    img = np.full((8, 8, 3), 200, dtype=np.uint8)
    assert pixels.dark_share(img) == 0.0
    img[:, :2] = 0  # a black border is not the object: outside the central half
    assert pixels.dark_share(img) == 0.0
    img[2:4, 2:6] = 10  # half of the central 4×4 near black
    img[2, 2] = (10, 10, 90)  # one bright channel is enough to count as visible
    assert pixels.dark_share(img) == 7 / 16
