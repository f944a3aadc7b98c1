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
from dataclasses import dataclass, fields
from typing import Any, Final, TypeVar

from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.middleware import Middleware
from starlette.requests import ClientDisconnect, Request
from starlette.responses import Response, StreamingResponse
from starlette.routing import BaseRoute, Route, WebSocketRoute
from starlette.types import ASGIApp, Receive, Scope, Send

from veil.server import errors, openapi
from veil.server.accounts import AccountService, Caller
from veil.server.attachments import AttachmentService, AttachmentSettings, default_blob_store
from veil.server.blobs import BlobStore
from veil.server.calls import TurnService, TurnSettings
from veil.server.delivery import Notifier
from veil.server.keys import KeyService
from veil.server.messages import MessageService
from veil.server.metrics import CALLER_KEY, CONTENT_TYPE, Metrics, MetricsMiddleware, route_template
from veil.server.postgres_ratelimit import shared_limiter
from veil.server.provisioning import ProvisioningService
from veil.server.ratelimit import (
    AUTH_FAILURES_PER_IP,
    BUNDLES_PER_DEVICE,
    LINK_PER_IP,
    PER_ACCOUNT,
    PER_IP,
    REGISTER_PER_IP,
    MemoryLimiter,
    Penalties,
    Rate,
    RateLimiter,
    check_rate,
)
from veil.server.report_store import report_store
from veil.server.reporting import ReportingKeys
from veil.server.reports import ReportService
from veil.server.repository import Repository
from veil.server.social import SocialService
from veil.server.sweeper import DAY_MS, QUEUE_RETENTION_DAYS, Sweeper
from veil.server.throttle import ClientAddress, PerIpLimit, Throttle
from veil.server.websocket import WebSocketHub
from veil.wire import WireError, decode, encode
from veil.wire.accounts import RegisterRequest
from veil.wire.errors import ErrorBody
from veil.wire.keys import KeyUpload
from veil.wire.messages import SendRequest
from veil.wire.provisioning import LinkRequest, ProvisioningMessage
from veil.wire.reports import ReportRequest

log = logging.getLogger("veil.server")
T = TypeVar("T")

WEBSOCKET_PATH: Final = "/v1/websocket"
MAX_BODY: Final = 1 << 20
"""Largest request body accepted (a full key upload of 200 Kyber keys is ~430 KB of JSON)."""
READY_TIMEOUT_S: Final = 2.0
"""``/v1/ready`` answers 503 when the database does not answer a trivial query this fast."""


@dataclass(frozen=True, slots=True)
class Limits:
    """Rate limits: ``(tokens per second, burst)`` per requester; see :mod:`.throttle`.

    ``per_ip`` and ``per_account`` are kept in each process's memory; the others are shared
    by the processes of one PostgreSQL database (:mod:`.postgres_ratelimit`).
    """

    per_ip: Rate = (100.0, 500.0)
    per_account: Rate = (50.0, 500.0)
    register_per_ip: Rate = (1.0, 20.0)
    bundles_per_device: Rate = (5.0, 100.0)
    auth_failures_per_ip: Rate = (1.0, 50.0)
    provisioning_per_ip: Rate = (0.2, 20.0)
    """New-device mailboxes (``POST /v1/provisioning``), per address; in memory."""
    link_per_ip: Rate = (0.1, 10.0)
    """Linking attempts (``POST /v1/devices/link``: code guesses), per address; shared."""

    def __post_init__(self) -> None:
        for name, rate in self.rates().items():
            check_rate(name, rate)

    def rates(self) -> dict[str, Rate]:
        """Every limit by scope name (the field names)."""
        return {f.name: getattr(self, f.name) for f in fields(self)}


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


async def _stream(request: Request) -> AsyncIterator[bytes]:
    """The request body as it arrives (a client that goes away is a 400, not a 500)."""
    try:
        async for chunk in request.stream():
            if chunk:
                yield chunk
    except ClientDisconnect:
        raise errors.bad_request("the client went away before the end of the body") from None


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
        trusted_proxies: tuple[str, ...] = (),
        blobs: BlobStore | None = None,
        attachments: AttachmentSettings | None = None,
        queue_retention_days: int = QUEUE_RETENTION_DAYS,
        turn: TurnSettings | None = None,
    ) -> None:
        self.accounts = AccountService(repo, wall_ms)
        self.turn = TurnService(turn or TurnSettings(), wall_ms)
        self.social = SocialService(repo, wall_ms)
        self.provisioning = ProvisioningService(repo, wall_ms)
        self.provisioning_limiter = RateLimiter(*limits.provisioning_per_ip, clock)
        blob_store = default_blob_store(repo) if blobs is None else blobs
        self.attachments = AttachmentService(repo, blob_store, wall_ms, attachments)
        reports = report_store(repo)  # message franking: reporting secrets, abuse reports
        self.reporting = ReportingKeys(reports, wall_ms)
        self.reports = ReportService(repo, reports, self.reporting, wall_ms)
        self.sweeper = Sweeper(repo, self.attachments, wall_ms, reporting=self.reporting)
        rates = limits.rates()
        memory = MemoryLimiter({k: rates[k] for k in (PER_IP, PER_ACCOUNT)}, clock)
        shared_rates = {k: rates[k] for k in (REGISTER_PER_IP, BUNDLES_PER_DEVICE)}
        shared_rates[AUTH_FAILURES_PER_IP] = rates[AUTH_FAILURES_PER_IP]
        # Linking codes are guessed through this route: the budget must hold across processes.
        shared_rates[LINK_PER_IP] = rates[LINK_PER_IP]
        shared = shared_limiter(
            repo, shared_rates, clock=clock, wall_clock=lambda: wall_ms() / 1000
        )
        self.throttle = Throttle(memory, shared, ClientAddress(trusted_proxies), Penalties(clock))
        self.keys = KeyService(repo, shared)
        self.notifier = Notifier() if notifier is None else notifier
        self.repo = repo
        self.metrics = Metrics(wall_ms)
        self.sweeper.metrics = self.metrics
        self.sweeper.queue_retention_ms = queue_retention_days * DAY_MS
        self.messages = MessageService(
            repo, self.notifier, wall_ms, metrics=self.metrics, reporting=self.reporting
        )
        self.hub = WebSocketHub(
            repo,
            self.notifier,
            self.metrics,
            messages=self.messages,
            key_counts=self.keys.counts,
            login=self.throttle.websocket_login(self.accounts),
            send_limit=self.throttle.send_limit,
        )
        self.metrics.track_connected(lambda: self.hub.connected)
        self.keys.on_low = self.notifier.notify_keys_low

    async def caller(self, request: Request) -> Caller:
        header = request.headers.get("authorization")
        who = await self.throttle.authenticate(request.scope, header, self.accounts)
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
        await self.throttle.registration(request.scope)
        return _json(await self.accounts.register(await _body(request, RegisterRequest)), 201)

    async def lookup(self, request: Request) -> Response:
        who = await self.caller(request)
        return _json(await self.accounts.lookup(request.path_params["username"], who.account_id))

    async def account(self, request: Request) -> Response:
        who = await self.caller(request)
        return _json(await self.accounts.get(request.path_params["account_id"], who.account_id))

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

    def _limit_address(self, limiter: RateLimiter, request: Request) -> None:
        wait = limiter.take(self.throttle.addresses.of(request.scope))
        if wait:
            raise errors.rate_limited(round(wait, 3))

    async def open_provisioning(self, request: Request) -> Response:
        self._limit_address(self.provisioning_limiter, request)
        return _json(await self.provisioning.create(), 201)

    async def receive_provisioning(self, request: Request) -> Response:
        wait = request.query_params.get("wait", "0")
        if not _DIGITS.fullmatch(wait) or int(wait) > 30:
            raise errors.bad_request("wait must be 0..30 seconds")
        message = await self.provisioning.receive(
            request.path_params["provisioning_id"],
            request.headers.get("authorization"),
            int(wait),
        )
        return Response(status_code=204) if message is None else _json(message)

    async def put_provisioning(self, request: Request) -> Response:
        who = await self.caller(request)
        body = await _body(request, ProvisioningMessage)
        await self.provisioning.put(who, request.path_params["provisioning_id"], body)
        return Response(status_code=204)

    async def provisioning_code(self, request: Request) -> Response:
        return _json(await self.provisioning.new_code(await self.caller(request)), 201)

    async def link_device(self, request: Request) -> Response:
        wait = await self.throttle.shared.take(
            LINK_PER_IP, self.throttle.addresses.of(request.scope)
        )
        if wait:
            raise errors.rate_limited(round(wait, 3))
        return _json(await self.provisioning.link(await _body(request, LinkRequest)), 201)

    async def report(self, request: Request) -> Response:
        who = await self.caller(request)  # spends a per_account token
        return _json(await self.reports.report(who, await _body(request, ReportRequest)), 201)

    async def turn_credentials(self, request: Request) -> Response:
        who = await self.caller(request)
        return _json(self.turn.credentials(who.account_id))

    async def upload_attachment(self, request: Request) -> Response:
        who = await self.caller(request)
        length = request.headers.get("content-length")
        return _json(await self.attachments.upload(who, length, _stream(request)), 201)

    async def fetch_attachment(self, request: Request) -> Response:
        await self.caller(request)
        size, chunks = await self.attachments.open(request.path_params["attachment_id"])
        headers = {"content-length": str(size), "cache-control": "no-store"}
        return StreamingResponse(chunks, headers=headers, media_type="application/octet-stream")

    async def delete_attachment(self, request: Request) -> Response:
        who = await self.caller(request)
        await self.attachments.delete(who, request.path_params["attachment_id"])
        return Response(status_code=204)

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
            r("/v1/devices/provisioning-code", self.provisioning_code, "POST"),
            r("/v1/devices/link", self.link_device, "POST"),
            r("/v1/devices/{device_id}", self.remove_device, "DELETE"),
            r("/v1/keys", self.upload_keys, "PUT"),
            r("/v1/keys/status", self.key_status, "GET"),
            r("/v1/keys/{account_id}", self.bundles, "GET"),
            r("/v1/keys/{account_id}/{device_id}", self.bundles, "GET"),
            r("/v1/messages/{account_id}", self.send_message, "PUT"),
            r("/v1/provisioning", self.open_provisioning, "POST"),
            r("/v1/provisioning/{provisioning_id}", self.receive_provisioning, "GET"),
            r("/v1/provisioning/{provisioning_id}", self.put_provisioning, "PUT"),
            r("/v1/reports", self.report, "POST"),
            r("/v1/calls/turn", self.turn_credentials, "GET"),
            r("/v1/attachments", self.upload_attachment, "POST"),
            r("/v1/attachments/{attachment_id}", self.fetch_attachment, "GET"),
            r("/v1/attachments/{attachment_id}", self.delete_attachment, "DELETE"),
            *self._social_routes(),
            WebSocketRoute(WEBSOCKET_PATH, self.hub),
        ]

    def _social_routes(self) -> list[BaseRoute]:
        """:mod:`veil.wire.social`: authenticate, call the service; no answer is a 204."""

        def on(action: Callable[[Caller, str], Awaitable[None]]) -> Handler:
            async def handle(request: Request) -> Response:
                await action(await self.caller(request), request.path_params["account_id"])
                return Response(status_code=204)

            return _guarded(handle)

        def get(action: Callable[..., Awaitable[object]], *, other: bool = False) -> Handler:
            async def handle(request: Request) -> Response:
                who = await self.caller(request)
                args = (request.path_params["account_id"],) if other else ()
                return _json(await action(who, *args))

            return _guarded(handle)

        s = self.social
        return [
            Route("/v1/follows", get(s.following), methods=["GET"]),
            Route("/v1/follows/{account_id}", on(s.follow), methods=["PUT"]),
            Route("/v1/follows/{account_id}", on(s.unfollow), methods=["DELETE"]),
            Route("/v1/followers", get(s.followers), methods=["GET"]),
            Route("/v1/chats/{account_id}", on(s.accept), methods=["PUT"]),
            Route("/v1/chats/{account_id}", on(s.decline), methods=["DELETE"]),
            Route("/v1/blocks", get(s.blocks), methods=["GET"]),
            Route("/v1/blocks/{account_id}", on(s.block), methods=["PUT"]),
            Route("/v1/blocks/{account_id}", on(s.unblock), methods=["DELETE"]),
            Route(
                "/v1/relationship/{account_id}", get(s.relationship, other=True), methods=["GET"]
            ),
        ]


class _App(Starlette):
    """Starlette, except that the device WebSocket goes straight to its hub.

    A device holds its socket for hours: the middleware and routing frames Starlette would
    keep alive for it cost memory on every idle connection, and none of them is needed
    (the hub does its own rate limiting, authentication and error handling).
    """

    def __init__(self, websocket: ASGIApp, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self._websocket = websocket

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "websocket" and scope.get("path") == WEBSOCKET_PATH:
            scope["app"] = self
            await self._websocket(scope, receive, send)
            return
        await super().__call__(scope, receive, send)


def create_app(
    repo: Repository,
    *,
    clock: Callable[[], float] = time.monotonic,
    wall_ms: Callable[[], int] = lambda: int(time.time() * 1000),
    limits: Limits | None = None,
    migrate: bool = True,
    notifier: Notifier | None = None,
    trusted_proxies: tuple[str, ...] = (),
    blobs: BlobStore | None = None,
    attachments: AttachmentSettings | None = None,
    queue_retention_days: int = QUEUE_RETENTION_DAYS,
    turn: TurnSettings | None = None,
) -> Starlette:
    """The ASGI app over ``repo`` (migrated on startup when ``migrate``; closed on shutdown).

    ``clock`` (monotonic seconds) drives the in-memory rate limits, ``wall_ms`` the shared
    ones; ``X-Forwarded-For`` is believed only from ``trusted_proxies`` (:mod:`.throttle`).
    Attachment bytes go to ``blobs`` (default: :func:`.attachments.default_blob_store`); the
    lifespan runs the periodic :class:`.sweeper.Sweeper` (also at ``app.state.sweeper``), which
    also deletes envelopes left undelivered for ``queue_retention_days``. ``turn``: the relay
    whose credentials ``GET /v1/calls/turn`` hands out (:mod:`.calls`).
    """
    api = _Api(
        repo,
        clock,
        wall_ms,
        limits or Limits(),
        notifier,
        trusted_proxies=trusted_proxies,
        blobs=blobs,
        attachments=attachments,
        queue_retention_days=queue_retention_days,
        turn=turn,
    )

    @asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        if migrate:
            await repo.migrate()
        await api.reporting.load()  # creates the first reporting key on a new database
        sweeping = asyncio.create_task(api.sweeper.run(), name="veil-sweeper")
        try:
            yield
        finally:
            sweeping.cancel()
            await asyncio.gather(sweeping, return_exceptions=True)
            await api.throttle.shared.close()
            await repo.close()

    app = _App(
        api.hub,
        routes=api.routes(),
        lifespan=lifespan,
        exception_handlers={HTTPException: _http_error},
        middleware=[
            Middleware(MetricsMiddleware, metrics=api.metrics),
            Middleware(PerIpLimit, throttle=api.throttle, respond=_error),
        ],
    )
    app.state.sweeper = api.sweeper
    app.state.reporting = api.reporting
    app.router.redirect_slashes = False  # "/v1/keys/x/" is a JSON 404, not an empty redirect
    return app
