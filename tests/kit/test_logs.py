"""JSON logs of both services: one object per line, the request's id on each, and no secrets or photos in them."""

from __future__ import annotations

import base64
import copy
import io
import json
import logging
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from fastapi.testclient import TestClient

from bench.servers.process import free_port
from faceauth.cli import configure_logging
from faceauth.inference.app import create_app as create_ml_app
from faceauth.inference.app import load_service
from faceauth.inference.service import InferenceService
from faceauth.kit.logs import JsonFormatter, make_handler
from tests.inference.conftest import ml_settings

KEY_SENTINEL = "secret-sentinel-123"
BEARER_SENTINEL = "bearer-sentinel-456"
QUERY_SENTINEL = "query-sentinel-789"


class Captured:
    def __init__(self, stream: io.StringIO) -> None:
        self.stream = stream

    @property
    def text(self) -> str:
        return self.stream.getvalue()

    def records(self) -> list[dict]:
        """Every line, parsed: each one must be a JSON object."""
        return [json.loads(line) for line in self.text.splitlines() if line.strip()]

    def of_request(self, request_id: str) -> list[dict]:
        return [r for r in self.records() if r.get("requestId") == request_id]


@pytest.fixture
def captured() -> Iterator[Captured]:
    """The root logger's output at INFO through the services' JSON handler (as `faceauth api|ml` set it up)."""
    stream = io.StringIO()
    handler = make_handler("json", stream)
    root = logging.getLogger()
    level = root.level
    # The test client's own HTTP library logs the requests *it* sends (secrets included): not a service's log.
    client_side = logging.getLogger("httpx2")
    client_level = client_side.level
    root.addHandler(handler)
    root.setLevel(logging.INFO)
    client_side.setLevel(logging.WARNING)
    try:
        yield Captured(stream)
    finally:
        root.removeHandler(handler)
        root.setLevel(level)
        client_side.setLevel(client_level)


def assert_clean(text: str, *secrets: str) -> None:
    for secret in secrets:
        assert secret not in text, f"{secret[:40]!r} reached the logs"


# -- the Face API ----------------------------------------------------------------------------------------------


def test_face_api_logs_carry_the_request_id_and_no_secret_or_photo(api, people, photos, captured):
    photo_b64 = base64.b64encode(photos(people[0].enrol_photo)).decode()
    form = {"id": "emp_1", "tenant": "acme", "image_b64": photo_b64}

    ok = api.post("/v1/faces/insert", data=form, headers={"X-Request-ID": "log-test-ok"})
    assert ok.status_code == 200, ok.text
    # A made-up key, in both headers, with a photo and a secret in the query string: refused, and logged clean.
    bad_key = api.post(
        f"/v1/faces/insert?token={QUERY_SENTINEL}",
        data=form,
        headers={"X-Api-Key": KEY_SENTINEL, "X-Request-ID": "log-test-key"},
    )
    assert bad_key.status_code == 401
    admin_key = api.headers.pop("x-api-key")  # so the made-up bearer token is the only credential sent
    try:
        bearer = {"Authorization": f"Bearer {BEARER_SENTINEL}", "X-Request-ID": "log-test-bearer"}
        assert api.post("/v1/faces/insert", data=form, headers=bearer).status_code == 401
    finally:
        api.headers["x-api-key"] = admin_key
    # A presigned image link carries its token in the path.
    assert api.get(f"/v1/images/{QUERY_SENTINEL}", headers={"X-Request-ID": "log-test-link"}).status_code >= 400

    records = captured.records()  # every line is JSON
    assert records
    for record in records:
        assert {"ts", "level", "logger", "msg"} <= record.keys()

    (access,) = [r for r in captured.of_request("log-test-ok") if r["logger"] == "faceauth.access"]
    assert access["path"] == "/v1/faces/insert" and access["route"] == "/v1/faces/insert"
    assert access["status"] == 200 and access["method"] == "POST" and access["duration_ms"] > 0
    (refused,) = [r for r in captured.of_request("log-test-key") if r["logger"] == "faceauth.access"]
    assert refused["status"] == 401 and refused["path"] == "/v1/faces/insert"
    (link,) = [r for r in captured.of_request("log-test-link") if r["logger"] == "faceauth.access"]
    assert link["route"] == "/v1/images/{token}" and link["path"] == "/v1/images/[redacted]"

    text = captured.text
    assert_clean(text, KEY_SENTINEL, BEARER_SENTINEL, QUERY_SENTINEL, admin_key)
    assert_clean(text, photo_b64[:48], photo_b64[len(photo_b64) // 2 :][:48], photo_b64[-48:])


def test_an_unexpected_error_is_logged_with_its_traceback_and_request_id(api, captured, monkeypatch):
    async def broken(*args: object) -> None:
        raise RuntimeError("a bug in the store")

    monkeypatch.setattr(api.app.state.container.faces, "get", broken)
    with pytest.raises(RuntimeError):  # the test client re-raises what the server answered with a 500
        api.get("/v1/faces/get/emp_1", params={"tenant": "acme"}, headers={"X-Request-ID": "log-test-bug"})
    lines = captured.of_request("log-test-bug")
    (error,) = [r for r in lines if r["level"] == "ERROR"]
    assert "RuntimeError: a bug in the store" in error["exc"] and error["msg"] == "unhandled error"
    assert [r["status"] for r in lines if r["logger"] == "faceauth.access"] == [500]


# -- the ML service --------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def ml_models(spoof_model_path: Path, tmp_path_factory) -> Iterator[InferenceService]:
    service = load_service(ml_settings(spoof_model_path, tmp_path_factory.mktemp("models")))
    yield service
    service.pool.shutdown()


def test_ml_service_logs_carry_the_request_id_and_no_photo(ml_models, photos, people, captured):
    photo_b64 = base64.b64encode(photos(people[0].enrol_photo)).decode()
    with TestClient(create_ml_app(ml_models.settings, service=ml_models)) as ml:
        ok = ml.post("/v1/embed", json={"image_b64": photo_b64}, headers={"X-Request-ID": "ml-log-ok"})
        assert ok.status_code == 200
        bad = ml.post("/v1/embed", json={"image_b64": "bm90IGFuIGltYWdl"}, headers={"X-Request-ID": "ml-log-bad"})
        assert bad.status_code == 422
    (access,) = [r for r in captured.of_request("ml-log-ok") if r["logger"] == "faceauth.access"]
    assert access["route"] == "/v1/embed" and access["status"] == 200
    assert [r["status"] for r in captured.of_request("ml-log-bad") if r["logger"] == "faceauth.access"] == [422]
    assert_clean(captured.text, photo_b64[:48], photo_b64[-48:], "bm90IGFuIGltYWdl")
    embedding_start = json.dumps(ok.json()["embedding"][:3])[1:-1]
    assert_clean(captured.text, embedding_start)


def test_the_cli_logs_uvicorn_as_json_without_query_strings(ml_models, monkeypatch, capsys):
    """`faceauth ml|api` set-up: uvicorn's own lines (start-up, and its access log if turned on) come out as JSON
    through the same handler, and its access lines lose the query string."""
    import uvicorn
    from uvicorn.config import LOGGING_CONFIG

    root = logging.getLogger()
    saved_handlers, saved_level, saved_config = list(root.handlers), root.level, copy.deepcopy(LOGGING_CONFIG)
    monkeypatch.setenv("FACEAUTH_LOG_FORMAT", "json")
    port = free_port()
    try:
        root.handlers[:] = []  # as at a real start (the test runner's capture would otherwise be kept instead)
        configure_logging("info")
        app = create_ml_app(ml_models.settings, service=ml_models)
        config = uvicorn.Config(app, host="127.0.0.1", port=port, access_log=True, log_level="info")
        server = uvicorn.Server(config)
        thread = threading.Thread(target=server.run, daemon=True)
        thread.start()
        deadline = time.monotonic() + 30
        while not server.started and time.monotonic() < deadline:
            time.sleep(0.05)
        assert server.started
        r = httpx.get(f"http://127.0.0.1:{port}/healthz?token={QUERY_SENTINEL}", headers={"X-Request-ID": "uv-1"})
        assert r.status_code == 200
        server.should_exit = True
        thread.join(timeout=10)
    finally:
        LOGGING_CONFIG.clear()
        LOGGING_CONFIG.update(saved_config)
        root.handlers[:] = saved_handlers
        root.setLevel(saved_level)

    err = capsys.readouterr().err
    lines = [json.loads(line) for line in err.splitlines() if line.startswith("{")]
    assert all(line.startswith("{") for line in err.splitlines() if line.strip()), err
    assert any(r["logger"] == "uvicorn.error" and "Uvicorn running" in r["msg"] for r in lines)
    (access,) = [r for r in lines if r["logger"] == "uvicorn.access"]
    assert "GET /healthz HTTP/1.1" in access["msg"] and access["requestId"] == "uv-1"
    assert_clean(err, QUERY_SENTINEL)


# -- the formatter's safety net --------------------------------------------------------------------------------


def test_sensitive_extra_fields_are_redacted_and_long_ones_cut():
    stream = io.StringIO()
    logger = logging.getLogger("faceauth.tests.redaction")
    logger.addHandler(make_handler("json", stream))
    logger.setLevel(logging.INFO)
    logger.propagate = False
    try:
        logger.info(
            "hello %s",
            "world",
            extra={
                "api_key": KEY_SENTINEL,
                "Authorization": f"Bearer {BEARER_SENTINEL}",
                "access_token": QUERY_SENTINEL,
                "client_secret": "s3cr3t-value",
                "embedding": [0.123456, 0.654321],
                "image_b64": "aGVsbG8gd29ybGQ=",
                "payload": "x" * 5000,
                "blob": b"\xff\xd8\xff\xe0",
                "faces": 3,
            },
        )
        # As httpx logs a fetched URL (a presigned link's signature is in its query).
        url = httpx.URL(f"http://127.0.0.1:9000/bucket/k.jpg?X-Amz-Signature={QUERY_SENTINEL}")
        logger.info('HTTP Request: %s %s "%s %d %s"', "GET", url, "HTTP/1.1", 200, "OK")
    finally:
        logger.removeHandler(logger.handlers[0])
    record, fetch = [json.loads(line) for line in stream.getvalue().splitlines()]
    assert fetch["msg"] == 'HTTP Request: GET http://127.0.0.1:9000/bucket/k.jpg "HTTP/1.1 200 OK"'
    assert record["msg"] == "hello world" and record["level"] == "INFO" and record["logger"] == logger.name
    assert "requestId" not in record  # outside a request
    for name in ("api_key", "Authorization", "access_token", "client_secret", "embedding", "image_b64"):
        assert record[name] == "[redacted]"
    assert record["faces"] == 3 and record["blob"] == "<4 bytes>" and len(record["payload"]) < 600
    assert_clean(stream.getvalue(), KEY_SENTINEL, BEARER_SENTINEL, QUERY_SENTINEL, "s3cr3t", "0.123456", "aGVsbG8")


def test_exceptions_go_in_exc():
    formatter = JsonFormatter()
    try:
        raise ValueError("boom")
    except ValueError:
        record = logging.makeLogRecord({"msg": "failed", "levelname": "ERROR", "name": "x"})
        record.exc_info = sys.exc_info()
    out = json.loads(formatter.format(record))
    assert out["msg"] == "failed" and "ValueError: boom" in out["exc"] and "Traceback" in out["exc"]
