"""The HTTP API (``/v1``): thin Starlette routes over the services.

Routes parse and validate with :mod:`veil.wire` (msgspec), authenticate with HTTP Basic
``<account_id>.<device_id>:<credential>``, call a service, and encode the answer. Every refusal
is a 4xx with a JSON :class:`~veil.wire.errors.ErrorBody`; an unexpected error is a 500 whose
body says nothing about the request (and the log names only the route and the exception type,
never a body or a credential).
"""

from __future__ import annotations

import asyncio
import logging
import re
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Final, TypeVar

from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Route, WebSocketRoute

from veil.server import errors, openapi
from veil.server.accounts import AccountService, Caller
from veil.server.delivery import Notifier
from veil.server.keys import KeyService
from veil.server.messages import MessageService
from veil.server.metrics import CALLER_KEY, CONTENT_TYPE, Metrics, MetricsMiddleware, route_template
from veil.server.ratelimit import RateLimiter
from veil.server.repository import Repository
from veil.server.websocket import WebSocketHub
from veil.wire import WireError, decode, encode
from veil.wire.accounts import RegisterRequest
from veil.wire.errors import ErrorBody
from veil.wire.keys import KeyUpload
from veil.wire.messages import SendRequest

log = logging.getLogger("veil.server")
T = TypeVar("T")

MAX_BODY: Final = 1 << 20
"""Largest request body accepted (a full key upload of 200 Kyber keys is ~430 KB of JSON)."""
READY_TIMEOUT_S: Final = 2.0
"""``/v1/ready`` answers 503 when the database does not answer a trivial query this fast."""


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


_DIGITS: Final = re.compile(r"[0-9]{1,12}")
"""ASCII digits only (``str.isdigit`` also accepts ``²`` and other scripts' digits)."""


async def _body(request: Request, kind: type[T]) -> T:
    declared = request.headers.get("content-length")
    if declared is not None and (not _DIGITS.fullmatch(declared) or int(declared) > MAX_BODY):
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
    if not _DIGITS.fullmatch(text) or not low <= int(text) <= high:
        raise errors.bad_request(f"{name} must be {low}..{high}")
    return int(text)


Handler = Callable[[Request], Awaitable[Response]]


def _guarded(handler: Handler) -> Handler:
    """Turn :class:`errors.ApiError` into its JSON answer, anything else into a bare 500."""

    async def run(request: Request) -> Response:
        try:
            return await handler(request)
        except errors.ApiError as exc:
            return _error(exc)
        except Exception as exc:  # never leak details of an unexpected failure
            log.error("internal error in %s: %s", route_template(request.scope), type(exc).__name__)
            return _error(errors.ApiError(500, "internal", "internal server error"))

    return run


async def _http_error(request: Request, exc: Exception) -> Response:
    status = exc.status_code if isinstance(exc, HTTPException) else 500
    code = {404: "not_found", 405: "method_not_allowed"}.get(status, "http_error")
    return _error(errors.ApiError(status, code, f"{request.method} {request.url.path}: {code}"))


class _Api:
    """The route handlers, over the services."""

    def __init__(
        self,
        repo: Repository,
        clock: Callable[[], float],
        wall_ms: Callable[[], int],
        limits: Limits,
        notifier: Notifier | None = None,
    ) -> None:
        self.accounts = AccountService(repo, wall_ms)
        self.keys = KeyService(repo, RateLimiter(*limits.bundles_per_device, clock))
        self.register_limiter = RateLimiter(*limits.register_per_ip, clock)
        self.notifier = Notifier() if notifier is None else notifier
        self.repo = repo
        self.metrics = Metrics(wall_ms)
        self.messages = MessageService(repo, self.notifier, wall_ms, metrics=self.metrics)
        self.hub = WebSocketHub(self.accounts, repo, self.notifier, self.metrics)
        self.metrics.track_connected(lambda: self.hub.connected)

    async def caller(self, request: Request) -> Caller:
        who = await self.accounts.authenticate(request.headers.get("authorization"))
        request.scope[CALLER_KEY] = f"{who.account_id}.{who.device_id}"  # for the access log
        return who

    async def health(self, request: Request) -> Response:
        return _json({"ok": True})

    async def ready(self, request: Request) -> Response:
        try:
            await asyncio.wait_for(self.repo.get_account("0" * 32), READY_TIMEOUT_S)
        except Exception as exc:
            log.warning("not ready: %s", type(exc).__name__)
            raise errors.ApiError(503, "not_ready", "the database does not answer") from None
        return _json({"ok": True})

    async def metrics_text(self, request: Request) -> Response:
        return Response(self.metrics.exposition(), media_type=CONTENT_TYPE)

    async def openapi(self, request: Request) -> Response:
        return Response(openapi.render(), media_type="application/json")

    async def register(self, request: Request) -> Response:
        host = request.client.host if request.client else "unknown"
        wait = self.register_limiter.take(host)
        if wait:
            raise errors.rate_limited(round(wait, 3))
        return _json(await self.accounts.register(await _body(request, RegisterRequest)), 201)

    async def lookup(self, request: Request) -> Response:
        await self.caller(request)
        return _json(await self.accounts.lookup(request.path_params["username"]))

    async def account(self, request: Request) -> Response:
        await self.caller(request)
        return _json(await self.accounts.get(request.path_params["account_id"]))

    async def delete_account(self, request: Request) -> Response:
        await self.accounts.delete(await self.caller(request))
        return Response(status_code=204)

    async def devices(self, request: Request) -> Response:
        return _json(await self.accounts.devices(await self.caller(request)))

    async def remove_device(self, request: Request) -> Response:
        who = await self.caller(request)
        await self.accounts.remove_device(who, _int_param(request, "device_id", 1, 127))
        return Response(status_code=204)

    async def upload_keys(self, request: Request) -> Response:
        who = await self.caller(request)
        return _json(await self.keys.upload(who, await _body(request, KeyUpload)))

    async def key_status(self, request: Request) -> Response:
        return _json(await self.keys.counts(await self.caller(request)))

    async def bundles(self, request: Request) -> Response:
        who = await self.caller(request)
        device = request.path_params.get("device_id")
        device_id = None if device is None else _int_param(request, "device_id", 1, 127)
        return _json(await self.keys.bundles(who, request.path_params["account_id"], device_id))

    async def send_message(self, request: Request) -> Response:
        who = await self.caller(request)
        body = await _body(request, SendRequest)
        return _json(await self.messages.send(who, request.path_params["account_id"], body))

    def routes(self) -> list[BaseRoute]:
        def r(path: str, handler: Handler, method: str) -> Route:
            return Route(path, _guarded(handler), methods=[method])

        return [
            r("/v1/health", self.health, "GET"),
            r("/v1/ready", self.ready, "GET"),
            r("/metrics", self.metrics_text, "GET"),
            r("/v1/openapi.json", self.openapi, "GET"),
            r("/v1/accounts", self.register, "POST"),
            r("/v1/accounts/me", self.delete_account, "DELETE"),
            r("/v1/accounts/by-username/{username}", self.lookup, "GET"),
            r("/v1/accounts/{account_id}", self.account, "GET"),
            r("/v1/devices", self.devices, "GET"),
            r("/v1/devices/{device_id}", self.remove_device, "DELETE"),
            r("/v1/keys", self.upload_keys, "PUT"),
            r("/v1/keys/status", self.key_status, "GET"),
            r("/v1/keys/{account_id}", self.bundles, "GET"),
            r("/v1/keys/{account_id}/{device_id}", self.bundles, "GET"),
            r("/v1/messages/{account_id}", self.send_message, "PUT"),
            WebSocketRoute("/v1/websocket", self.hub.endpoint),
        ]


def create_app(
    repo: Repository,
    *,
    clock: Callable[[], float] = time.monotonic,
    wall_ms: Callable[[], int] = lambda: int(time.time() * 1000),
    limits: Limits | None = None,
    migrate: bool = True,
    notifier: Notifier | None = None,
) -> Starlette:
    """The ASGI app over ``repo`` (migrated on startup when ``migrate``; closed on shutdown)."""
    api = _Api(repo, clock, wall_ms, limits or Limits(), notifier)

    @asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        if migrate:
            await repo.migrate()
        try:
            yield
        finally:
            await repo.close()

    app = Starlette(
        routes=api.routes(),
        lifespan=lifespan,
        exception_handlers={HTTPException: _http_error},
        middleware=[Middleware(MetricsMiddleware, metrics=api.metrics)],
    )
    app.router.redirect_slashes = False  # "/v1/keys/x/" is a JSON 404, not an empty redirect
    return app
