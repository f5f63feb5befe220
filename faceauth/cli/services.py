"""`faceauth ml | api | up`: run the ML service, the Face API, or both on embedded defaults."""

from __future__ import annotations

import argparse
import os
import secrets
import subprocess
import sys
import time

from faceauth.config import PROFILE_MATCH_THRESHOLDS, APISettings, load_api_settings, load_ml_settings


def _shown(host: str) -> str:
    return "localhost" if host in ("0.0.0.0", "::") else host


def run_ml(args: argparse.Namespace) -> int:
    import uvicorn

    from faceauth.inference.app import create_app

    overrides = {k: v for k, v in {"host": args.host, "port": args.port}.items() if v is not None}
    settings = load_ml_settings(**overrides)
    url = f"http://{_shown(settings.host)}:{settings.port}"
    print(f"faceauth ML service: {url}  (Swagger UI: {url}/docs)", flush=True)
    uvicorn.run(
        create_app(settings), host=settings.host, port=settings.port, log_level=args.log_level, access_log=False
    )
    return 0


def _serve_api(settings: APISettings, log_level: str) -> None:
    import uvicorn

    from faceauth.api.app import create_app

    uvicorn.run(
        create_app(settings), host=settings.api_host, port=settings.api_port, log_level=log_level, access_log=False
    )


def _api_overrides(args: argparse.Namespace) -> dict[str, object]:
    """--host / --port, where given, for the Face API."""
    return {k: v for k, v in {"api_host": args.host, "api_port": args.port}.items() if v is not None}


def run_api(args: argparse.Namespace) -> int:
    settings = load_api_settings(**_api_overrides(args))
    url = f"http://{_shown(settings.api_host)}:{settings.api_port}"
    print(f"faceauth Face API: {url}  (Swagger UI: {url}/docs)", flush=True)
    print(f"  ML service: {settings.ml_inference_service_url}", flush=True)
    _serve_api(settings, args.log_level)
    return 0


def _wait_ready(url: str, child: subprocess.Popen, timeout_s: float) -> bool:
    import httpx

    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline and child.poll() is None:
        try:
            if httpx.get(f"{url}/readyz", timeout=2).status_code == 200:
                return True
        except httpx.HTTPError:
            pass
        time.sleep(0.3)
    return False


def _port_in_use(host: str, port: int) -> bool:
    import socket

    with socket.socket() as probe:
        try:
            probe.bind((host, port))
        except OSError:
            return True
    return False


def _follow_models(settings: APISettings, ml_url: str) -> APISettings:
    """The Face API's settings fitted to the models the ML service loaded, and the start-up banner of them.

    A new collection is made for the embedder's dimension (128 for the permissive profile); an existing one of
    another dimension stops the start with a message naming FACEAUTH_MILVUS_COLLECTION (a new name for the new
    profile; `faceauth reembed --from-collection` moves the faces over, docs/MODELS.md). The match threshold is
    the profile's calibrated one. Both only when not set explicitly."""
    import httpx

    ready = httpx.get(f"{ml_url}/readyz", timeout=5).json()
    print(f"  models      profile {ready.get('profile', 'default')}", flush=True)
    for name, slot in ready["models"].items():
        what = slot.get("model_id") or slot.get("error") or slot["state"]
        print(f"    {name:<9} {slot['state']:<6} {what}  [{slot.get('license') or 'licence unknown'}]", flush=True)
    dim = int(ready.get("embedding_dim") or 0)
    changes: dict[str, object] = {}
    if dim and "FACEAUTH_MILVUS_EMBEDDING_DIM" not in os.environ:
        changes["milvus_embedding_dim"] = dim
    threshold = PROFILE_MATCH_THRESHOLDS.get(ready.get("profile", "default"))
    if threshold is not None and "FACEAUTH_MILVUS_SEARCH_THRESHOLD" not in os.environ:
        changes["milvus_search_threshold"] = threshold
    return settings.model_copy(update=changes) if changes else settings


def run_up(args: argparse.Namespace) -> int:
    """The whole platform on embedded defaults: the ML service as a child process, the Face API here.

    The ML service listens on loopback only, with a random internal token unless one is configured, so on a shared
    machine only this Face API can call it. Data (milvus-lite file, images, fetched models) stays under ./data.
    """
    from faceauth.cli.keys import ensure_admin_key

    ml_settings = load_ml_settings(host="127.0.0.1")
    token = ml_settings.auth_token or secrets.token_urlsafe(24)
    api_settings = load_api_settings(
        ml_inference_service_url=f"http://127.0.0.1:{ml_settings.port}",
        ml_inference_auth_token=token,
        **_api_overrides(args),
    )
    env = {**os.environ, "ML_SERVICE_HOST": "127.0.0.1", "ML_SERVICE_AUTH_TOKEN": token}
    cmd = [sys.executable, "-m", "faceauth.cli", "--log-level", args.log_level, "ml"]
    ml_url = f"http://127.0.0.1:{ml_settings.port}"
    # Another process on the port (an earlier `faceauth up` still running) would answer the readiness check and
    # then refuse this Face API's token: say so now instead.
    if _port_in_use("127.0.0.1", ml_settings.port):
        print(
            f"faceauth: port {ml_settings.port} is already in use (another `faceauth up`?); stop it or set "
            "ML_SERVICE_PORT",
            file=sys.stderr,
        )
        return 1
    child = subprocess.Popen(cmd, env=env)
    try:
        print(f"starting the ML service ({ml_url}) ...", flush=True)
        if not _wait_ready(ml_url, child, args.ml_start_timeout) or child.poll() is not None:
            print("faceauth: the ML service did not become ready; see its log above", file=sys.stderr)
            return 1
        api_settings = _follow_models(api_settings, ml_url)
        url = f"http://{_shown(api_settings.api_host)}:{api_settings.api_port}"
        admin_token = None if api_settings.auth_disabled else ensure_admin_key(api_settings)
        print(f"faceauth is up:\n  Face API    {url}   Swagger UI: {url}/docs", flush=True)
        print(f"  ML service  {ml_url}   Swagger UI: {ml_url}/docs (internal token required)", flush=True)
        print(f"  data        {api_settings.data_dir.resolve()}", flush=True)
        if admin_token:
            # First start: no key exists yet. Shown once, never stored in plain text: set apart from the logs.
            rule = "=" * 78
            print(f"{rule}\n  admin key   {admin_token}", flush=True)
            print("  shown once: store it now. Make tenant keys with `faceauth keys create --tenant NAME`.", flush=True)
            print(rule, flush=True)
        elif api_settings.auth_disabled:
            print("  WARNING     FACEAUTH_AUTH_DISABLED=true: no API key is needed (local use only)", flush=True)
        _serve_api(api_settings, args.log_level)
        return 0
    finally:
        child.terminate()
        try:
            child.wait(timeout=10)
        except subprocess.TimeoutExpired:
            child.kill()


def register(sub: argparse._SubParsersAction) -> None:
    for name, func, help_text in (
        ("ml", run_ml, "run the ML inference service (port 8001)"),
        ("api", run_api, "run the Face API (port 8000) against the configured ML service and stores"),
        ("up", run_up, "start the ML service and the Face API on embedded defaults (data under ./data)"),
    ):
        p = sub.add_parser(name, help=help_text)
        p.add_argument("--host", default=None)
        p.add_argument("--port", type=int, default=None)
        p.set_defaults(func=func)
        if name == "up":
            p.add_argument("--ml-start-timeout", type=float, default=300.0, help="seconds to wait for the ML service")
