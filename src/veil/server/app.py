"""The HTTP API (``/v1``): thin Starlette routes over the services.

Routes parse and validate with :mod:`veil.wire` (msgspec), authenticate with HTTP Basic
``<account_id>.<device_id>:<credential>``, call a service, and encode the answer. Every refusal
is a 4xx with a JSON :class:`~veil.wire.errors.ErrorBody`; an unexpected error is a 500 whose
body says nothing about the request (and the log names only the route and the exception type,
never a body or a credential).
"""

from __future__ import annotations

import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Final, TypeVar

from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from veil.server import errors
from veil.server.accounts import AccountService, Caller
from veil.server.keys import KeyService
from veil.server.ratelimit import RateLimiter
from veil.server.repository import Repository
from veil.wire import WireError, decode, encode
from veil.wire.accounts import RegisterRequest
from veil.wire.errors import ErrorBody
from veil.wire.keys import KeyUpload

log = logging.getLogger("veil.server")
T = TypeVar("T")

MAX_BODY: Final = 1 << 20
"""Largest request body accepted (a full key upload of 200 Kyber keys is ~430 KB of JSON)."""


@dataclass(frozen=True, slots=True)
class Limits:
    """Rate limits: tokens per second and burst, per requester."""

    register_per_ip: tuple[float, float] = (1.0, 20.0)
    bundles_per_device: tuple[float, float] = (5.0, 100.0)


def _json(value: object, status: int = 200) -> Response:
    return Response(encode(value), status_code=status, media_type="application/json")


def _error(exc: errors.ApiError) -> Response:
    headers = {}
    if exc.status == 429:
        headers["Retry-After"] = str(max(1, round(float(str(exc.details["retry_after_s"])))))
    if exc.status == 401:
        headers["WWW-Authenticate"] = 'Basic realm="veil"'
    body = encode(ErrorBody(exc.code, exc.message, exc.details))
    return Response(body, exc.status, headers=headers, media_type="application/json")


async def _body(request: Request, kind: type[T]) -> T:
    declared = request.headers.get("content-length")
    if declared is not None and (not declared.isdigit() or int(declared) > MAX_BODY):
        raise errors.ApiError(413, "too_large", f"request body over {MAX_BODY} bytes")
    chunks = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > MAX_BODY:
            raise errors.ApiError(413, "too_large", f"request body over {MAX_BODY} bytes")
        chunks.append(chunk)
    try:
        return decode(b"".join(chunks), kind)
    except WireError as exc:
        raise errors.bad_request(f"invalid request body: {exc}") from None


def _int_param(request: Request, name: str, low: int, high: int) -> int:
    text = request.path_params[name]
    if not text.isdigit() or not low <= int(text) <= high:
        raise errors.bad_request(f"{name} must be {low}..{high}")
    return int(text)


Handler = Callable[[Request], Awaitable[Response]]


def create_app(
    repo: Repository,
    *,
    clock: Callable[[], float] = time.monotonic,
    wall_ms: Callable[[], int] = lambda: int(time.time() * 1000),
    limits: Limits | None = None,
    migrate: bool = True,
) -> Starlette:
    """The ASGI app over ``repo`` (migrated on startup when ``migrate``; closed on shutdown)."""
    limits = limits or Limits()
    accounts = AccountService(repo, wall_ms)
    keys = KeyService(repo, RateLimiter(*limits.bundles_per_device, clock))
    register_limiter = RateLimiter(*limits.register_per_ip, clock)

    def guarded(handler: Handler) -> Handler:
        async def run(request: Request) -> Response:
            try:
                return await handler(request)
            except errors.ApiError as exc:
                return _error(exc)
            except Exception as exc:  # never leak details of an unexpected failure
                log.error("internal error in %s: %s", request.url.path, type(exc).__name__)
                return _error(errors.ApiError(500, "internal", "internal server error"))

        return run

    async def caller(request: Request) -> Caller:
        return await accounts.authenticate(request.headers.get("authorization"))

    async def health(request: Request) -> Response:
        return _json({"ok": True})

    async def register(request: Request) -> Response:
        host = request.client.host if request.client else "unknown"
        wait = register_limiter.take(host)
        if wait:
            raise errors.rate_limited(round(wait, 3))
        return _json(await accounts.register(await _body(request, RegisterRequest)), 201)

    async def lookup(request: Request) -> Response:
        await caller(request)
        return _json(await accounts.lookup(request.path_params["username"]))

    async def account(request: Request) -> Response:
        await caller(request)
        return _json(await accounts.get(request.path_params["account_id"]))

    async def delete_account(request: Request) -> Response:
        await accounts.delete(await caller(request))
        return Response(status_code=204)

    async def devices(request: Request) -> Response:
        return _json(await accounts.devices(await caller(request)))

    async def remove_device(request: Request) -> Response:
        who = await caller(request)
        await accounts.remove_device(who, _int_param(request, "device_id", 1, 127))
        return Response(status_code=204)

    async def upload_keys(request: Request) -> Response:
        who = await caller(request)
        return _json(await keys.upload(who, await _body(request, KeyUpload)))

    async def key_status(request: Request) -> Response:
        return _json(await keys.counts(await caller(request)))

    async def bundles(request: Request) -> Response:
        who = await caller(request)
        device = request.path_params.get("device_id")
        device_id = None if device is None else _int_param(request, "device_id", 1, 127)
        return _json(await keys.bundles(who, request.path_params["account_id"], device_id))

    @asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        if migrate:
            await repo.migrate()
        try:
            yield
        finally:
            await repo.close()

    routes = [
        Route("/v1/health", guarded(health), methods=["GET"]),
        Route("/v1/accounts", guarded(register), methods=["POST"]),
        Route("/v1/accounts/me", guarded(delete_account), methods=["DELETE"]),
        Route("/v1/accounts/by-username/{username}", guarded(lookup), methods=["GET"]),
        Route("/v1/accounts/{account_id}", guarded(account), methods=["GET"]),
        Route("/v1/devices", guarded(devices), methods=["GET"]),
        Route("/v1/devices/{device_id}", guarded(remove_device), methods=["DELETE"]),
        Route("/v1/keys", guarded(upload_keys), methods=["PUT"]),
        Route("/v1/keys/status", guarded(key_status), methods=["GET"]),
        Route("/v1/keys/{account_id}", guarded(bundles), methods=["GET"]),
        Route("/v1/keys/{account_id}/{device_id}", guarded(bundles), methods=["GET"]),
    ]

    async def http_error(request: Request, exc: Exception) -> Response:
        status = exc.status_code if isinstance(exc, HTTPException) else 500
        code = {404: "not_found", 405: "method_not_allowed"}.get(status, "http_error")
        return _error(errors.ApiError(status, code, f"{request.method} {request.url.path}: {code}"))

    return Starlette(
        routes=routes, lifespan=lifespan, exception_handlers={HTTPException: http_error}
    )
