"""Client errors: one root, :class:`ClientError`.

- :class:`ServerError`: the server answered and refused (any non-2xx HTTP answer with its
  JSON :class:`~veil.wire.errors.ErrorBody`, a refused WebSocket handshake, or a
  :class:`~veil.wire.messages.SendFailed` frame).
- :class:`TransportError`: the server could not be reached or the connection broke
  (refused, timed out, closed).
- :class:`ProtocolError`: the server answered something that is not valid for its schema.
- :class:`TooLargeError`: a download bigger than the caller's limit.

Messages name the server by a URL stripped of any user info and query; a credential never
appears in an error.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import msgspec

from veil.wire.errors import ErrorBody

AUTH_STATUSES = frozenset({401, 403})
"""Statuses that mean "these credentials will not do": retrying cannot help."""


def safe_url(url: str) -> str:
    """``url`` without user info, query or fragment (what an error message may show)."""
    try:
        parts = urlsplit(url)
        host = parts.hostname or ""
        port = parts.port
    except ValueError:
        return "<invalid URL>"
    if ":" in host:
        host = f"[{host}]"
    netloc = host if port is None else f"{host}:{port}"
    return urlunsplit((parts.scheme, netloc, parts.path, "", ""))


class ClientError(Exception):
    """Root of every error the client layer raises."""


class ServerError(ClientError):
    """The server refused a request: HTTP ``status``, stable ``code``, human ``message``.

    ``details`` holds the error body's extra fields (e.g. ``mismatches`` of a 409
    ``device_mismatch``: per account, the ``missing``, ``extra`` and ``stale`` devices;
    ``retry_after_s`` of a 429).
    """

    def __init__(
        self,
        status: int,
        code: str,
        message: str,
        details: Mapping[str, Any] | None = None,
        *,
        retry_after_s: float | None = None,
    ) -> None:
        super().__init__(status, code, message)
        self.status = status
        self.code = code
        self.message = message
        self.details: dict[str, Any] = dict(details or {})
        if retry_after_s is None:
            retry_after_s = _number(self.details.get("retry_after_s"))
        self.retry_after_s = retry_after_s
        """Seconds to wait before retrying (429 answers), else ``None``."""

    @classmethod
    def from_body(
        cls, status: int, body: bytes, reason: str = "", retry_after: str | None = None
    ) -> ServerError:
        """From an HTTP answer: its JSON error body, or ``status`` and ``reason`` if it has
        none (a proxy's HTML page, say); ``retry_after`` is the ``Retry-After`` header."""
        header_wait = _number(retry_after)
        try:
            error = msgspec.json.decode(body, type=ErrorBody)
        except (msgspec.ValidationError, msgspec.DecodeError, UnicodeDecodeError):
            text = reason or "no error body"
            message = f"HTTP {status} {text}"
            return cls(status, f"http_{status}", message, retry_after_s=header_wait)
        wait = _number(error.details.get("retry_after_s"))
        return cls(
            status,
            error.error,
            error.message,
            error.details,
            retry_after_s=wait if wait is not None else header_wait,
        )

    @classmethod
    def from_error_body(cls, status: int, error: ErrorBody) -> ServerError:
        """From a decoded error body (a :class:`~veil.wire.messages.SendFailed` frame's)."""
        return cls(status, error.error, error.message, error.details)

    @property
    def is_auth(self) -> bool:
        """True for 401/403: the credentials are wrong or revoked."""
        return self.status in AUTH_STATUSES

    def __str__(self) -> str:
        text = f"server refused ({self.status} {self.code}): {self.message}"
        if self.details:
            shown = ", ".join(f"{k}={v!r}" for k, v in sorted(self.details.items()))
            text += f" [{shown[:300]}]"
        return text

    def __repr__(self) -> str:
        return f"ServerError(status={self.status}, code={self.code!r}, message={self.message!r})"


class TransportError(ClientError):
    """The server at ``url`` could not be reached, or the connection to it broke.

    ``close_code`` is the WebSocket close code when the server closed the socket.
    """

    def __init__(self, url: str, reason: str, *, close_code: int | None = None) -> None:
        self.url = safe_url(url)
        self.reason = reason
        self.close_code = close_code
        super().__init__(f"{self.url}: {reason}")


class ProtocolError(ClientError):
    """The server's answer does not match its schema (a bug or a hostile server)."""


class TooLargeError(ClientError):
    """A download exceeded the caller's ``limit`` (bytes); nothing beyond it was read."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        super().__init__(f"response larger than the {limit}-byte limit")


def _number(value: object) -> float | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, (int, float)):
        return float(value)
    if isinstance(value, str):
        try:
            return float(value)
        except ValueError:
            return None
    return None
