"""Shared fixtures. Test data (real face photos, the anti-spoof model) come from `FACEAUTH_SHARED_DIR`.

Outside CI a missing data folder skips the tests that need it; in CI (env `CI` set) it fails them, so a
broken CI setup can never pass by skipping.
"""

from __future__ import annotations

import ipaddress
import os
import socket
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from functools import cache
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from bench.photos import Pair, read_pairs
from bench.servers.milvus import MilvusLiteServer, MilvusStandaloneServer
from bench.servers.seaweed import WeedMiniServer, running_weed
from bench.servers.services import FaceauthService, ml_env

# Face API fixtures (people, photos, make_api, api, running_api), usable from every test package.
pytest_plugins = ["tests.apitest", "tests.running_api"]

# -- tests reach 127.0.0.1 only: a guard for the whole suite, and a small local HTTP server -------------


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.split("%")[0]).is_loopback
    except ValueError:
        return False


@pytest.fixture(autouse=True)
def loopback_only(monkeypatch: pytest.MonkeyPatch) -> None:
    real_connect = socket.socket.connect
    real_getaddrinfo = socket.getaddrinfo

    def connect(self: socket.socket, address: object) -> None:
        if self.family in (socket.AF_INET, socket.AF_INET6):
            host = str(address[0])  # type: ignore[index]
            if not _is_loopback(host):
                raise AssertionError(f"test tried to connect to {host}")
        return real_connect(self, address)  # type: ignore[arg-type]

    def getaddrinfo(host: object, *args: object, **kwargs: object) -> object:
        name = host.decode() if isinstance(host, bytes) else str(host)
        if not _is_loopback(name):
            raise AssertionError(f"test tried to resolve {name}")
        return real_getaddrinfo(host, *args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(socket.socket, "connect", connect)
    monkeypatch.setattr(socket, "getaddrinfo", getaddrinfo)


class LocalServer:
    """Serves ``files`` (path -> bytes) and ``redirects`` (path -> path); logs request paths."""

    def __init__(self) -> None:
        self.files: dict[str, bytes] = {}
        self.redirects: dict[str, str] = {}
        self.requests: list[str] = []
        server = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                server.requests.append(self.path)
                if self.path in server.redirects:
                    self.send_response(302)
                    self.send_header("Location", server.redirects[self.path])
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                    return
                body = server.files.get(self.path)
                if body is None:
                    self.send_error(404)
                    return
                self.send_response(200)
                self.send_header("Content-Type", "application/octet-stream")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args: object) -> None:
                return None

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.httpd.serve_forever, args=(0.05,), daemon=True)

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.httpd.server_address[1]}{path}"


@pytest.fixture
def server() -> Iterator[LocalServer]:
    srv = LocalServer()
    srv.thread.start()
    try:
        yield srv
    finally:
        srv.httpd.shutdown()
        srv.httpd.server_close()
        srv.thread.join(timeout=5)


def require(condition: bool, reason: str) -> None:
    """Skip locally, fail in CI."""
    if condition:
        return
    if os.environ.get("CI"):
        pytest.fail(f"required test input missing in CI: {reason}")
    pytest.skip(reason)


def require_module(name: str):
    """Import a module of the optional `torch` extra: skip if absent, fail if FACEAUTH_REQUIRE_TORCH=1."""
    import importlib

    try:
        return importlib.import_module(name)
    except ImportError as exc:
        if os.environ.get("FACEAUTH_REQUIRE_TORCH") == "1":
            pytest.fail(f"FACEAUTH_REQUIRE_TORCH=1 but {name!r} cannot be imported: {exc}")
        pytest.skip(f"optional 'torch' extra not installed ({name})")


@cache
def _shared_dir() -> Path | None:
    value = os.environ.get("FACEAUTH_SHARED_DIR")
    return Path(value).resolve() if value else None


@pytest.fixture(scope="session")
def shared_dir() -> Path:
    path = _shared_dir()
    require(path is not None and (path / "faces").is_dir(), "FACEAUTH_SHARED_DIR with faces/ is not set")
    return path  # type: ignore[return-value]


@pytest.fixture(scope="session")
def faces_dir(shared_dir: Path) -> Path:
    return shared_dir / "faces" / "deepface"


@pytest.fixture(scope="session")
def spoof_model_path(shared_dir: Path) -> Path:
    path = Path(
        os.environ.get("ML_SERVICE_SPOOF_LOCAL_MODEL_PATH") or shared_dir / "models" / "minifasnet_v2_80x80.onnx"
    )
    require(path.is_file(), f"anti-spoof model not found at {path}")
    return path


@pytest.fixture(scope="session")
def labelled_pairs(faces_dir: Path) -> list[Pair]:
    return read_pairs(faces_dir / "master.csv")


@pytest.fixture(scope="session")
def photo_bytes(faces_dir: Path):
    @cache
    def read(name: str) -> bytes:
        return (faces_dir / name).read_bytes()

    return read


# -- the real ML service, as a process on 127.0.0.1 (shared by the CLI and Face API end-to-end tests) ---------


@dataclass
class MLService:
    url: str
    token: str
    process: FaceauthService


@pytest.fixture(scope="session")
def ml_service(spoof_model_path: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[MLService]:
    """`faceauth ml` with the real models, guarded by an internal token as in production."""
    token = "test-internal-token"
    settings = {
        "ML_SERVICE_SPOOF_LOCAL_MODEL_PATH": str(spoof_model_path),
        "ML_SERVICE_MODEL_DIR": str(tmp_path_factory.mktemp("models")),
        "ML_SERVICE_AUTO_FETCH": "false",
    }
    # Output to a file, not a pipe: the service logs every request, and a pipe nobody reads fills up and then
    # blocks the service in its next log write.
    log_path = tmp_path_factory.mktemp("ml-service") / "ml.log"
    service = FaceauthService("ml", ml_env(settings, token=token), log_level=None, log_path=log_path, ready_timeout=90)
    with service:
        yield MLService(service.url, token, service)


# -- real storage servers on 127.0.0.1, started once per session when a test needs them ------------------------


@pytest.fixture(scope="session")
def milvus_lite_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[MilvusLiteServer]:
    server = MilvusLiteServer(tmp_path_factory.mktemp("milvus-lite-server") / "data")
    server.start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="session")
def milvus_standalone(tmp_path_factory: pytest.TempPathFactory) -> Iterator[MilvusStandaloneServer]:
    server = MilvusStandaloneServer(tmp_path_factory.mktemp("milvus-2.3.5"))
    server.start()
    try:
        yield server
    finally:
        server.stop(grace=1.0)  # its data is thrown away: no need for a graceful shutdown


@pytest.fixture(scope="session")
def weed(tmp_path_factory: pytest.TempPathFactory) -> Iterator[WeedMiniServer]:
    with running_weed(tmp_path_factory.mktemp("weed")) as server:
        yield server
