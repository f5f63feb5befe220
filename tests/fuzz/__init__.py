"""Schemathesis against both services' OpenAPI documents: every answer must be documented and well-formed.

Shared by the fuzz tests: a fixed seed and derandomized Hypothesis (CI sees the same cases every run), the checks
every response must pass, the shape every error body must have, and a strategy of odd photos (real faces
re-encoded in every format, mode and size the services accept, then truncated or corrupted) that makes the real
models and decoders run, which random bytes from the schema never do.
"""

from __future__ import annotations

import io
import os
from collections.abc import Sequence
from dataclasses import dataclass
from functools import cache
from typing import Any

import schemathesis
from fastapi import FastAPI
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from PIL import Image
from schemathesis import checks as st_checks
from schemathesis.specs.openapi import checks as openapi_checks

# Fixed, so CI sees the same cases every run. For a longer hunt: FACEAUTH_FUZZ_SEED=<another> and
# FACEAUTH_FUZZ_SCALE=<n> (n times the examples).
SEED = int(os.environ.get("FACEAUTH_FUZZ_SEED", "20240611"))
SCALE = max(1, int(os.environ.get("FACEAUTH_FUZZ_SCALE", "1")))
# The ML service in these tests is guarded by an internal token, as in production.
ML_TOKEN = "fuzz-internal-token"

# Every response: no 5xx, a documented status and content type, a body matching its documented schema, documented
# headers, and no 2xx for data the schema forbids.
CHECKS = [
    st_checks.not_a_server_error,
    openapi_checks.status_code_conformance,
    openapi_checks.content_type_conformance,
    openapi_checks.response_schema_conformance,
    openapi_checks.response_headers_conformance,
    openapi_checks.negative_data_rejection,
    # 405 with `Allow` for a method the path does not have, and an `Allow` that lists the documented methods.
    openapi_checks.unsupported_method,
    openapi_checks.allow_header_conformance,
]


@dataclass(frozen=True)
class Target:
    """An app in-process and the headers every request to it carries (its credentials)."""

    app: FastAPI
    headers: dict[str, str]

    def call_and_validate(self, case: schemathesis.Case) -> schemathesis.Response:
        response = case.call(app=self.app, headers=self.headers)
        checks = CHECKS
        if _form_type_changes_only(case):
            checks = [check for check in CHECKS if check is not openapi_checks.negative_data_rejection]
        case.validate_response(response, checks=checks, headers=self.headers, transport_kwargs={"app": self.app})
        assert_error_body(response)
        return response


def _form_type_changes_only(case: schemathesis.Case) -> bool:
    """A negative multipart case whose violations are all invisible in a form, so the app cannot reject them.

    Every value of a form is text: "0.0" for a string, or one item for a list, is what a browser sends. And an
    empty field is how a form leaves out an optional value (FastAPI reads it as absent), so a pattern or length
    violation by an empty string is no violation either.
    """
    if case.meta is None or not (case.media_type or "").startswith("multipart/"):
        return False
    mutations = getattr(case.meta.phase.data, "mutations", None) or ()
    return bool(mutations) and all(
        mutation.keywords == ("type",)
        or _sent_value(case.body, mutation.path) == ""
        # An optional field (anyOf [its type, null]) given a boolean or a number: sent as the text "false" or
        # "0", which the field's type may well accept; a string that breaks both branches still counts.
        or (mutation.keywords == ("anyOf",) and isinstance(_sent_value(case.body, mutation.path), bool | int | float))
        for mutation in mutations
    )


def _sent_value(body: Any, path: Sequence[Any]) -> Any:
    for step in path:
        try:
            body = body[step]
        except (KeyError, IndexError, TypeError):
            return None
    return body


def config(**generation: Any) -> schemathesis.Config:
    """Deterministic generation (positive and negative cases), no example database, no stateful phase."""
    return schemathesis.Config.from_dict(
        {
            "seed": SEED,
            "generation": {"mode": "all", "deterministic": True, "with-security-parameters": False, **generation},
            "phases": {"stateful": {"enabled": False}},
            # A refusal of invalid data may be any 4xx the operation documents, 413 included (a list longer than
            # the server's limit). 5xx is never a refusal: not_a_server_error fails those.
            "checks": {"negative_data_rejection": {"expected-statuses": ["4XX"]}},
        }
    )


def files_as_files(document: dict) -> dict:
    """The document with optional file fields (`anyOf: [binary string, null]`) given as plain binary strings.

    That is how FastAPI documents `UploadFile | None` in OpenAPI 3.1, and schemathesis sends such a field as a
    text part, never as a file: the routes' uploads would go untested. A multipart form cannot send a null anyway,
    so the two say the same.
    """
    for component in document.get("components", {}).get("schemas", {}).values():
        for name, prop in component.get("properties", {}).items():
            variants = prop.get("anyOf", [])
            files = [v for v in variants if v.get("contentMediaType") == "application/octet-stream"]
            if files and all(v in files or v == {"type": "null"} for v in variants):
                component["properties"][name] = {
                    **{k: v for k, v in prop.items() if k != "anyOf"},
                    "type": "string",
                    "format": "binary",
                }
    return document


def hypothesis_settings(max_examples: int) -> settings:
    return settings(
        max_examples=max_examples * SCALE,
        deadline=None,
        derandomize=True,
        database=None,
        print_blob=False,
        suppress_health_check=list(HealthCheck),
    )


def assert_error_body(response: Any) -> None:
    """A non-2xx answer is JSON `{"requestId", "error": {"code", "message"}}` (the services' one error shape)."""
    if response.status_code < 400:
        return
    content_type = response.headers.get("content-type", [""])
    content_type = content_type[0] if isinstance(content_type, list) else content_type
    assert content_type.split(";")[0].strip() == "application/json", (response.status_code, content_type)
    body = response.json()
    assert isinstance(body, dict) and isinstance(body.get("requestId"), str), body
    error = body.get("error")
    assert isinstance(error, dict), body
    assert isinstance(error.get("code"), str) and error["code"], body
    assert isinstance(error.get("message"), str), body


# -- odd photos ---------------------------------------------------------------------------------------------------

_SIZES = [None, (1, 1), (2, 3), (31, 17), (112, 112), (640, 24), (24, 640)]
# Pillow modes, each saved in the formats that hold it (anything else is converted to RGB first).
_MODES = ["RGB", "L", "LA", "RGBA", "P", "1", "CMYK", "I;16", "I", "F"]
_FORMATS = ["JPEG", "PNG", "WEBP", "BMP", "TIFF", "GIF"]
_DAMAGE = ["none", "none", "truncate", "flip", "prefix", "suffix", "header"]


@cache
def _base(data: bytes) -> Image.Image:
    """A photo, upright and at most 480 px wide: real faces at a size the models handle quickly."""
    image = Image.open(io.BytesIO(data))
    image.load()
    image = image.convert("RGB")
    image.thumbnail((480, 480))
    return image


def _encode(image: Image.Image, fmt: str, orientation: int) -> bytes:
    out = io.BytesIO()
    kwargs: dict[str, Any] = {}
    if orientation != 1 and fmt in ("JPEG", "PNG", "WEBP", "TIFF"):
        exif = Image.Exif()
        exif[0x0112] = orientation
        kwargs["exif"] = exif.tobytes()
    try:
        image.save(out, fmt, **kwargs)
    except (OSError, ValueError, KeyError, TypeError):  # a mode this format cannot hold
        out = io.BytesIO()
        image.convert("RGB").save(out, fmt, **kwargs)
    return out.getvalue()


class OddPhoto:
    """A photo's bytes and how they were made: a failure report shows the recipe, not megabytes of bytes."""

    __slots__ = ("data", "recipe")

    def __init__(self, data: bytes, recipe: str) -> None:
        self.data = data
        self.recipe = recipe

    def __repr__(self) -> str:
        return f"OddPhoto({self.recipe}, {len(self.data)} bytes)"


@st.composite
def odd_photos(draw: st.DrawFn, photos: Sequence[bytes]) -> OddPhoto:
    """A photo of `photos` (or a blank one) resized, converted, re-encoded with any EXIF orientation, maybe damaged."""
    index = draw(st.integers(0, len(photos)))
    base = _base(photos[index]) if index < len(photos) else Image.new("RGB", (200, 150), (90, 120, 200))
    size = draw(st.sampled_from(_SIZES))
    if size is not None:
        base = base.resize(size)
    mode = draw(st.sampled_from(_MODES))
    if mode != "RGB":
        base = base.convert(mode)
    fmt, orientation = draw(st.sampled_from(_FORMATS)), draw(st.integers(1, 8))
    data = _encode(base, fmt, orientation)
    damage = draw(st.sampled_from(_DAMAGE))
    if damage == "truncate":
        data = data[: draw(st.integers(0, len(data) - 1))]
    elif damage == "flip":
        mutable = bytearray(data)
        for position in draw(st.lists(st.integers(0, len(data) - 1), min_size=1, max_size=8)):
            mutable[position] ^= 0xFF
        data = bytes(mutable)
    elif damage == "prefix":
        data = draw(st.binary(min_size=1, max_size=16)) + data
    elif damage == "suffix":
        data = data + draw(st.binary(min_size=1, max_size=4096))
    elif damage == "header":
        data = data[:64]
    recipe = f"photo {index}, size {size or 'kept'}, {mode} {fmt}, orientation {orientation}, damage {damage}"
    return OddPhoto(data, recipe)
