"""`faceauth` command line: run the services, manage keys and models, maintain the stores.

Each group of commands lives in its own module and registers its subcommands here; the heavy imports (the ML
models, the stores) happen inside the commands, so `faceauth ml` never imports the Face API and the reverse.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
from pathlib import Path

from faceauth.cli import client, importer, keys, maintenance, models, receipts
from faceauth.cli.services import register as register_services
from faceauth.cli.services import run_api, run_ml, run_up
from faceauth.config import SettingsError

__all__ = ["build_parser", "configure_logging", "main", "run_api", "run_ml", "run_up"]


def configure_logging(level: str) -> None:
    """JSON lines (default) or text, chosen by FACEAUTH_LOG_FORMAT, else ML_SERVICE_LOG_FORMAT (the ML container's
    own); from the environment or ./.env, as settings are. Logging starts before any settings are loaded."""
    from dotenv import dotenv_values

    from faceauth.kit.logs import configure_logging as configure
    from faceauth.kit.logs import parse_log_format

    dotenv = dotenv_values(".env") if Path(".env").is_file() else {}
    names = ("FACEAUTH_LOG_FORMAT", "ML_SERVICE_LOG_FORMAT")
    raw = next((v for v in (os.environ.get(n) or dotenv.get(n) for n in names) if v), None)
    problem = None
    try:
        log_format = parse_log_format(raw)
    except ValueError as exc:  # loading the settings then stops start-up naming the variable; until then, JSON
        log_format, problem = "json", exc
    configure(level, log_format)
    if problem is not None:
        logging.getLogger("faceauth.cli").warning("%s; logging as json", problem)


def _log_format_chosen() -> bool:
    """Whether the environment or ./.env names a log format."""
    from dotenv import dotenv_values

    names = ("FACEAUTH_LOG_FORMAT", "ML_SERVICE_LOG_FORMAT")
    dotenv = dotenv_values(".env") if Path(".env").is_file() else {}
    return any(os.environ.get(n) or dotenv.get(n) for n in names)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="faceauth", description="Self-hosted face authentication.")
    parser.add_argument("--log-level", default="info", choices=["debug", "info", "warning", "error"])
    sub = parser.add_subparsers(dest="command", required=True)
    register_services(sub)
    keys.register(sub)
    maintenance.register(sub)
    models.register(sub)
    receipts.register(sub)
    client.register(sub)
    importer.register(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.command == "up" and sys.stderr.isatty() and not _log_format_chosen():
        # A person watching a terminal reads text; JSON stays the default for the services alone and in containers.
        # The ML service (a child process) inherits it.
        for name in ("FACEAUTH_LOG_FORMAT", "ML_SERVICE_LOG_FORMAT"):
            os.environ.setdefault(name, "text")
    configure_logging(args.log_level)
    try:
        return int(args.func(args) or 0)
    except SettingsError as exc:
        print(f"faceauth: {exc}", file=sys.stderr)
        return 2
