"""Which calls the SDK sends again, under injected faults: httpx.MockTransport plays a Face API that fails
(a fault-injection fake; the real server is in test_client.py)."""

from __future__ import annotations

import httpx
import pytest

from faceauth.sdk import FaceAuthClient, FaceAuthConnectionError, RateLimitedError, UnavailableError

FACE = {
    "requestId": "r1",
    "face_id": "f",
    "subject_id": "f",
    "tenant": "t",
    "object_key": "t/f/1",
    "model_id": "m",
    "created_at": "2026-01-01T00:00:00.000Z",
}


def _error(status: int, code: str, retry_after: str | None = "0") -> httpx.Response:
    headers = {"Retry-After": retry_after} if retry_after is not None else {}
    body = {"requestId": "r0", "error": {"code": code, "message": code}}
    return httpx.Response(status, json=body, headers=headers)


def _client(answers: list, seen: list[httpx.Request], **kwargs) -> FaceAuthClient:
    """A client whose transport gives `answers` in turn (an exception is raised as the transport's failure)."""

    def handle(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        answer = answers.pop(0)
        if isinstance(answer, Exception):
            raise answer
        return answer

    http = httpx.Client(base_url="http://faceauth.test", transport=httpx.MockTransport(handle))
    return FaceAuthClient("http://faceauth.test", "fa_x", http_client=http, **kwargs)


def test_a_read_is_retried_on_503_and_429_honouring_retry_after():
    seen: list[httpx.Request] = []
    client = _client(
        [_error(503, "vector_store_unavailable"), _error(429, "rate_limited"), httpx.Response(200, json=FACE)], seen
    )
    assert client.get("f").face_id == "f"
    assert len(seen) == 3


def test_an_insert_that_may_have_reached_the_server_is_never_sent_again():
    seen: list[httpx.Request] = []
    client = _client([_error(503, "write_incomplete")], seen)
    with pytest.raises(UnavailableError) as caught:
        client.insert("f", b"photo")
    assert len(seen) == 1 and caught.value.retry_after == 0
    seen.clear()
    client = _client([httpx.ReadTimeout("lost answer")], seen)
    with pytest.raises(FaceAuthConnectionError):
        client.insert("f", b"photo")
    assert len(seen) == 1


def test_an_insert_is_sent_again_when_it_never_left_or_was_rate_limited():
    seen: list[httpx.Request] = []
    enrolled = {
        "requestId": "r",
        "imageQualityAssessment": {"passed": True, "reasons": [], "checks": {}},
        "userOperationResult": {"operation": "INSERT", "status": "success"},
        "face": {k: v for k, v in FACE.items() if k != "requestId"},
    }
    answers = [httpx.ConnectError("refused"), _error(429, "rate_limited"), httpx.Response(200, json=enrolled)]
    client = _client(answers, seen)
    try:
        client.insert("f", b"photo")
    except Exception as exc:  # the assessment's shape is the server's; only the count matters here
        assert not isinstance(exc, FaceAuthConnectionError | RateLimitedError), exc
    assert len(seen) == 3


def test_retries_are_bounded_and_the_wait_capped():
    seen: list[httpx.Request] = []
    client = _client([_error(429, "rate_limited", "3600")] * 3, seen, retries=2, max_retry_wait=0.01)
    with pytest.raises(RateLimitedError) as caught:
        client.get("f")
    assert len(seen) == 3 and caught.value.retry_after == 3600
