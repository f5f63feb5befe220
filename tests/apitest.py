"""Fixtures and helpers for the Face API tests: both real services, real stores (a pytest plugin, see conftest).

Identities come from the labelled pairs (master.csv), not from file names written here: same-person pairs
are joined into people, and only photos the ML service accepts (one face, quality passed) are used.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
from fastapi.testclient import TestClient

from bench.photos import accepted_by_ml, people_from_pairs
from faceauth.api.app import create_app
from faceauth.config import APISettings
from tests.conftest import require


@dataclass(frozen=True)
class Person:
    photos: tuple[str, ...]  # file names under faces/deepface, each accepted by the ML service

    @property
    def enrol_photo(self) -> str:
        return self.photos[0]

    @property
    def probe_photo(self) -> str:
        return self.photos[1]


@pytest.fixture(scope="session")
def people(ml_service, faces_dir: Path) -> list[Person]:
    """People with at least two photos that pass the ML service's checks, in a stable order."""
    # The join of the labelled same-person pairs that the soak uses too.
    groups = people_from_pairs(faces_dir / "master.csv")
    accepted, _ = accepted_by_ml(ml_service.url, ml_service.token, [faces_dir / name for g in groups for name in g])
    usable = {path.name for path in accepted}
    found = []
    for group in groups:
        good = [name for name in group if name in usable]
        if len(good) >= 2:
            found.append(Person(tuple(good)))
    found.sort(key=lambda p: p.photos)
    require(len(found) >= 4, f"need at least 4 people with two usable photos, found {len(found)}")
    return found


def api_settings(ml_service, data_dir: Path, **overrides) -> APISettings:
    values = {
        "data_dir": data_dir,
        "ml_inference_service_url": ml_service.url,
        "ml_inference_auth_token": ml_service.token,
        "startup_timeout_seconds": 5,
        **overrides,
    }
    return APISettings(**values)


@pytest.fixture
def make_api(ml_service, tmp_path: Path) -> Callable[..., object]:
    """A Face API on embedded stores under tmp_path (milvus-lite file, local images); real ML over HTTP."""

    @contextmanager
    def make(data_dir: Path | None = None, *, key_tenant: str | None = None, **kwargs) -> Iterator[TestClient]:
        """`key_tenant`: the client sends a key of that tenant; default an admin key (None)."""
        stores = {k: kwargs.pop(k) for k in ("index", "objects", "ml") if k in kwargs}
        settings = api_settings(ml_service, data_dir or tmp_path / "data", **kwargs)
        with TestClient(create_app(settings, **stores)) as client:
            if not settings.auth_disabled:
                client.headers["X-Api-Key"] = new_key(client, key_tenant)
            yield client

    return make


@pytest.fixture
def api(make_api) -> Iterator[TestClient]:
    with make_api() as client:
        yield client


class Photos:
    def __init__(self, faces_dir: Path, shared_dir: Path) -> None:
        self.faces_dir = faces_dir
        self.shared_dir = shared_dir

    def __call__(self, name: str) -> bytes:
        return (self.faces_dir / name).read_bytes()

    def antispoof(self, name: str) -> bytes:
        return (self.shared_dir / "faces" / "antispoof" / name).read_bytes()


@pytest.fixture(scope="session")
def photos(faces_dir: Path, shared_dir: Path) -> Photos:
    return Photos(faces_dir, shared_dir)


def new_key(client: TestClient, tenant: str | None, name: str = "tests") -> str:
    """A new API key of `tenant` (None: admin) in the API's own key store; its token."""
    _, token = client.portal.call(client.app.state.container.key_store.create, tenant, name)
    return token


def enrol(client: TestClient, tenant: str, face_id: str, image: bytes, op: str = "insert") -> httpx.Response:
    return client.post(f"/v1/faces/{op}", data={"id": face_id, "tenant": tenant}, files={"file": ("p.jpg", image)})


def search(client: TestClient, tenant: str, image: bytes, **params) -> httpx.Response:
    return client.post("/v1/faces/search", data={"tenant": tenant}, files={"file": ("q.jpg", image)}, params=params)


def match_ids(response: httpx.Response) -> list[str]:
    assert response.status_code == 200, response.text
    return [m["id"] for m in response.json()["searchResult"]["matches"]]


def stored_keys(client: TestClient, prefix: str = "") -> list[str]:
    """Every face image key in the API's object store (read through the store itself). Keys starting with "_"
    (API keys, the s3:// drop area) are not face images."""
    return [k for k in client.portal.call(client.app.state.container.objects.list, prefix) if not k.startswith("_")]


def stored_rows(client: TestClient, tenant: str, face_id: str) -> list:
    """Every vector row of (tenant, face_id) in the API's Milvus collection."""
    return client.portal.call(client.app.state.container.index.find, tenant, face_id)


@pytest.fixture(scope="session")
def shots(ml_service, people, photos):
    """One person's photos with their head poses measured (tests/liveness/sequences.py)."""
    from tests.liveness.sequences import measure_person

    return measure_person(ml_service, people, photos)
