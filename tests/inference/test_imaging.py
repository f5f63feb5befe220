"""Decoding every kind of photo a phone or a web form sends, and refusing what is not one."""

from __future__ import annotations

import io
import struct
import subprocess
import sys
import zlib
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from faceauth.inference import imaging
from faceauth.inference.imaging import decode_image
from faceauth.kit.errors import AppError

MAX_PIXELS = 40_000_000


def _encode(im: Image.Image, fmt: str, **kwargs) -> bytes:
    buf = io.BytesIO()
    im.save(buf, fmt, **kwargs)
    return buf.getvalue()


def _gradient(width=64, height=48) -> np.ndarray:
    x = np.linspace(0, 255, width, dtype=np.float32)
    y = np.linspace(0, 255, height, dtype=np.float32)[:, None]
    return np.stack(
        [np.broadcast_to(x, (height, width)), np.broadcast_to(y, (height, width)), np.full((height, width), 128.0)], -1
    ).astype(np.uint8)


def _error_code(data: bytes, **kwargs) -> tuple[int, str]:
    with pytest.raises(AppError) as info:
        decode_image(data, max_pixels=kwargs.pop("max_pixels", MAX_PIXELS), **kwargs)
    return info.value.status, info.value.code


def test_rgb_jpeg_decodes_to_rgb_uint8():
    img = decode_image(_encode(Image.fromarray(_gradient()), "JPEG", quality=95), max_pixels=MAX_PIXELS)
    assert img.rgb.shape == (48, 64, 3) and img.rgb.dtype == np.uint8
    assert (img.original_width, img.original_height, img.scale) == (64, 48, 1.0)
    # Red grows left to right, green top to bottom: channels are in RGB order.
    assert img.rgb[24, 60, 0] > img.rgb[24, 3, 0] + 150
    assert img.rgb[45, 32, 1] > img.rgb[2, 32, 1] + 150


def test_grayscale_becomes_three_equal_channels():
    gray = Image.fromarray(_gradient()[:, :, 0], "L")
    img = decode_image(_encode(gray, "PNG"), max_pixels=MAX_PIXELS)
    assert img.rgb.shape == (48, 64, 3)
    assert np.array_equal(img.rgb[:, :, 0], img.rgb[:, :, 2])


def test_rgba_png_is_composited_on_white():
    rgba = np.zeros((10, 10, 4), np.uint8)
    rgba[:, :5] = (255, 0, 0, 255)  # opaque red on the left, fully transparent on the right
    img = decode_image(_encode(Image.fromarray(rgba, "RGBA"), "PNG"), max_pixels=MAX_PIXELS)
    assert tuple(img.rgb[5, 2]) == (255, 0, 0)
    assert tuple(img.rgb[5, 8]) == (255, 255, 255)


def test_16bit_png_is_scaled_not_clipped():
    values = np.array([[0, 16384, 32768, 65535]], dtype=np.uint16)
    im = Image.fromarray(values)
    assert im.mode == "I;16"
    img = decode_image(_encode(im, "PNG"), max_pixels=MAX_PIXELS)
    assert img.rgb[0, :, 0].tolist() == pytest.approx([0, 64, 128, 255], abs=1)


def test_16bit_rgb_png_decodes():
    # Pillow cannot write 48-bit PNGs; build one by hand: IHDR bit depth 16, colour type 2.
    h, w = 4, 6
    pixels = (np.arange(h * w * 3, dtype=np.uint16).reshape(h, w, 3) * 900).astype(">u2")
    raw = b"".join(b"\x00" + pixels[r].tobytes() for r in range(h))

    def chunk(tag: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + tag + data + struct.pack(">I", zlib.crc32(tag + data) & 0xFFFFFFFF)

    png = b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", w, h, 16, 2, 0, 0, 0))
    png += chunk(b"IDAT", zlib.compress(raw)) + chunk(b"IEND", b"")
    img = decode_image(png, max_pixels=MAX_PIXELS)
    assert img.rgb.shape == (h, w, 3)
    assert int(img.rgb[-1, -1, 2]) == pytest.approx(int(pixels[-1, -1, 2]) >> 8, abs=1)


def test_cmyk_jpeg_decodes_to_rgb():
    rgb = Image.fromarray(np.full((32, 32, 3), (200, 40, 40), np.uint8))
    img = decode_image(_encode(rgb.convert("CMYK"), "JPEG", quality=95), max_pixels=MAX_PIXELS)
    r, g, b = (int(v) for v in img.rgb[16, 16])
    assert r > 150 and g < 100 and b < 100


@pytest.mark.parametrize(
    ("orientation", "transpose"),
    [
        (3, Image.Transpose.ROTATE_180),
        (6, Image.Transpose.ROTATE_90),  # stored turned left: the viewer must turn it right
        (8, Image.Transpose.ROTATE_270),
        (2, Image.Transpose.FLIP_LEFT_RIGHT),
    ],
)
def test_exif_orientation_is_applied(orientation, transpose):
    upright = Image.fromarray(_gradient(80, 40))
    stored = upright.transpose(transpose)
    exif = Image.Exif()
    exif[0x0112] = orientation
    img = decode_image(_encode(stored, "JPEG", quality=95, exif=exif.tobytes()), max_pixels=MAX_PIXELS)
    assert img.rgb.shape == (40, 80, 3)
    assert (img.original_width, img.original_height) == (80, 40)
    diff = np.abs(img.rgb.astype(int) - np.asarray(upright).astype(int)).mean()
    assert diff < 6


def test_large_jpeg_is_decoded_at_reduced_scale():
    big = Image.fromarray(np.random.default_rng(0).integers(0, 255, (1200, 1600, 3), dtype=np.uint8))
    img = decode_image(_encode(big, "JPEG"), max_pixels=MAX_PIXELS, target_side=400)
    assert img.width >= 400 and img.width <= 800
    assert img.original_width == 1600 and img.scale == img.width / 1600


def test_bytes_that_are_not_an_image():
    assert _error_code(b"hello, this is text and not a photo") == (422, "invalid_image")


def test_empty_bytes():
    assert _error_code(b"") == (400, "empty_image")


def test_truncated_jpeg():
    data = _encode(Image.fromarray(_gradient(256, 256)), "JPEG", quality=95)
    assert _error_code(data[: len(data) // 2]) == (422, "image_truncated")


def test_truncated_png():
    data = _encode(Image.fromarray(np.random.default_rng(1).integers(0, 255, (128, 128, 3), dtype=np.uint8)), "PNG")
    status, code = _error_code(data[: len(data) // 2])
    assert status == 422 and code in ("image_truncated", "invalid_image")


def test_decompression_bomb_is_refused_before_decoding():
    # A tiny PNG that claims 30000 x 30000 pixels.
    bomb = Image.new("L", (30000, 30000))
    data = _encode(bomb, "PNG", optimize=True)
    assert len(data) < 2_000_000
    assert _error_code(data, max_pixels=MAX_PIXELS) == (422, "image_too_many_pixels")


def test_unsupported_format():
    data = _encode(Image.fromarray(_gradient()), "PPM")
    assert _error_code(data) == (422, "unsupported_image_format")


def _photo_like(width=96, height=64) -> Image.Image:
    """Asymmetric content, so every flip and rotation gives a different array."""
    rgb = _gradient(width, height)
    rgb[5:20, 10:40] = (250, 20, 20)
    return Image.fromarray(rgb)


@pytest.mark.parametrize("orientation", range(1, 9))
def test_fast_jpeg_path_and_pillow_path_agree(orientation, monkeypatch):
    exif = Image.Exif()
    exif[0x0112] = orientation
    data = _encode(_photo_like(), "JPEG", quality=95, exif=exif.tobytes())
    fast = decode_image(data, max_pixels=MAX_PIXELS)
    monkeypatch.setattr(imaging, "_decode_jpeg_fast", lambda *args: None)
    careful = decode_image(data, max_pixels=MAX_PIXELS)
    assert fast.rgb.shape == careful.rgb.shape
    assert (fast.original_width, fast.original_height) == (careful.original_width, careful.original_height)
    assert np.abs(fast.rgb.astype(int) - careful.rgb.astype(int)).mean() < 2


@pytest.mark.parametrize("target", [600, 300, 150])
def test_reduced_decode_matches_between_paths(target, monkeypatch):
    data = _encode(_photo_like(1280, 960), "JPEG", quality=95)
    fast = decode_image(data, max_pixels=MAX_PIXELS, target_side=target)
    monkeypatch.setattr(imaging, "_decode_jpeg_fast", lambda *args: None)
    careful = decode_image(data, max_pixels=MAX_PIXELS, target_side=target)
    assert fast.rgb.shape == careful.rgb.shape and fast.width >= target and fast.width < 2 * target
    assert np.abs(fast.rgb.astype(int) - careful.rgb.astype(int)).mean() < 3


def test_jpeg_with_bytes_after_the_end_marker_still_decodes():
    data = _encode(_photo_like(), "JPEG", quality=90) + b"trailing vendor data"
    assert decode_image(data, max_pixels=MAX_PIXELS).rgb.shape == (64, 96, 3)


BOMB_SCRIPT = """
import sys
from pathlib import Path

from faceauth.inference.imaging import decode_image
from faceauth.kit.errors import AppError


def peak_kb():
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1])


data = Path(sys.argv[1]).read_bytes()
before = peak_kb()
try:
    image = decode_image(data, max_pixels=int(sys.argv[2]))
    outcome = f"decoded {image.rgb.shape} {int(image.rgb[0, 0, 0])}"
except AppError as exc:
    outcome = f"refused {exc.status} {exc.code}"
print(outcome, (peak_kb() - before) // 1024)
"""


@pytest.fixture(scope="module")
def transparent_png_bomb(tmp_path_factory) -> Path:
    """A 6400x6240 RGBA PNG of one half-transparent colour: about 170 KB holding 40 million pixels."""
    path = tmp_path_factory.mktemp("bomb") / "bomb.png"
    Image.new("RGBA", (6400, 6240), (0, 0, 0, 128)).save(path, optimize=False, compress_level=9)
    return path


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads VmHWM from /proc")
@pytest.mark.slow
def test_a_small_transparent_png_with_many_pixels_is_cheap_or_refused(transparent_png_bomb: Path):
    """Issue 14: this PNG raised the peak memory by 870 MB (three full-size copies to flatten its alpha)."""
    from faceauth.config import MLSettings

    def run(max_pixels: int) -> tuple[str, int]:
        done = subprocess.run(
            [sys.executable, "-c", BOMB_SCRIPT, str(transparent_png_bomb), str(max_pixels)],
            capture_output=True,
            text=True,
            timeout=120,
            check=True,
        )
        outcome, rise = done.stdout.rsplit(" ", 1)
        return outcome, int(rise)

    # The default pixel cap refuses it with a 4xx before decoding.
    default_cap = MLSettings.model_fields["max_image_pixels"].default
    outcome, rise = run(default_cap)
    assert outcome == "refused 422 image_too_many_pixels" and rise < 50
    # An operator who raises the cap: decoded, on white (0 at alpha 128 -> 127), with no full-size copy beyond
    # Pillow's decoded RGBA (160 MB) and the RGB result (120 MB); it was 766 MB with alpha_composite.
    outcome, rise = run(40_000_000)
    assert outcome == "decoded (6240, 6400, 3) 127", outcome
    assert rise < 340, f"peak RSS rose by {rise} MB"
