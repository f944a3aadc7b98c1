"""Structured server logs: one JSON object per line, never a body and never a credential.

:func:`configure_logging` installs :class:`JsonFormatter` on the root logger (stderr). Each
line holds ``ts`` (UTC, ISO 8601), ``level``, ``logger`` and ``msg``, plus the record's extra
fields whose names are in :data:`SAFE_FIELDS` (anything else passed as ``extra`` is dropped,
so a careless ``extra={"body": ...}`` cannot leak). An exception adds only its type and its
stack frames (file, line, function), never its message or source lines, which may quote a
value. Log call sites pass ids, routes, counts and exception type names -- not request
bodies, ciphertext or Authorization headers.
"""

from __future__ import annotations

import json
import logging
import sys
import traceback
from datetime import UTC, datetime
from typing import Final, TextIO

SAFE_FIELDS: Final = frozenset(
    {"method", "route", "status", "duration_ms", "device", "event", "count", "error_type"}
)
"""Extra record attributes copied into a line (values must be str, int, float, bool, None)."""

LEVELS: Final = {
    "critical": logging.CRITICAL,
    "error": logging.ERROR,
    "warning": logging.WARNING,
    "info": logging.INFO,
    "debug": logging.DEBUG,
    "trace": logging.DEBUG,  # uvicorn's "trace" is below debug; the standard library has none
}


class JsonFormatter(logging.Formatter):
    """Formats a record as one JSON object (no newline inside)."""

    def format(self, record: logging.LogRecord) -> str:
        line: dict[str, object] = {
            "ts": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "msg": record.getMessage(),
        }
        for name in sorted(SAFE_FIELDS & record.__dict__.keys()):
            value = record.__dict__[name]
            if value is None or isinstance(value, str | int | float | bool):
                line[name] = value
        if record.exc_info and record.exc_info[0] is not None:
            line["exc_type"] = record.exc_info[0].__name__
            line["stack"] = [
                f"{f.filename}:{f.lineno} in {f.name}"
                for f in traceback.extract_tb(record.exc_info[2])
            ]
        return json.dumps(line, ensure_ascii=False, default=str)


_HANDLER_MARK: Final = "_veil_json_handler"


def configure_logging(level: str, stream: TextIO | None = None) -> None:
    """Send every log record as JSON lines to ``stream`` (stderr) at ``level`` and above.

    ``level`` is a config log level (``info``, ``debug``, ...). Calling again replaces the
    handler installed before. Uvicorn's loggers propagate to the root (their own handlers are
    removed), so start uvicorn with ``log_config=None`` and ``access_log=False``: the app
    writes its own access line (``veil.server.access``) with the route template instead of
    the concrete path, and the authenticated device instead of the client's address.
    """
    root = logging.getLogger()
    for handler in list(root.handlers):
        if getattr(handler, _HANDLER_MARK, False):
            root.removeHandler(handler)
    handler = logging.StreamHandler(sys.stderr if stream is None else stream)
    handler.setFormatter(JsonFormatter())
    setattr(handler, _HANDLER_MARK, True)
    root.addHandler(handler)
    root.setLevel(LEVELS.get(level.lower(), logging.INFO))
    for name in ("uvicorn", "uvicorn.error", "uvicorn.access", "uvicorn.asgi"):
        uv = logging.getLogger(name)
        uv.handlers.clear()
        uv.propagate = True
    logging.getLogger("uvicorn.access").disabled = True
    error = logging.getLogger("uvicorn.error")
    if not any(isinstance(f, _DenialQuirk) for f in error.filters):
        error.addFilter(_DenialQuirk())


class _DenialQuirk(logging.Filter):
    """Drop uvicorn's "returned without completing handshake" error for a WebSocket handshake
    the app refused with an HTTP answer (``websocket.http.response``, e.g. a 429): uvicorn's
    sans-I/O implementation sends that answer but still counts the handshake as unfinished.
    The hub never returns without accepting, closing or answering, so nothing real is lost."""

    def filter(self, record: logging.LogRecord) -> bool:
        return "returned without completing handshake" not in record.getMessage()
