"""Upload handling shared by both services."""

from __future__ import annotations

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route
from starlette.testclient import TestClient

from faceauth.kit.bodies import keep_uploads_in_memory


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
