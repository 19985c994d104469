"""The CIFAR-10-C corruptions: shape, dtype, severity, determinism, and the reference's maths where we
re-did a SciPy/OpenCV filter in numpy (checked against SciPy, which the dev install has)."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from cifar import corruptions as C

BUNDLE = Path(__file__).resolve().parents[1] / "checkpoints" / "demo_images.npz"


@pytest.fixture(scope="module")
def images() -> np.ndarray:
    """16 real test images from the shipped demo bundle (natural images: blur and noise act as on CIFAR)."""
    with np.load(BUNDLE) as z:
        return z["images"][::160][:16].copy()


def test_the_registry_covers_the_benchmark():
    assert len(C.CORRUPTIONS) == 15
    assert {c.family for c in C.CORRUPTIONS.values()} == set(C.FAMILIES)
    for c in C.CORRUPTIONS.values():
        assert len(c.params) == 5
    with pytest.raises(ValueError, match="valid"):
        C.get_corruption("rain")


@pytest.mark.parametrize("name", C.list_corruptions())
def test_shape_dtype_and_determinism(name, images):
    out = C.corrupt(images, name, 3, seed=7, indices=np.arange(100, 116))
    assert out.shape == images.shape and out.dtype == np.uint8
    again = C.corrupt(images, name, 3, seed=7, indices=np.arange(100, 116))
    np.testing.assert_array_equal(out, again)
    # one image alone (H, W, 3) equals the same image inside the batch: randomness is per test index
    single = C.corrupt(images[5], name, 3, seed=7, indices=[105])
    assert single.shape == images[5].shape and single.dtype == np.uint8
    np.testing.assert_array_equal(single, out[5])


@pytest.mark.parametrize("name", [n for n in C.list_corruptions() if n not in ("brightness", "contrast",
                                                                                 "defocus_blur", "pixelate",
                                                                                 "jpeg_compression", "zoom_blur")])
def test_random_corruptions_change_with_the_seed(name, images):
    a = C.corrupt(images, name, 5, seed=1)
    b = C.corrupt(images, name, 5, seed=2)
    assert not np.array_equal(a, b)


def _distance(images, name, severity) -> float:
    out = C.corrupt(images, name, severity, seed=0)
    return float(np.abs(out.astype(np.float64) - images).mean())


@pytest.mark.parametrize("name", [n for n in C.list_corruptions() if n != "elastic_transform"])
def test_severity_5_moves_further_than_severity_1(name, images):
    assert _distance(images, name, 5) > _distance(images, name, 1)


def test_elastic_pixel_distance_follows_the_reference_parameters(images):
    """The reference's elastic parameters shrink the affine jitter with severity (2.56 → 0.96 px) while
    the local warp grows: severity 5 moves pixels less far on average, which is the reference's
    behaviour, not a bug. The local displacement (alpha · smoothed noise) must grow."""
    assert _distance(images, "elastic_transform", 5) < _distance(images, "elastic_transform", 1)
    rng = np.random.default_rng(0)
    field = rng.uniform(-1, 1, size=(200, 32, 32))
    strength = [float(np.abs(C.gaussian_filter(field, s, mode="symmetric", truncate=3)).mean() * a)
                for a, s, _ in C.get_corruption("elastic_transform").params]
    assert strength[-1] > strength[1] > strength[0] == 0


@pytest.mark.parametrize("severity", C.SEVERITIES)
def test_jpeg_equals_pil_at_its_quality(severity, images):
    q = C.get_corruption("jpeg_compression").params[severity - 1]
    out = C.corrupt(images, "jpeg_compression", severity)
    for img, got in zip(images, out):
        buf = io.BytesIO()
        Image.fromarray(img).save(buf, "JPEG", quality=q)
        np.testing.assert_array_equal(got, np.asarray(Image.open(io.BytesIO(buf.getvalue())).convert("RGB")))


def test_bad_input_is_refused(images):
    with pytest.raises(ValueError, match="uint8"):
        C.corrupt(images.astype(np.float32), "fog", 1)
    with pytest.raises(ValueError, match="severity"):
        C.corrupt(images, "fog", 6)
    with pytest.raises(ValueError, match="indices"):
        C.corrupt(images, "fog", 1, indices=[1, 2])


# ---------------------------------------------------------------- the numpy filters against SciPy

scipy_ndimage = pytest.importorskip("scipy.ndimage")


@pytest.mark.parametrize("sigma,mode,scipy_mode,truncate", [(0.4, "edge", "nearest", 4.0), (1.2, "edge", "nearest", 4.0),
                                                            (6.4, "symmetric", "reflect", 3.0)])
def test_gaussian_filter_matches_scipy(sigma, mode, scipy_mode, truncate):
    x = np.random.default_rng(0).random((2, 32, 32, 3))
    ours = C.gaussian_filter(x, sigma, mode=mode, truncate=truncate)
    ref = np.stack([scipy_ndimage.gaussian_filter(img, sigma=(sigma, sigma, 0), mode=scipy_mode, truncate=truncate)
                    for img in x])
    np.testing.assert_allclose(ours, ref, atol=1e-12)


@pytest.mark.parametrize("zoom", [1.01, 1.06, 1.26, 2.25])
def test_clipped_zoom_matches_scipy_zoom(zoom):
    img = np.random.default_rng(1).random((32, 32, 3))
    h = 32
    ch = int(np.ceil(h / zoom))
    top = (h - ch) // 2
    ref = scipy_ndimage.zoom(img[top:top + ch, top:top + ch], (zoom, zoom, 1), order=1)
    trim = (ref.shape[0] - h) // 2
    np.testing.assert_allclose(C.clipped_zoom(img, zoom), ref[trim:trim + h, trim:trim + h], atol=1e-9)


def test_filter2d_matches_scipy_correlate_with_reflect101():
    x = np.random.default_rng(2).random((1, 32, 32, 1))
    k = C.disk_kernel(1.5, 0.1)
    ref = scipy_ndimage.correlate(x[0, :, :, 0], k, mode="mirror")  # SciPy's "mirror" is OpenCV's reflect-101
    np.testing.assert_allclose(C.filter2d(x, k)[0, :, :, 0], ref, atol=1e-12)


def test_glass_shuffle_does_what_the_reference_loop_does():
    """The reference's swap statement on numpy views, run literally, equals our gather."""
    rng = np.random.default_rng(3)
    y = rng.integers(0, 256, size=(1, 32, 32, 3), dtype=np.uint8)
    offsets = rng.integers(-1, 1, size=(1, 2, 30, 30, 2))
    x = y[0].copy()
    for it in range(2):
        for i, h in enumerate(range(31, 1, -1)):
            for j, w in enumerate(range(31, 1, -1)):
                dx, dy = offsets[0, it, i, j]
                hp, wp = h + dy, w + dx
                x[h, w], x[hp, wp] = x[hp, wp], x[h, w]
    np.testing.assert_array_equal(C.glass_shuffle(y, offsets, 1)[0], x)


def test_brightness_is_the_hsv_value_shift():
    import colorsys

    x = np.random.default_rng(4).random((1, 8, 8, 3))
    x[0, 0, 0] = 0  # a black pixel becomes grey
    out = C.CORRUPTIONS["brightness"].run(x, 0.2, [])
    for (r, g, b), got in zip(x.reshape(-1, 3), out.reshape(-1, 3)):
        h, s, v = colorsys.rgb_to_hsv(r, g, b)
        np.testing.assert_allclose(got, colorsys.hsv_to_rgb(h, s, min(v + 0.2, 1.0)), atol=1e-12)
