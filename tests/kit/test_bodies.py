"""Upload and base64 handling shared by both services."""

from __future__ import annotations

import base64

import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route
from starlette.testclient import TestClient

from faceauth.kit.bodies import decode_base64_image, keep_uploads_in_memory
from faceauth.kit.errors import AppError


async def _where(request: Request) -> JSONResponse:
    form = await request.form()
    upload = form["file"]
    data = await upload.read()
    return JSONResponse({"bytes": len(data), "on_disk": bool(upload.file._rolled)})


def test_a_phone_sized_photo_is_not_written_to_a_temporary_file():
    keep_uploads_in_memory(10 * 1024 * 1024)
    photo = bytes(range(256)) * (3 * 1024 * 1024 // 256)  # 3 MiB: past Starlette's 1 MiB default
    with TestClient(Starlette(routes=[Route("/", _where, methods=["POST"])])) as client:
        answer = client.post("/", files={"file": ("p.jpg", photo, "image/jpeg")}).json()
    assert answer == {"bytes": len(photo), "on_disk": False}


def _refusal(text: str, limit: int = 1000) -> tuple[int, str, dict | None]:
    with pytest.raises(AppError) as refused:
        decode_base64_image(text, limit, field="probes_b64[1]")
    return refused.value.status, refused.value.code, refused.value.details


def test_b64_accepts_standard_urlsafe_and_data_urls():
    payload = bytes(range(256))
    std = base64.b64encode(payload).decode()
    assert decode_base64_image(std, 1024) == payload
    assert decode_base64_image(base64.urlsafe_b64encode(payload).decode().rstrip("="), 1024) == payload
    assert decode_base64_image("data:image/jpeg;base64," + std, 1024) == payload


@pytest.mark.parametrize(
    ("text", "code"),
    [("", "empty_image"), ("   ", "empty_image"), ("@@not base64@@", "invalid_base64"), ("a", "invalid_base64")],
)
def test_b64_errors(text, code):
    with pytest.raises(AppError) as info:
        decode_base64_image(text, 1024)
    assert info.value.code == code and info.value.status == 400


def test_b64_oversize_is_refused_before_decoding():
    with pytest.raises(AppError) as info:
        decode_base64_image("A" * 4000, 1024)
    assert (info.value.status, info.value.code) == (413, "payload_too_large")


def test_base64_with_line_breaks_as_other_tools_write_it():
    data = bytes(range(256)) * 3
    standard = base64.b64encode(data).decode()
    wrapped = "\n".join(standard[i : i + 76] for i in range(0, len(standard), 76))
    assert decode_base64_image(f"data:image/jpeg;base64,{wrapped}", 1000) == data


def test_base64_refusals_name_the_field_and_an_oversized_one_is_refused_by_its_length():
    assert _refusal("%%% not base64") == (400, "invalid_base64", {"field": "probes_b64[1]"})
    assert _refusal("   ") == (400, "empty_image", {"field": "probes_b64[1]"})
    # 2 MB of text for a 1000-byte limit: refused without decoding it
    assert _refusal("A" * 2_000_000) == (413, "payload_too_large", {"field": "probes_b64[1]"})
    # just over the limit once decoded
    assert _refusal(base64.b64encode(b"x" * 1001).decode()) == (413, "payload_too_large", {"field": "probes_b64[1]"})


def test_a_whitespace_padded_field_costs_at_most_twice_its_size():
    import tracemalloc

    payload = (bytes(range(256)) * 4)[:1023]  # a multiple of 3: no padding, so the text repeats
    chunk = base64.b64encode(payload).decode()
    # 10 MiB of base64 where every character is followed by a space or a line break.
    text = "".join(c + (" " if i % 2 else "\n") for i, c in enumerate(chunk))
    text = text * (10 * 1024 * 1024 // len(text))
    tracemalloc.start()
    try:
        decoded = decode_base64_image(text, 20 * 1024 * 1024)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert decoded[: len(payload)] == payload
    assert peak <= 2 * len(text), f"peak {peak / len(text):.2f} times the field's size"
