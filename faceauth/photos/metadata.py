"""Enrolment photos are stored without their metadata (EXIF with GPS position, camera serials, XMP, comments),
with the EXIF orientation applied to the pixels, so the stored image shows the face upright and says nothing
else about the person."""

from __future__ import annotations

import io

from PIL import Image, ImageOps

# What a decoder reports about the encoding itself; any other key is metadata.
_ENCODING_INFO = frozenset(
    {
        "adobe",
        "adobe_transform",
        "aspect",
        "background",
        "dpi",
        "duration",
        "gamma",
        "icc_profile",
        "interlace",
        "jfif",
        "jfif_density",
        "jfif_unit",
        "jfif_version",
        "loop",
        "progression",
        "progressive",
        "srgb",
        "transparency",
    }
)
# JPEG quality of a re-encoded photo: visually lossless, and the face keeps every detail re-embedding needs.
_JPEG_QUALITY = 95


def _has_metadata(im: Image.Image) -> bool:
    return len(im.getexif()) > 0 or any(key not in _ENCODING_INFO for key in im.info)


def without_metadata(data: bytes) -> bytes:
    """`data` re-encoded upright and without metadata, or `data` itself when it has none (or Pillow cannot read
    it: the ML service decoded it, so that is only a format Pillow reads differently)."""
    try:
        im = Image.open(io.BytesIO(data))
        if not _has_metadata(im):
            return data
        source_format = im.format
        upright = ImageOps.exif_transpose(im)
    except Exception:
        return data
    out = io.BytesIO()
    icc = im.info.get("icc_profile")  # colours, not a fact about the person: kept
    extra = {"icc_profile": icc} if icc else {}
    if source_format in ("JPEG", "MPO"):
        if upright.mode not in ("RGB", "L", "CMYK"):
            upright = upright.convert("RGB")
        upright.save(out, "JPEG", quality=_JPEG_QUALITY, **extra)
    elif source_format == "WEBP":
        upright.save(out, "WEBP", quality=_JPEG_QUALITY, **extra)
    else:  # PNG, TIFF, GIF, BMP: losslessly as PNG
        upright.save(out, "PNG", **extra)
    return out.getvalue()
