"""`faceauth ml | api | up`: run the ML service, the Face API, or both on embedded defaults."""

from __future__ import annotations

import argparse
import ipaddress
import os
import secrets
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

from faceauth.config import PROFILE_MATCH_THRESHOLDS, APISettings, load_api_settings, load_ml_settings

LOOPBACK = "127.0.0.1"
# Put in front of the ML child on Linux: ask for SIGTERM when this process dies (PR_SET_PDEATHSIG = 1, kept across
# the exec), give up if it is already gone, then become the service. A shim rather than `preexec_fn`, which is
# unsafe in a process with threads.
_DIE_WITH_PARENT = (
    "import ctypes, os, sys; ctypes.CDLL(None, use_errno=True).prctl(1, 15); "
    "os.getppid() == int(sys.argv[1]) or sys.exit(1); os.execv(sys.argv[2], sys.argv[2:])"
)


def _shown(host: str) -> str:
    return "localhost" if host in ("0.0.0.0", "::") else host


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def private_data_dir(path: Path) -> None:
    """Files made from here on are this user's only (umask 077), and the data folder is 0700: faces, vectors and
    API keys are biometric data and credentials."""
    os.umask(0o077)
    path.mkdir(parents=True, exist_ok=True)
    if path.stat().st_uid == os.getuid():
        path.chmod(0o700)


def unauthenticated_ml_refusal(host: str, token: str | None, allowed: bool) -> str | None:
    """Why `faceauth ml` must not start on `host`, or None: off loopback it needs a token, unless explicitly told."""
    if token or allowed or is_loopback(host):
        return None
    return (
        f"faceauth: the ML service would listen on {host} without a token, so anyone who can reach it could send it "
        "photos. Set ML_SERVICE_AUTH_TOKEN (and FACEAUTH_ML_INFERENCE_AUTH_TOKEN on the Face API), listen on "
        "127.0.0.1, or set ML_SERVICE_ALLOW_UNAUTHENTICATED=true if a network policy guards it"
    )


def run_ml(args: argparse.Namespace) -> int:
    import uvicorn

    from faceauth.inference.app import create_app

    overrides = {k: v for k, v in {"host": args.host, "port": args.port}.items() if v is not None}
    settings = load_ml_settings(**overrides)
    refusal = unauthenticated_ml_refusal(settings.host, settings.auth_token, settings.allow_unauthenticated)
    if refusal:
        print(refusal, file=sys.stderr)
        return 2
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
    private_data_dir(settings.data_dir)
    url = f"http://{_shown(settings.api_host)}:{settings.api_port}"
    print(f"faceauth Face API: {url}  (Swagger UI: {url}/docs)", flush=True)
    print(f"  ML service: {settings.ml_inference_service_url}", flush=True)
    _serve_api(settings, args.log_level)
    return 0


def _wait_ready(url: str, child: subprocess.Popen, timeout_s: float) -> dict | None:
    """The ML service's /readyz body once it answers 200; None if it exits or the time runs out."""
    import httpx

    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline and child.poll() is None:
        try:
            response = httpx.get(f"{url}/readyz", timeout=2, trust_env=False)
            if response.status_code == 200:
                return response.json()
        except (httpx.HTTPError, ValueError):
            pass
        time.sleep(0.3)
    return None


def _port_in_use(host: str, port: int) -> bool:
    """Whether the server could not bind `port`, probed as uvicorn binds (SO_REUSEADDR): connections of an earlier
    run left in TIME_WAIT do not count, a process still listening does."""
    with socket.socket() as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind((host, port))
        except OSError:
            return True
    return False


def _exit_on_sigterm(signum: int, frame: object) -> None:
    # SystemExit unwinds through run_up's `finally`, which stops the ML child. uvicorn, while it serves, takes
    # SIGTERM itself, shuts down, restores this handler and raises the signal again, so this runs then too.
    raise SystemExit(128 + signum)


def _ml_child(cmd: list[str], env: dict[str, str]) -> subprocess.Popen:
    if sys.platform.startswith("linux"):
        cmd = [sys.executable, "-c", _DIE_WITH_PARENT, str(os.getpid()), *cmd]
    return subprocess.Popen(cmd, env=env)


def _stop(child: subprocess.Popen) -> None:
    if child.poll() is not None:
        return
    child.terminate()
    try:
        child.wait(timeout=10)
    except subprocess.TimeoutExpired:
        child.kill()
        child.wait(timeout=10)


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
    machine only this Face API can call it. Data (milvus-lite file, images, fetched models) stays under ./data,
    private to this user. It exits non-zero when a model every photo needs is missing, unless --degraded.
    """
    from faceauth.cli.keys import ensure_admin_key
    from faceauth.health.service import missing_models

    signal.signal(signal.SIGTERM, _exit_on_sigterm)
    ml_settings = load_ml_settings(host=LOOPBACK)
    token = ml_settings.auth_token or secrets.token_urlsafe(24)
    api_settings = load_api_settings(
        ml_inference_service_url=f"http://{LOOPBACK}:{ml_settings.port}",
        ml_inference_auth_token=token,
        **_api_overrides(args),
    )
    if api_settings.auth_disabled and not is_loopback(api_settings.api_host):
        # Without keys, anyone who reaches the port is an admin: only this machine may.
        print(
            f"faceauth: FACEAUTH_AUTH_DISABLED=true, so the Face API listens on {LOOPBACK} only "
            f"(not {api_settings.api_host})",
            flush=True,
        )
        api_settings = api_settings.model_copy(update={"api_host": LOOPBACK})
    env = {**os.environ, "ML_SERVICE_HOST": LOOPBACK, "ML_SERVICE_AUTH_TOKEN": token}
    cmd = [sys.executable, "-m", "faceauth.cli", "--log-level", args.log_level, "ml"]
    ml_url = f"http://{LOOPBACK}:{ml_settings.port}"
    # Another process on the port (an earlier `faceauth up` still running) would answer the readiness check and
    # then refuse this Face API's token: say so now instead.
    if _port_in_use(LOOPBACK, ml_settings.port):
        print(
            f"faceauth: port {ml_settings.port} is already in use (another `faceauth up`?); stop it or set "
            "ML_SERVICE_PORT",
            file=sys.stderr,
        )
        return 1
    private_data_dir(api_settings.data_dir)  # after the refusals above: a refused start leaves nothing behind
    child = _ml_child(cmd, env)
    try:
        print(f"starting the ML service ({ml_url}) ...", flush=True)
        ml_ready = _wait_ready(ml_url, child, args.ml_start_timeout)
        if ml_ready is None or child.poll() is not None:
            print("faceauth: the ML service did not become ready; see its log above", file=sys.stderr)
            return 1
        missing = missing_models(ml_ready)
        if missing and not args.degraded:
            print("faceauth is NOT up: every photo would be refused (503), because", file=sys.stderr)
            for line in missing:
                print(f"  - {line}", file=sys.stderr)
            print("Fix that and start again, or pass --degraded to start anyway.", file=sys.stderr)
            return 1
        api_settings = _follow_models(api_settings, ml_url)
        url = f"http://{_shown(api_settings.api_host)}:{api_settings.api_port}"
        admin_token = None if api_settings.auth_disabled else ensure_admin_key(api_settings)
        state = "up, DEGRADED (--degraded)" if missing else "up"
        print(f"faceauth is {state}:\n  Face API    {url}   Swagger UI: {url}/docs", flush=True)
        print(f"  ML service  {ml_url}   Swagger UI: {ml_url}/docs (internal token required)", flush=True)
        print(f"  data        {api_settings.data_dir.resolve()}", flush=True)
        for line in missing:
            print(f"  WARNING     {line}; photos are refused until then", flush=True)
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
        _stop(child)


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
            p.add_argument(
                "--degraded",
                action="store_true",
                help="start even when a model every photo needs is missing (photos are refused until it is there)",
            )
