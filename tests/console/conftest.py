"""One Face API process (real ML service, embedded stores), one headless Chromium whose fake camera shows a real
person, for the whole module: the browser tests share them to keep their cost down."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from bench.servers.browser import camera_video, chromium_args, chromium_path
from bench.servers.services import FaceauthService, api_env
from tests.conftest import require


@dataclass
class Console:
    url: str
    admin_key: str
    http: httpx.Client

    def key(self, tenant: str | None, name: str = "tests") -> str:
        answer = self.http.post("/v1/keys", json={"tenant": tenant, "name": name})
        assert answer.status_code == 201, answer.text
        return answer.json()["key"]

    def enrol(self, tenant: str, face_id: str, photo: Path) -> None:
        answer = self.http.post(
            "/v1/faces/insert", data={"tenant": tenant, "id": face_id}, files={"file": ("p.jpg", photo.read_bytes())}
        )
        assert answer.status_code == 200, answer.text


@pytest.fixture(scope="module")
def console(ml_service, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Console]:
    data = tmp_path_factory.mktemp("console-api")
    env = api_env(ml_service.url, data / "data", token=ml_service.token)
    made = subprocess.run(
        [sys.executable, "-m", "faceauth.cli", "keys", "create", "--admin", "--name", "browser tests"],
        env=env,
        capture_output=True,
        text=True,
        check=True,
    )
    admin_key = made.stdout.strip().splitlines()[-1]
    api = FaceauthService("api", env, log_path=data / "api.log", ready_timeout=60)
    with api, httpx.Client(base_url=api.url, headers={"X-Api-Key": admin_key}, timeout=60) as http:
        yield Console(api.url, admin_key, http)


@pytest.fixture(scope="module")
def camera_person(people):
    """The person the fake camera shows (never enrolled from a file)."""
    return people[2]


@pytest.fixture(scope="module")
def browser(faces_dir: Path, camera_person, tmp_path_factory: pytest.TempPathFactory):
    sync_api = pytest.importorskip("playwright.sync_api")
    sync_api.expect.set_options(timeout=30_000)  # an enrolment or a search is ML work on a shared 2-core machine
    executable = chromium_path()
    require(executable is not None, "no chromium on PATH (apt-get install chromium) nor FACEAUTH_CHROMIUM")
    video = camera_video(faces_dir / camera_person.enrol_photo, tmp_path_factory.mktemp("camera") / "face.y4m")
    with sync_api.sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=executable, args=chromium_args(video))
        try:
            yield browser
        finally:
            browser.close()


@pytest.fixture
def page(browser, console: Console):
    context = browser.new_context(base_url=console.url, viewport={"width": 1280, "height": 900})
    context.grant_permissions(["camera"], origin=console.url)
    page = context.new_page()
    page.set_default_timeout(30_000)
    problems: list[str] = []
    page.on("console", lambda m: problems.append(m.text) if m.type == "error" else None)
    page.on("pageerror", lambda e: problems.append(str(e)))
    page.problems = problems
    yield page
    context.close()
