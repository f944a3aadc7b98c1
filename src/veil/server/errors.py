"""API errors: every refusal is an HTTP status and a JSON :class:`~veil.wire.errors.ErrorBody`."""

from __future__ import annotations


class ApiError(Exception):
    """A refusal the routes turn into ``status`` with ``{"error": code, "message": ...}``."""

    def __init__(
        self, status: int, code: str, message: str, details: dict[str, object] | None = None
    ) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.details = details or {}


def bad_request(message: str, **details: object) -> ApiError:
    """400 ``bad_request``."""
    return ApiError(400, "bad_request", message, details)


def unauthorized() -> ApiError:
    """401: missing or wrong credentials (never says which part was wrong)."""
    return ApiError(401, "unauthorized", "missing or invalid credentials")


def forbidden(message: str) -> ApiError:
    """403: authenticated, but not allowed."""
    return ApiError(403, "forbidden", message)


def not_found(what: str) -> ApiError:
    """404 for an unknown account, device or resource."""
    return ApiError(404, "not_found", f"{what} not found")


def conflict(code: str, message: str) -> ApiError:
    """409 with a specific code."""
    return ApiError(409, code, message)


def rate_limited(retry_after_s: float) -> ApiError:
    """429 with a ``retry_after_s`` detail."""
    return ApiError(429, "rate_limited", "too many requests", {"retry_after_s": retry_after_s})
