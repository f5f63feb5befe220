"""Hostile and broken requests through the Face API: always a 4xx with a stable code and the request id."""

from __future__ import annotations

import io

import numpy as np
from PIL import Image


def _png(width: int, height: int) -> bytes:
    out = io.BytesIO()
    Image.fromarray(np.zeros((height, width, 3), np.uint8)).save(out, format="PNG", optimize=True)
    return out.getvalue()


def _answer(r) -> tuple[int, str]:
    assert 400 <= r.status_code < 500, (r.status_code, r.text[:300])
    body = r.json()
    assert body["requestId"] == r.headers["x-request-id"]
    return r.status_code, body["error"]["code"]


def test_too_many_parts_and_oversized_fields_are_refused(api):
    many_fields = [("ids", str(i)) for i in range(5000)]
    assert _answer(api.post("/v1/faces/batch/insert", data={"tenant": "acme"} | {}, files=many_fields)) == (
        400,
        "bad_request",
    )
    many_files = [("files", (f"{i}.jpg", b"x")) for i in range(500)]
    assert (
        _answer(api.post("/v1/faces/batch/insert", data={"tenant": "acme", "ids": ["a"]}, files=many_files))[0] == 400
    )
    huge_field = "A" * (20 * 1024 * 1024)
    status, _ = _answer(api.post("/v1/faces/search", data={"tenant": "acme", "image_b64": huge_field}))
    assert status == 413
    long_tenant = "t" * 100_000
    assert _answer(api.post("/v1/faces/search", data={"tenant": long_tenant}, files={"file": ("p", b"x")})) == (
        422,
        "validation_error",
    )


def test_wrong_and_broken_content_types_are_4xx(api):
    for headers, body in (
        ({"Content-Type": "text/plain"}, b"id=a&tenant=b"),
        ({"Content-Type": "multipart/form-data"}, b"--x\r\nnot a multipart body"),  # no boundary
        ({"Content-Type": "multipart/form-data; boundary=x"}, b"--x\r\nContent-Disposition: form-data\r\n\r\n"),
        ({"Content-Type": "application/json"}, b'{"id": "a", "tenant": "b"}'),
    ):
        status, code = _answer(api.post("/v1/faces/insert", content=body, headers=headers))
        assert status in (400, 422) and code in ("bad_request", "validation_error"), (headers, status, code)
    assert (
        _answer(api.post("/compare-faces", content=b"{not json", headers={"Content-Type": "application/json"}))[0]
        == 422
    )
    assert _answer(api.post("/v1/faces/cluster", content=b"[]", headers={"Content-Type": "application/json"}))[0] == 422


def test_bad_images_through_the_face_api_get_the_ml_services_codes(api, photos, people):
    good = photos(people[0].enrol_photo)
    cases = {
        "truncated": (good[: len(good) // 3], {"image_truncated", "invalid_image"}),
        "not an image": (b"GIF89a" + b"\x00" * 50, {"invalid_image", "unsupported_image_format"}),
        "pixel bomb": (_png(12000, 12000), {"image_too_many_pixels"}),
        "tiny": (_png(4, 4), {"no_face_detected", "face_too_small", "quality_check_failed"}),
    }
    for name, (data, codes) in cases.items():
        r = api.post("/v1/faces/insert", data={"id": "x", "tenant": "acme"}, files={"file": ("p", data)})
        status, code = _answer(r)
        assert status in (400, 413, 415, 422) and code in codes, (name, status, code)
    assert _answer(api.post("/v1/faces/insert", data={"id": "x", "tenant": "acme"}, files={"file": ("p", b"")})) == (
        400,
        "empty_image",
    )


def test_an_oversized_body_is_cut_off_with_413(make_api):
    with make_api(max_image_bytes=64 * 1024) as api:
        r = api.post("/v1/faces/insert", data={"id": "x", "tenant": "acme"}, files={"file": ("p", b"\xff" * 300_000)})
        assert _answer(r) == (413, "payload_too_large")
