"""The Face API's ML client: what is retried (only failures to connect) and how each answer is classified.

`FaultInjector` is a fake transport used only to inject failures (connection refused, timeouts, error answers);
the client's behaviour against the real ML service is covered by the Face API tests.
"""

from __future__ import annotations

import asyncio

import httpx
import pytest

from faceauth.ml_client import MLClient, MLImageRejected, MLServiceUnavailable

ANALYZE_OK = {
    "passed": True,
    "reasons": [],
    "nsfw": {"is_safe": True, "probability": 0.0},
    "spoof": {"is_spoof": False, "probability": 0.01},
    "blur": {"is_sharp": True, "probability": 0.02},
    "face_detected": True,
    "faces_count": 1,
    "model_id": "buffalo_s/w600k_mbf@test",
    "embedding": [0.5] * 4,
}


class FaultInjector(httpx.AsyncBaseTransport):
    """Fault injection only: plays a script of outcomes (an exception to raise or a response to give)."""

    def __init__(self, *outcomes: object) -> None:
        self.outcomes = list(outcomes)
        self.calls = 0

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        self.calls += 1
        outcome = self.outcomes.pop(0) if len(self.outcomes) > 1 else self.outcomes[0]
        if isinstance(outcome, Exception):
            raise outcome
        return outcome  # type: ignore[return-value]


def error(status: int, code: str, headers: dict | None = None) -> httpx.Response:
    return httpx.Response(status, json={"requestId": "x", "error": {"code": code, "message": code}}, headers=headers)


def analyze(transport: FaultInjector, retries: int = 2):
    async def run():
        client = MLClient("http://ml.invalid", connect_retries=retries, transport=transport)
        try:
            return await client.analyze(b"jpeg bytes", request_id="req-1")
        finally:
            await client.aclose()

    return asyncio.run(run())


def test_a_refused_connection_is_retried_and_then_succeeds():
    transport = FaultInjector(
        httpx.ConnectError("refused"), httpx.ConnectError("refused"), httpx.Response(200, json=ANALYZE_OK)
    )
    result = analyze(transport)
    assert transport.calls == 3
    assert result.passed and result.model_id == "buffalo_s/w600k_mbf@test" and result.embedding.shape == (4,)


def test_retries_are_bounded():
    transport = FaultInjector(httpx.ConnectError("refused"))
    with pytest.raises(MLServiceUnavailable) as info:
        analyze(transport, retries=2)
    assert transport.calls == 3 and info.value.code == "ml_service_unavailable" and info.value.status == 503


def test_a_timeout_after_sending_is_not_retried():
    transport = FaultInjector(httpx.ReadTimeout("slow"))
    with pytest.raises(MLServiceUnavailable) as info:
        analyze(transport)
    assert transport.calls == 1 and info.value.code == "ml_service_timeout"


def test_overload_keeps_its_code_and_retry_after_and_is_not_retried():
    transport = FaultInjector(error(503, "overloaded", {"Retry-After": "2"}))
    with pytest.raises(MLServiceUnavailable) as info:
        analyze(transport)
    assert transport.calls == 1
    assert (info.value.code, info.value.retry_after) == ("ml_overloaded", "2")


@pytest.mark.parametrize(("status", "code"), [(422, "invalid_image"), (413, "payload_too_large"), (400, "empty_image")])
def test_a_refused_photo_is_the_callers_problem(status, code):
    with pytest.raises(MLImageRejected) as info:
        analyze(FaultInjector(error(status, code)))
    assert (info.value.status, info.value.code) == (status, code)


@pytest.mark.parametrize("response", [error(401, "unauthorized"), error(500, "internal_error"), httpx.Response(502)])
def test_a_deployment_fault_is_a_503_not_the_callers_problem(response):
    with pytest.raises(MLServiceUnavailable) as info:
        analyze(FaultInjector(response))
    assert info.value.status == 503 and info.value.code == "ml_service_error"


def test_the_environments_proxy_is_never_used(ml_service, server, monkeypatch: pytest.MonkeyPatch):
    """Photos and the internal token must not travel through HTTP(S)_PROXY: `server` stands in as that proxy."""
    for name in ("NO_PROXY", "no_proxy"):
        monkeypatch.delenv(name, raising=False)
    for name in ("HTTP_PROXY", "http_proxy", "ALL_PROXY", "all_proxy"):
        monkeypatch.setenv(name, server.url(""))

    async def ready() -> dict:
        client = MLClient(ml_service.url, token=ml_service.token)
        try:
            return await client.ready()
        finally:
            await client.aclose()

    assert asyncio.run(ready())["status"] in ("ok", "degraded")
    assert server.requests == []
