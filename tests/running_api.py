"""The `running_api` fixture: a Face API process (`faceauth api`, embedded milvus-lite and local images, as
`faceauth up` runs it) against the session's real ML service, and API keys made with `faceauth keys create`."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass

import pytest

from bench.servers.services import FaceauthService, api_env


@dataclass(frozen=True)
class RunningAPI:
    url: str
    admin_key: str
    acme_key: str  # a key of tenant "acme"
    other_key: str  # a key of tenant "other"


def create_key(env: dict[str, str], tenant: str | None) -> str:
    """A new key of `tenant` (None: admin), made with `faceauth keys create` as an operator does."""
    args = ["keys", "create"] + (["--tenant", tenant] if tenant else ["--admin"])
    done = subprocess.run(
        [sys.executable, "-m", "faceauth", *args], env=env, capture_output=True, text=True, check=False
    )
    assert done.returncode == 0, done.stderr
    return done.stdout.strip().splitlines()[-1]


@pytest.fixture(scope="module")
def running_api(ml_service, tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningAPI]:
    data_dir = tmp_path_factory.mktemp("sdk-api")
    env = api_env(ml_service.url, data_dir / "data", token=ml_service.token)
    keys = [create_key(env, tenant) for tenant in (None, "acme", "other")]
    with FaceauthService("api", env, log_path=data_dir / "api.log", ready_timeout=90) as service:
        yield RunningAPI(service.url, *keys)
