"""Our own services, `faceauth ml` and `faceauth api`, as processes on free loopback ports.

`FaceauthService` is one of them (not started: `start()` or use it as a context manager; a restart keeps its
port); `ml_env` / `api_env` are the environments they need to run here, each with the settings of the caller on
top. Everything a benchmark starts shares one internal token (`TOKEN`) between its two services.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from bench.servers.process import HOST, ServiceProcess, free_port

TOKEN = "bench-internal-token"
SPOOF_MODEL = Path("models") / "minifasnet_v2_80x80.onnx"  # in the shared test data folder


def faceauth_argv(command: str, port: int, log_level: str | None = "warning") -> list[str]:
    """`faceauth <command>` (`ml` or `api`) on 127.0.0.1:`port`; `log_level` None leaves the service's own."""
    cli = [sys.executable, "-m", "faceauth.cli", *(["--log-level", log_level] if log_level else [])]
    return [*cli, command, "--host", HOST, "--port", str(port)]


class FaceauthService(ServiceProcess):
    """`faceauth <command>` (`ml` or `api`) on 127.0.0.1:`port` (a free one by default) with the environment `env`.

    `options` are ServiceProcess's (log_path, cwd, ready_timeout, ...). `log_level` None leaves the service's own.
    """

    def __init__(
        self,
        command: str,
        env: Mapping[str, str],
        *,
        port: int | None = None,
        log_level: str | None = "warning",
        **options: Any,
    ) -> None:
        self.port = port or free_port()
        argv = faceauth_argv(command, self.port, log_level)
        super().__init__(argv, f"http://{HOST}:{self.port}", name=f"faceauth {command}", env=env, **options)


def ml_env(settings: Mapping[str, str] | None = None, *, token: str = TOKEN) -> dict[str, str]:
    """This process's environment for `faceauth ml`: guarded by `token`, `settings` (ML_SERVICE_*) on top."""
    return {**os.environ, "ML_SERVICE_AUTH_TOKEN": token, **(settings or {})}


def api_env(
    ml_url: str,
    data_dir: Path,
    settings: Mapping[str, str] | None = None,
    *,
    token: str = TOKEN,
    environ: Mapping[str, str] | None = None,
) -> dict[str, str]:
    """`environ` (default: this process's environment) for `faceauth api`: its data in `data_dir`, the ML service at
    `ml_url` with `token`, `settings` (FACEAUTH_*) on top."""
    return {
        **(os.environ if environ is None else environ),
        "FACEAUTH_DATA_DIR": str(data_dir),
        "FACEAUTH_ML_INFERENCE_SERVICE_URL": ml_url,
        "FACEAUTH_ML_INFERENCE_AUTH_TOKEN": token,
        **(settings or {}),
    }


def spoof_model_env(shared_dir: Path | None) -> dict[str, str]:
    """ML_SERVICE_SPOOF_LOCAL_MODEL_PATH for a service started here: the variable's own value, else the shared test
    data's copy where there is one; absolute (the services may run in folders of their own). Empty for neither."""
    given = os.environ.get("ML_SERVICE_SPOOF_LOCAL_MODEL_PATH")
    path = Path(given) if given else shared_dir / SPOOF_MODEL if shared_dir else None
    if path is None or not (given or path.is_file()):
        return {}
    return {"ML_SERVICE_SPOOF_LOCAL_MODEL_PATH": str(path.resolve())}
