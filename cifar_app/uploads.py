"""User uploads for "Try your own image": bytes → checked RGB image → the model's 32×32 input.

Uploads are untrusted. `load_upload` reads only the header first, refuses oversized images before
any pixel is decoded, then decodes everything at once so a truncated file fails here, with one
human sentence, rather than later inside a resize.
"""

from __future__ import annotations

import io
import re
import warnings

import numpy as np
from PIL import Image, ImageOps

# What the app accepts, as Pillow names the formats (the uploader's file types should match).
# JPEG includes MPO, the multi-picture JPEG many cameras write: Pillow's JPEG opener returns it.
FORMATS = ("PNG", "JPEG", "WEBP", "BMP", "GIF")
_FORMATS_IN_WORDS = "PNG, JPEG, WebP, BMP or GIF"
MAX_PIXELS = 40_000_000  # 40 MP: more than a typical camera photo (12-24 MP), far below a bomb
# Transparent pixels are composited onto white: cut-outs and logos are drawn for a light page,
# and on black a dark object on a transparent background would vanish.
BACKGROUND = (255, 255, 255)
# resize() first shrinks by an integer factor with a box filter while the image stays at least
# this many times the target, then runs the real filter: a 4000 px photo → 32 px costs a few ms
# instead of ~100 ms, and the result is indistinguishable at 32×32.
REDUCING_GAP = 3.0
# The smallest upload the page predicts: below 8×8 the 32×32 input is a few blurred colour patches,
# and the models still name a class, often at 99% (a 1×1 red pixel was "plane 99.9%").
MIN_SIDE = 8


class ImageError(ValueError):
    """An upload that cannot be used; str(error) is one sentence to show the user as is.

    `reason` is one of "empty", "not_image", "unsupported", "corrupt", "too_large", "too_small".
    """

    def __init__(self, message: str, reason: str, detail: str = ""):
        super().__init__(message)
        self.reason = reason
        self.detail = detail  # Pillow's own words, for logs


def _sniff_heif(data: bytes) -> bool:
    # ISO-BMFF "ftyp" box with an HEIF brand: what iPhones save by default.
    return data[4:8] == b"ftyp" and data[8:12] in (b"heic", b"heix", b"hevc", b"heim", b"heis", b"mif1", b"msf1")


def _format_name(data: bytes) -> str | None:
    """The format Pillow recognises in data when it is not one we accept (header only), else None."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            with Image.open(io.BytesIO(data)) as img:
                return img.format
    except Exception:  # anything unreadable is simply "not an image"
        return None


def _check_size(img: Image.Image, max_pixels: int) -> None:
    w, h = img.size
    if w * h > max_pixels:
        raise ImageError(
            f"The image is {w}×{h} pixels ({w * h / 1e6:.1f} megapixels); the limit is "
            f"{max_pixels / 1e6:.1f} megapixels. Please resize it and upload it again.",
            "too_large",
        )
    if w < 1 or h < 1:
        raise ImageError(f"The image is {w}×{h} pixels, which is empty.", "corrupt")


def _scale_to_uint8(a: np.ndarray, mode: str) -> np.ndarray:
    """16-bit, 32-bit integer or float greyscale → uint8 by scaling its full range, not clipping."""
    a = a.astype(np.float64)
    if mode.startswith("I;16"):
        top = 65535.0
    elif mode == "F" and a.size and 0.0 <= a.min() and a.max() <= 1.0:
        top = 1.0  # float images in [0, 1]
    else:
        # "I" (32-bit int) or "F": 8-bit data stays as is, 16-bit data is scaled like I;16, anything
        # bigger by its own maximum.
        lo, hi = (float(a.min()), float(a.max())) if a.size else (0.0, 0.0)
        if lo < 0:
            a, hi = a - lo, hi - lo
        top = 255.0 if hi <= 255 else 65535.0 if hi <= 65535 else hi
    return np.clip(np.rint(a * (255.0 / top)), 0, 255).astype(np.uint8)


def to_rgb(img: Image.Image) -> Image.Image:
    """Any Pillow mode → RGB: transparency onto white (BACKGROUND), 16-bit scaled to 8-bit, CMYK converted."""
    mode = img.mode
    if mode == "RGB":
        return img
    if mode in ("I", "F") or mode.startswith("I;16"):
        return Image.fromarray(_scale_to_uint8(np.asarray(img), mode), "L").convert("RGB")
    if mode == "P" or mode == "PA":
        img = img.convert("RGBA" if mode == "PA" or "transparency" in img.info else "RGB")
    elif mode in ("L", "1") and "transparency" in img.info:
        img = img.convert("RGBA")
    elif mode in ("RGBa", "La"):  # premultiplied alpha
        img = img.convert("RGBA")
    if img.mode in ("RGBA", "LA"):
        rgba = img.convert("RGBA")
        background = Image.new("RGBA", rgba.size, (*BACKGROUND, 255))
        return Image.alpha_composite(background, rgba).convert("RGB")
    try:
        return img.convert("RGB")  # L, 1, CMYK, YCbCr, LAB, HSV and RGB after the steps above
    except (ValueError, OSError) as e:
        raise ImageError(f"Images in Pillow's {mode!r} colour mode are not supported ({e}).", "unsupported") from None


def load_upload(data: bytes, *, max_pixels: int = MAX_PIXELS, min_side: int | None = None) -> Image.Image:
    """Decode an uploaded PNG, JPEG, WebP, BMP or GIF (first frame) into a fully loaded RGB image.

    Refuses, with an ImageError whose message is one sentence for the user: empty files, non-images,
    other formats, truncated or corrupt files, and images over max_pixels (checked from the header,
    before any pixel is decoded). EXIF orientation is applied, as phones rely on it.

    min_side: the caller needs no more than this many pixels on each side, so a JPEG is decoded at
    a reduced scale (libjpeg's DCT scaling: 1/2, 1/4 or 1/8) that keeps both sides at least that
    big. A 2000×1500 photo then costs ~1 MB instead of 35 MB of server memory while it is decoded,
    which matters with several sessions at once. The header's size stays in `.info["header_size"]`.
    """
    if not data:
        raise ImageError("The file is empty (0 bytes).", "empty")
    data = bytes(data)
    try:
        with warnings.catch_warnings():
            # Pillow warns above Image.MAX_IMAGE_PIXELS (89 MP) and raises above twice that; both
            # are bombs to us. Image.open reads the header only.
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            img = Image.open(io.BytesIO(data), formats=FORMATS)
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as e:
        found = re.search(r"\((\d+) pixels\)", str(e))
        size = f" ({int(found.group(1)) / 1e6:.1f} megapixels)" if found else ""
        raise ImageError(
            f"The image is too large{size}; the limit is {max_pixels / 1e6:.1f} megapixels. "
            "Please resize it and upload it again.",
            "too_large",
        ) from None
    except Exception:  # UnidentifiedImageError, or a parser error on garbage
        if _sniff_heif(data):
            raise ImageError(
                f"HEIC/HEIF photos are not supported; export it as JPEG (or upload a {_FORMATS_IN_WORDS}).",
                "unsupported",
            ) from None
        other = _format_name(data)
        if other is not None:
            raise ImageError(f"{other} images are not supported; please upload a {_FORMATS_IN_WORDS}.", "unsupported") from None
        raise ImageError(
            f"This file is not an image that can be read; please upload a {_FORMATS_IN_WORDS}.", "not_image"
        ) from None

    with img:
        _check_size(img, max_pixels)
        header_size = img.size
        if min_side and img.format == "JPEG":
            img.draft("RGB", (min_side, min_side))
        try:
            img.load()  # decode every pixel now; with LOAD_TRUNCATED_IMAGES False a short file raises
        except Exception as e:  # OSError "truncated", SyntaxError, struct.error …: all mean a bad file
            raise ImageError(
                f"The {img.format} file is truncated or corrupt, so it cannot be decoded; try saving it again.",
                "corrupt",
                detail=f"{type(e).__name__}: {e}",
            ) from None
        try:
            upright = ImageOps.exif_transpose(img)  # a rotated copy, or a plain copy without EXIF
        except Exception:  # malformed EXIF: show the pixels as stored rather than refuse the photo
            upright = img.copy()
    if upright.size != img.size and upright.size == img.size[::-1]:  # EXIF turned it by 90°
        header_size = header_size[::-1]
    rgb = to_rgb(upright)
    rgb.info["header_size"] = header_size
    return rgb


def check_min_size(img: Image.Image, min_side: int = MIN_SIDE) -> None:
    """ImageError("too_small") when either side of the (EXIF-upright) image is under min_side pixels."""
    w, h = img.size
    if min(w, h) < min_side:
        raise ImageError(
            f"The image is {w}×{h} pixels; it needs at least {min_side}×{min_side}. The models see 32×32 pixels, "
            f"and a smaller image holds too little to recognise (they would still name a class, confidently). "
            "Please upload a bigger image.",
            "too_small",
        )


def to_model_input(img: Image.Image, *, size: int = 32) -> np.ndarray:
    """Centre-crop to a square, resize to size×size (bicubic) → uint8 (size, size, 3) RGB array.

    Cropping rather than squashing keeps shapes as the model saw them in CIFAR (square photos).
    Pillow's bicubic filter widens with the downscale factor, so it antialiases even at 100:1;
    it rings less than Lanczos on hard edges, which matters at 32 px. REDUCING_GAP makes big
    photos cheap.
    """
    if img.mode != "RGB":
        img = to_rgb(img)
    w, h = img.size
    side = min(w, h)
    left, top = (w - side) // 2, (h - side) // 2
    # crop() first: resize(box=…) would let the filter reach pixels outside the square.
    square = img.crop((left, top, left + side, top + side))
    small = square.resize((size, size), Image.Resampling.BICUBIC, reducing_gap=REDUCING_GAP)
    return np.array(small, dtype=np.uint8).reshape(size, size, 3)

