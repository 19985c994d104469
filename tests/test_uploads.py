"""Tests for cifar_app.uploads: every upload case is generated in memory with Pillow."""

import io
import struct
import time
import zlib

import numpy as np
import pytest
from PIL import Image, ImageFile

from cifar_app.uploads import BACKGROUND, ImageError, load_upload, to_model_input, to_rgb

RNG = np.random.default_rng(0)
PHOTO = RNG.integers(0, 256, (48, 64, 3), dtype=np.uint8)  # 64 wide, 48 high


def encode(img: Image.Image, fmt: str, **kwargs) -> bytes:
    buf = io.BytesIO()
    img.save(buf, fmt, **kwargs)
    return buf.getvalue()


def patch_png_size(png: bytes, width: int, height: int) -> bytes:
    """Rewrite a PNG's IHDR width/height (and its CRC): a huge image header over tiny pixel data."""
    assert png[12:16] == b"IHDR"
    ihdr = png[16:29]
    ihdr = struct.pack(">II", width, height) + ihdr[8:]
    crc = struct.pack(">I", zlib.crc32(b"IHDR" + ihdr) & 0xFFFFFFFF)
    return png[:16] + ihdr + crc + png[33:]


# ------------------------------------------------------------------------------------ formats


@pytest.mark.parametrize("fmt", ["PNG", "JPEG", "WEBP", "BMP", "GIF"])
def test_each_format_loads_as_rgb(fmt):
    img = load_upload(encode(Image.fromarray(PHOTO), fmt))
    assert img.mode == "RGB" and img.size == (64, 48)
    if fmt in ("PNG", "BMP"):  # lossless
        np.testing.assert_array_equal(np.asarray(img), PHOTO)


def test_webp_lossless_roundtrips():
    img = load_upload(encode(Image.fromarray(PHOTO), "WEBP", lossless=True))
    np.testing.assert_array_equal(np.asarray(img), PHOTO)


def test_mpo_camera_jpeg_loads():
    img = Image.fromarray(PHOTO)
    data = encode(img, "MPO", save_all=True, append_images=[img])
    assert Image.open(io.BytesIO(data)).format == "MPO"
    assert load_upload(data).size == (64, 48)


def test_gif_takes_the_first_frame():
    red = Image.new("RGB", (16, 16), (255, 0, 0))
    blue = Image.new("RGB", (16, 16), (0, 0, 255))
    data = encode(red, "GIF", save_all=True, append_images=[blue], duration=100)
    assert Image.open(io.BytesIO(data)).n_frames == 2
    assert tuple(np.asarray(load_upload(data))[0, 0]) == (255, 0, 0)


def test_exif_orientation_is_applied():
    img = Image.fromarray(PHOTO)
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90° clockwise to display
    out = load_upload(encode(img, "JPEG", exif=exif.tobytes()))
    assert out.size == (48, 64)
    assert out.info["header_size"] == (48, 64)  # as shown, not as stored


def smooth_photo(w: int, h: int) -> Image.Image:
    """A photo-like image: smooth gradients (JPEG's DCT scaling is exact on those, not on noise)."""
    yy, xx = np.mgrid[0:h, 0:w]
    rgb = np.stack([xx * 255 / w, yy * 255 / h, 128 + 100 * np.sin(xx / 97.0) * np.cos(yy / 61.0)], -1)
    return Image.fromarray(rgb.clip(0, 255).astype(np.uint8))


def test_a_big_jpeg_decodes_at_a_reduced_scale_when_asked():
    data = encode(smooth_photo(2000, 1500), "JPEG", quality=90)
    full = load_upload(data)
    small = load_upload(data, min_side=320)
    assert full.size == (2000, 1500) and small.size == (500, 375)  # 1/4 scale: both sides still ≥ 320
    assert small.info["header_size"] == full.info["header_size"] == (2000, 1500)
    # what the models see barely changes: 32×32 from the reduced decode vs from all the pixels
    diff = np.abs(to_model_input(small).astype(int) - to_model_input(full).astype(int))
    assert diff.mean() < 2 and diff.max() < 16
    # PNGs have no reduced decode: the size stays
    assert load_upload(encode(Image.fromarray(PHOTO), "PNG"), min_side=8).size == (64, 48)


# -------------------------------------------------------------------------------------- modes


def test_rgba_is_composited_on_white():
    a = np.zeros((8, 8, 4), np.uint8)
    a[..., 0] = 255  # red …
    a[:4, :, 3] = 255  # … opaque in the top half, fully transparent below
    out = np.asarray(load_upload(encode(Image.fromarray(a, "RGBA"), "PNG")))
    assert tuple(out[0, 0]) == (255, 0, 0)
    assert tuple(out[7, 7]) == BACKGROUND


def test_half_transparent_blends():
    a = np.zeros((4, 4, 4), np.uint8)
    a[..., 3] = 128  # black at 50% over white → mid grey
    out = np.asarray(load_upload(encode(Image.fromarray(a, "RGBA"), "PNG")))
    assert np.all(np.abs(out.astype(int) - 127) <= 1)


def test_la_and_grey():
    la = Image.fromarray(np.dstack([np.full((4, 4), 10, np.uint8), np.full((4, 4), 255, np.uint8)]), "LA")
    assert tuple(np.asarray(load_upload(encode(la, "PNG")))[0, 0]) == (10, 10, 10)
    grey = Image.fromarray(np.full((4, 4), 200, np.uint8), "L")
    assert tuple(np.asarray(load_upload(encode(grey, "PNG")))[0, 0]) == (200, 200, 200)
    bw = Image.new("1", (4, 4), 1)
    assert tuple(np.asarray(load_upload(encode(bw, "PNG")))[0, 0]) == (255, 255, 255)


def test_palette_with_transparency():
    p = Image.new("P", (4, 4), 0)
    p.putpalette([0, 0, 0, 0, 255, 0] + [0] * (254 * 3))
    p.putpixel((0, 0), 1)
    data = encode(p, "PNG", transparency=0)  # index 0 (black) is transparent
    out = np.asarray(load_upload(data))
    assert tuple(out[0, 0]) == (0, 255, 0)
    assert tuple(out[3, 3]) == BACKGROUND  # transparent black → white, not black
    opaque = np.asarray(load_upload(encode(p, "PNG")))
    assert tuple(opaque[3, 3]) == (0, 0, 0)


def test_16bit_grey_is_scaled_not_clipped():
    a = np.array([[0, 257, 32896, 65535]], dtype=np.uint16)
    data = encode(Image.fromarray(a), "PNG")
    assert Image.open(io.BytesIO(data)).mode.startswith("I")
    out = np.asarray(load_upload(data))[0, :, 0]
    np.testing.assert_array_equal(out, [0, 1, 128, 255])


def test_32bit_int_and_float_modes():
    i = Image.fromarray(np.array([[0, 1000, 65535]], dtype=np.int32), "I")
    np.testing.assert_array_equal(np.asarray(to_rgb(i))[0, :, 0], [0, 4, 255])
    i8 = Image.fromarray(np.array([[0, 100, 255]], dtype=np.int32), "I")
    np.testing.assert_array_equal(np.asarray(to_rgb(i8))[0, :, 0], [0, 100, 255])
    f = Image.fromarray(np.array([[0.0, 0.5, 1.0]], dtype=np.float32), "F")
    np.testing.assert_array_equal(np.asarray(to_rgb(f))[0, :, 0], [0, 128, 255])


def test_cmyk_jpeg():
    cmyk = Image.new("CMYK", (8, 8), (0, 255, 255, 0))  # pure red in CMYK
    out = np.asarray(load_upload(encode(cmyk, "JPEG", quality=95)))
    r, g, b = out[4, 4].astype(int)
    assert r > 200 and g < 60 and b < 60


# ------------------------------------------------------------------------------------- errors


def reason_of(data: bytes, **kwargs) -> ImageError:
    with pytest.raises(ImageError) as info:
        load_upload(data, **kwargs)
    assert isinstance(info.value, ValueError)
    message = str(info.value)
    assert message and "\n" not in message and "Traceback" not in message
    return info.value


def test_empty_file():
    assert reason_of(b"").reason == "empty"


@pytest.mark.parametrize("data", [RNG.integers(0, 256, 4096, dtype=np.uint8).tobytes(), b"hello, world", b"%PDF-1.7\n"])
def test_not_an_image(data):
    assert reason_of(data).reason == "not_image"


def test_other_formats_are_unsupported():
    err = reason_of(encode(Image.fromarray(PHOTO), "TIFF"))
    assert err.reason == "unsupported" and "TIFF" in str(err)
    heic = b"\x00\x00\x00\x18ftypheic" + b"\x00" * 64
    assert reason_of(heic).reason == "unsupported"


@pytest.mark.parametrize("fmt", ["PNG", "JPEG", "GIF", "WEBP"])
def test_truncated_files_are_refused(fmt):
    data = encode(Image.fromarray(PHOTO), fmt)
    err = reason_of(data[: len(data) // 2])
    assert err.reason in ("corrupt", "not_image")
    assert ImageFile.LOAD_TRUNCATED_IMAGES is False  # we never turn it on


def test_truncated_png_and_jpeg_say_corrupt():
    for fmt in ("PNG", "JPEG"):
        data = encode(Image.fromarray(PHOTO), fmt)
        assert reason_of(data[: len(data) * 2 // 3]).reason == "corrupt"


@pytest.mark.parametrize("size", [(20000, 20000), (7000, 7000), (100_000, 1)])
def test_decompression_bomb_is_refused_from_the_header(size):
    tiny = encode(Image.new("1", (1, 1)), "PNG")
    bomb = patch_png_size(tiny, *size)
    assert struct.unpack(">II", bomb[16:24]) == size and len(bomb) < 100
    start = time.perf_counter()
    err = reason_of(bomb, max_pixels=40_000_000 if size[1] > 1 else 50_000)
    assert err.reason == "too_large"
    assert time.perf_counter() - start < 0.5  # nothing was decoded (400 MP would take seconds and GBs)


def test_max_pixels_applies_to_real_images():
    data = encode(Image.fromarray(PHOTO), "PNG")
    assert reason_of(data, max_pixels=64 * 48 - 1).reason == "too_large"
    assert load_upload(data, max_pixels=64 * 48).size == (64, 48)


# ------------------------------------------------------------------------------ model input


def test_to_model_input_centre_crops_then_resizes():
    # A wide image: left and right thirds red, a blue middle square.
    a = np.zeros((100, 300, 3), np.uint8)
    a[:, :, 0] = 255
    a[:, 100:200] = (0, 0, 255)
    out = to_model_input(Image.fromarray(a))
    assert out.dtype == np.uint8 and out.shape == (32, 32, 3)
    assert np.all(out[..., 2] > 250) and np.all(out[..., 0] < 5)  # only the centre square remains


def test_to_model_input_large_photo_is_fast_and_tall_images_work():
    big = Image.fromarray(np.tile(PHOTO, (40, 40, 1)))  # 2560×1920
    start = time.perf_counter()
    out = to_model_input(big)
    assert time.perf_counter() - start < 0.5
    assert out.shape == (32, 32, 3)
    assert to_model_input(Image.fromarray(PHOTO.transpose(1, 0, 2))).shape == (32, 32, 3)
    assert to_model_input(Image.new("L", (5, 9), 7)).shape == (32, 32, 3)
