"""/metrics of both services, read after real requests: route templates, statuses, store / ML / model timings."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from prometheus_client.parser import text_string_to_metric_families

from bench.servers.process import free_port
from faceauth.inference.app import create_app as create_ml_app
from faceauth.inference.app import load_service
from faceauth.inference.service import InferenceService
from tests.apitest import enrol, search
from tests.inference.conftest import ml_settings

Samples = dict[tuple[str, frozenset], float]


def scrape(client: TestClient) -> Samples:
    r = client.get("/metrics")
    assert r.status_code == 200, r.text
    assert r.headers["content-type"].startswith("text/plain")
    return {
        (s.name, frozenset(s.labels.items())): s.value
        for family in text_string_to_metric_families(r.text)
        for s in family.samples
    }


def value(samples: Samples, name: str, **labels: str) -> float:
    return samples.get((name, frozenset(labels.items())), 0.0)


def delta(before: Samples, after: Samples, name: str, **labels: str) -> float:
    return value(after, name, **labels) - value(before, name, **labels)


def requests_delta(before: Samples, after: Samples, service: str, route: str, method: str, status: int) -> float:
    labels = {"service": service, "route": route, "method": method, "status": str(status)}
    return delta(before, after, "faceauth_http_requests_total", **labels)


# -- the Face API ----------------------------------------------------------------------------------------------


def test_face_api_counts_requests_by_route_template_and_times_its_stores(api, people, photos):
    before = scrape(api)
    assert enrol(api, "acme", "emp_1", photos(people[0].enrol_photo)).status_code == 200
    assert search(api, "acme", photos(people[0].probe_photo)).status_code == 200
    assert api.get("/v1/faces/get/emp_1", params={"tenant": "acme"}).status_code == 200
    assert api.get("/v1/faces/get/nobody_here", params={"tenant": "acme"}).status_code == 404
    # Refused by the key check before routing: still counted under the route it was for.
    refused = api.get("/v1/faces/get/emp_1", params={"tenant": "acme"}, headers={"X-Api-Key": "fa_bogus"})
    assert refused.status_code == 401
    assert api.get("/no/such/path/emp_1").status_code == 404
    after = scrape(api)

    assert requests_delta(before, after, "face_api", "/v1/faces/insert", "POST", 200) == 1
    assert requests_delta(before, after, "face_api", "/v1/faces/search", "POST", 200) == 1
    assert requests_delta(before, after, "face_api", "/v1/faces/get/{face_id}", "GET", 200) == 1
    assert requests_delta(before, after, "face_api", "/v1/faces/get/{face_id}", "GET", 404) == 1
    assert requests_delta(before, after, "face_api", "/v1/faces/get/{face_id}", "GET", 401) == 1
    assert requests_delta(before, after, "face_api", "unmatched", "GET", 404) == 1
    duration = {"service": "face_api", "route": "/v1/faces/insert", "method": "POST"}
    assert delta(before, after, "faceauth_http_request_duration_seconds_count", **duration) == 1
    assert delta(before, after, "faceauth_http_request_duration_seconds_sum", **duration) > 0

    # Labels are templates and fixed names only: no face id, tenant or raw path ever becomes a series.
    text = api.get("/metrics").text
    for unbounded in ("emp_1", "nobody_here", "acme", "/no/such/path"):
        assert unbounded not in text

    # Every store call is timed, per store and operation.
    for store, op in (("milvus", "insert"), ("milvus", "search"), ("objects", "put")):
        assert delta(before, after, "faceauth_store_call_seconds_count", store=store, op=op) >= 1, (store, op)
        assert delta(before, after, "faceauth_store_call_seconds_sum", store=store, op=op) > 0
    assert value(after, "faceauth_store_call_seconds_count", store="milvus", op="open") == 1
    assert value(after, "faceauth_store_call_seconds_count", store="objects", op="open") == 1
    assert value(after, "faceauth_store_errors_total", store="milvus", op="insert") == 0

    # One /v1/analyze call to the ML service per photo (enrol, search).
    assert delta(before, after, "faceauth_ml_call_seconds_count", endpoint="/v1/analyze") == 2
    assert delta(before, after, "faceauth_ml_call_errors_total", endpoint="/v1/analyze") == 0

    # /metrics is left out of the API's schema.
    assert "/metrics" not in api.get("/openapi.json").json()["paths"]


def test_a_failing_object_store_is_counted_as_errors(api):
    objects = api.app.state.container.objects
    before = scrape(api)
    hidden = objects.root.with_name(objects.root.name + ".hidden")
    objects.root.rename(hidden)  # the folder vanished (an unmounted volume): every call fails
    try:
        r = api.get("/readyz")
    finally:
        hidden.rename(objects.root)
    assert r.status_code == 503 and r.json()["checks"]["object_store"]["status"] == "down"
    after = scrape(api)
    assert delta(before, after, "faceauth_store_errors_total", store="objects", op="ping") == 1
    assert delta(before, after, "faceauth_store_call_seconds_count", store="objects", op="ping") == 1
    assert delta(before, after, "faceauth_store_errors_total", store="milvus", op="ping") == 0
    assert delta(before, after, "faceauth_store_call_seconds_count", store="milvus", op="ping") == 1
    assert requests_delta(before, after, "face_api", "/readyz", "GET", 503) == 1


def test_ml_service_unreachable_is_counted_as_ml_call_errors(make_api, people, photos):
    with make_api(ml_inference_service_url=f"http://127.0.0.1:{free_port()}", ml_connect_retries=0) as api:
        before = scrape(api)
        assert enrol(api, "acme", "emp_1", photos(people[0].enrol_photo)).status_code == 503
        after = scrape(api)
    assert delta(before, after, "faceauth_ml_call_errors_total", endpoint="/v1/analyze") == 1
    assert delta(before, after, "faceauth_ml_call_seconds_count", endpoint="/v1/analyze") == 1
    assert requests_delta(before, after, "face_api", "/v1/faces/insert", "POST", 503) == 1


def test_each_app_has_its_own_registry(make_api, tmp_path):
    with make_api(tmp_path / "first") as first, make_api(tmp_path / "second") as second:
        assert first.app.state.metrics.registry is not second.app.state.metrics.registry
        first.get("/healthz")
        labels = {"service": "face_api", "route": "/healthz", "method": "GET", "status": "200"}
        assert value(scrape(first), "faceauth_http_requests_total", **labels) == 1
        assert value(scrape(second), "faceauth_http_requests_total", **labels) == 0


# -- the ML service --------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def ml_service_models(spoof_model_path: Path, tmp_path_factory) -> Iterator[InferenceService]:
    """The real models, behind one worker and no waiting room (capacity 1: overload is cheap to reach)."""
    settings = ml_settings(spoof_model_path, tmp_path_factory.mktemp("models"), workers=1, max_queue=0)
    service = load_service(settings)
    yield service
    service.pool.shutdown()


@pytest.fixture
def ml(ml_service_models: InferenceService):
    with TestClient(create_ml_app(ml_service_models.settings, service=ml_service_models)) as client:
        yield client


def test_ml_service_metrics_cover_requests_models_batches_and_overload(ml, photos, people):
    photo = photos(people[0].enrol_photo)
    octet = {"Content-Type": "application/octet-stream"}
    before = scrape(ml)
    assert ml.post("/v1/embed", content=photo, headers=octet).status_code == 200
    assert ml.post("/v1/detect", content=photo, headers=octet).status_code == 200
    assert ml.post("/v1/embed", content=b"not an image", headers=octet).status_code == 422
    files = [("files", ("a.jpg", photo, "image/jpeg")), ("files", ("b.jpg", photo, "image/jpeg"))]
    assert ml.post("/v1/analyze/batch", files=files).status_code == 200

    pool = ml.app.state.service.pool
    with pool.reserve(pool.capacity):  # every unit taken, as by requests in flight
        during = scrape(ml)
        busy = ml.post("/v1/embed", content=photo, headers=octet)
    assert busy.status_code == 503 and busy.json()["error"]["code"] == "overloaded"
    after = scrape(ml)

    assert requests_delta(before, after, "ml_service", "/v1/embed", "POST", 200) == 1
    assert requests_delta(before, after, "ml_service", "/v1/embed", "POST", 422) == 1
    assert requests_delta(before, after, "ml_service", "/v1/embed", "POST", 503) == 1
    assert requests_delta(before, after, "ml_service", "/v1/detect", "POST", 200) == 1
    assert requests_delta(before, after, "ml_service", "/v1/analyze/batch", "POST", 200) == 1

    # Per image and step: embed (1) + detect (1) + a batch of 2; the refused image never reached a model.
    assert delta(before, after, "faceauth_model_inference_seconds_count", model="embed") == 3
    assert delta(before, after, "faceauth_model_inference_seconds_count", model="detect") == 4
    assert delta(before, after, "faceauth_model_inference_seconds_count", model="nsfw") == 2
    assert delta(before, after, "faceauth_model_inference_seconds_sum", model="embed") > 0
    assert delta(before, after, "faceauth_ml_batch_images_count") == 1
    assert delta(before, after, "faceauth_ml_batch_images_sum") == 2

    assert value(during, "faceauth_ml_queue_depth") == pool.capacity
    assert value(after, "faceauth_ml_queue_depth") == 0
    assert value(after, "faceauth_ml_pool_capacity") == pool.capacity
    assert delta(before, after, "faceauth_ml_rejected_total") == 1
    # The Face API's own series are not exported by the ML service, and vice versa.
    assert not any(name.startswith("faceauth_store_call") for name, _ in after)
