"""Logging for both services: one JSON object per line (or plain text), each carrying the request id.

The request id travels in a contextvar set by `RequestIdMiddleware` (faceauth.kit.requests); `RequestIdFilter`
copies it onto every record emitted while a request is handled, from any logger.

What must never reach a log: photos, embeddings, API keys and tokens, query strings (presigned links carry
their signature there). Code does not log them; as a safety net the JSON formatter replaces any extra field
whose name suggests one with "[redacted]", shortens long extra values, and uvicorn's access lines lose the
query string.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import re
import sys
from typing import Any, Literal, TextIO

from faceauth.kit.requests import current_request_id

LogFormat = Literal["json", "text"]
LOG_FORMATS: tuple[LogFormat, ...] = ("json", "text")

# Extra fields with such names are never written, whatever their value.
_SENSITIVE = re.compile(r"key|token|authorization|secret|password|embedding|image", re.IGNORECASE)
REDACTED = "[redacted]"
_URL = re.compile(r"[a-zA-Z][a-zA-Z0-9+.-]*://")
# A long extra value is more likely a payload than a diagnostic (base64 photos, vectors): cut it.
_MAX_EXTRA_CHARS = 512
# The attributes every LogRecord has; anything else on a record came from `extra=`.
_STANDARD_ATTRS = frozenset(logging.makeLogRecord({}).__dict__) | {"message", "asctime", "taskName"}
_OWN_ATTRS = frozenset({"requestId"})
_TEXT_FORMAT = "%(asctime)s %(levelname)s %(name)s [%(requestId)s]: %(message)s"
# Libraries that narrate every request or import at INFO: keep their warnings only.
_CHATTY = ("httpx", "httpcore", "faiss", "faiss.loader")


class RequestIdFilter(logging.Filter):
    """Puts the current request's id on the record (as `requestId`; "-" outside a request) and takes query strings
    off the URLs in its arguments (httpx logs every URL it fetches; uvicorn's access lines hold the path with its
    query). Attach it to handlers, so records from every logger pass through it."""

    def filter(self, record: logging.LogRecord) -> bool:
        if not getattr(record, "requestId", None):
            record.requestId = current_request_id() or "-"
        if isinstance(record.args, tuple) and record.args:
            args = [_without_query(a) for a in record.args]
            if record.name == "uvicorn.access" and len(args) == 5:
                # uvicorn's args: client, method, path with query, HTTP version, status.
                args[2] = str(args[2]).split("?", 1)[0]
            record.args = tuple(args)
        return True


def _without_query(arg: object) -> object:
    # httpx passes its URL objects; plain strings may be URLs too. Anything else (numbers for %d) stays as it is.
    if isinstance(arg, str) or type(arg).__name__ == "URL":
        text = str(arg)
        if "?" in text and _URL.match(text):
            return text.split("?", 1)[0]
    return arg


class JsonFormatter(logging.Formatter):
    """`{"ts", "level", "logger", "msg", "requestId"?, "exc"?, ...extras}` on one line."""

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "ts": dt.datetime.fromtimestamp(record.created, dt.UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "msg": record.getMessage(),
        }
        request_id = getattr(record, "requestId", None) or current_request_id()
        if request_id and request_id != "-":
            entry["requestId"] = request_id
        for name, value in record.__dict__.items():
            if name in _STANDARD_ATTRS or name in _OWN_ATTRS or name.startswith("_") or name in entry:
                continue
            entry[name] = REDACTED if _SENSITIVE.search(name) else _safe_value(value)
        if record.exc_info:
            entry["exc"] = self.formatException(record.exc_info)
        elif record.exc_text:
            entry["exc"] = record.exc_text
        if record.stack_info:
            entry["stack"] = self.formatStack(record.stack_info)
        return json.dumps(entry, ensure_ascii=False, default=str)


def _safe_value(value: Any) -> Any:
    if isinstance(value, bool | int | float) or value is None:
        return value
    if isinstance(value, bytes | bytearray | memoryview):
        return f"<{len(value)} bytes>"
    text = value if isinstance(value, str) else repr(value)
    if len(text) > _MAX_EXTRA_CHARS:
        return text[:_MAX_EXTRA_CHARS] + "...[truncated]"
    return value if isinstance(value, str) else text


def make_formatter(log_format: LogFormat) -> logging.Formatter:
    return JsonFormatter() if log_format == "json" else logging.Formatter(_TEXT_FORMAT)


class _StderrHandler(logging.StreamHandler):
    """Writes to whatever `sys.stderr` is at the time (it may be swapped, e.g. by a test's output capture)."""

    def __init__(self) -> None:
        super().__init__()

    @property  # type: ignore[override]
    def stream(self) -> TextIO:
        return sys.stderr

    @stream.setter
    def stream(self, value: TextIO) -> None:
        return None


def make_handler(log_format: LogFormat = "json", stream: TextIO | None = None) -> logging.Handler:
    """A handler with the chosen format and the request-id filter, writing to `stream` (default: stderr)."""
    handler = logging.StreamHandler(stream) if stream is not None else _StderrHandler()
    handler.setFormatter(make_formatter(log_format))
    handler.addFilter(RequestIdFilter())
    return handler


def parse_log_format(value: str | None) -> LogFormat:
    """FACEAUTH_LOG_FORMAT's value; unset means json. Anything else is refused (a typo must not go unnoticed)."""
    chosen = (value or "json").strip().lower()
    if chosen not in LOG_FORMATS:
        raise ValueError(f"log format must be json or text, got {value!r}")
    return chosen  # type: ignore[return-value]


def configure_logging(level: str, log_format: LogFormat = "json") -> None:
    """The process's logging: one handler on the root logger, which every logger (uvicorn's too) goes through.

    Like `logging.basicConfig`, it leaves a root logger that something else already set up (a test runner's
    capture, a host application) as it is; called again, it replaces its own handler."""
    root = logging.getLogger()
    ours = [h for h in root.handlers if getattr(h, "_faceauth", False)]
    if ours or not root.handlers:
        for old in ours:
            root.removeHandler(old)
        handler = make_handler(log_format)
        handler._faceauth = True  # type: ignore[attr-defined]
        root.addHandler(handler)
        root.setLevel(level.upper())
    for name in _CHATTY:
        logging.getLogger(name).setLevel(max(logging.WARNING, root.level))
    _route_uvicorn_to_root()


def _route_uvicorn_to_root() -> None:
    """`uvicorn.run` applies its default LOGGING_CONFIG, which gives its loggers their own plain-text handlers.
    Edited in place (it is the default argument `uvicorn.run` uses), that config makes them propagate to the
    root handler instead, so uvicorn's lines come out in the same format, with the same filter."""
    try:
        from uvicorn.config import LOGGING_CONFIG
    except ImportError:  # the services are not installed here; nothing to route
        return
    LOGGING_CONFIG.clear()
    LOGGING_CONFIG.update(
        {
            "version": 1,
            "disable_existing_loggers": False,
            # Kept (empty) because uvicorn writes `use_colors` into them when that option is given.
            "formatters": {"default": {}, "access": {}},
            "loggers": {
                "uvicorn": {"handlers": [], "propagate": True},
                "uvicorn.error": {"handlers": [], "propagate": True},
                "uvicorn.access": {"handlers": [], "propagate": True},
            },
        }
    )
