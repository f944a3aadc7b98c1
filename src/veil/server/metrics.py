"""Prometheus metrics (``GET /metrics``) and the HTTP middleware that measures requests.

Each app has its own :class:`prometheus_client.CollectorRegistry`, so several apps in one
process (tests) never share or clash over counters.

Metrics:

* ``veil_http_requests_total{route,method,status}`` and ``veil_http_request_seconds{route}``:
  ``route`` is the route template (``/v1/keys/{account_id}``), never the concrete path, so no
  identifier becomes a label; a path that matches no route is ``route="unmatched"``.
* ``veil_envelopes_stored_total``, ``veil_envelopes_delivered_total`` (pushes on a WebSocket;
  an envelope delivered again after a reconnect counts again), ``veil_envelopes_acked_total``.
* ``veil_envelopes_expired_total``: envelopes deleted undelivered after the queue retention
  (by this process's sweeper).
* ``veil_connected_devices``: WebSocket connections of this process, read at scrape time.
* ``veil_queue_depth``: an *approximation*, computed in process as envelopes stored minus
  envelopes acked since this process started (never below 0). It does not see envelopes that
  were queued before the start, acked through another process, or dropped with a deleted
  account or device; an exact count would be a ``COUNT(*)`` over every queue per scrape.
* ``veil_send_to_delivery_seconds``: from an envelope's ``server_ms`` (when it was stored) to
  the moment it is pushed on a WebSocket; includes the time a device was offline.

:class:`MetricsMiddleware` is a pure ASGI middleware (no ``BaseHTTPMiddleware``): it times
each HTTP request, counts it, and writes one access-log line (see :mod:`veil.server.logs`).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterable
from typing import Final

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from prometheus_client.exposition import CONTENT_TYPE_LATEST, generate_latest
from starlette.types import ASGIApp, Message, Receive, Scope, Send

access_log = logging.getLogger("veil.server.access")

CALLER_KEY: Final = "veil.caller"
"""Scope key where a route records the authenticated ``account_id.device_id`` (for the log)."""

UNMATCHED: Final = "unmatched"
PROBES: Final = frozenset({"/metrics", "/v1/health", "/v1/ready"})
"""Routes polled by monitoring: their access lines are DEBUG, not INFO."""
CONTENT_TYPE: Final = CONTENT_TYPE_LATEST
"""The media type of :meth:`Metrics.exposition`."""

DELIVERY_BUCKETS: Final = (
    0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0,
    3600.0, 86400.0, float("inf"),
)  # fmt: skip
"""Stored-to-pushed latency: milliseconds for a connected device, up to days for one offline."""


class Metrics:
    """The server's metrics, in a registry of their own."""

    def __init__(self, wall_ms: Callable[[], int] | None = None) -> None:
        self.wall_ms = wall_ms or (lambda: int(time.time() * 1000))
        self.registry = CollectorRegistry(auto_describe=True)
        r = self.registry
        self.http_requests = Counter(
            "veil_http_requests", "HTTP requests", ["route", "method", "status"], registry=r
        )
        self.http_seconds = Histogram(
            "veil_http_request_seconds", "HTTP request duration", ["route"], registry=r
        )
        self.stored = Counter("veil_envelopes_stored", "Envelopes stored", registry=r)
        self.delivered = Counter(
            "veil_envelopes_delivered", "Envelopes pushed on a WebSocket", registry=r
        )
        self.acked = Counter("veil_envelopes_acked", "Envelopes acknowledged", registry=r)
        self.expired = Counter(
            "veil_envelopes_expired",
            "Envelopes deleted undelivered after the queue retention",
            registry=r,
        )
        self.connected = Gauge(
            "veil_connected_devices", "Devices connected to this process", registry=r
        )
        self.queue_depth = Gauge(
            "veil_queue_depth",
            "Approximate envelopes waiting: stored minus acked since this process started",
            registry=r,
        )
        self._stored_n = 0
        self._acked_n = 0
        self.queue_depth.set_function(lambda: float(max(0, self._stored_n - self._acked_n)))
        self.send_to_delivery = Histogram(
            "veil_send_to_delivery_seconds",
            "From an envelope being stored to it being pushed on a WebSocket",
            buckets=DELIVERY_BUCKETS,
            registry=r,
        )

    def track_connected(self, count: Callable[[], int]) -> None:
        """Read ``veil_connected_devices`` from ``count()`` at each scrape."""
        self.connected.set_function(lambda: float(count()))

    def envelopes_stored(self, n: int) -> None:
        """``n`` new envelopes were stored (not a duplicate send)."""
        if n:
            self.stored.inc(n)
            self._stored_n += n

    def envelopes_delivered(self, server_ms: Iterable[int]) -> None:
        """Envelopes stored at these ``server_ms`` were just pushed."""
        now = self.wall_ms()
        for ms in server_ms:
            self.delivered.inc()
            self.send_to_delivery.observe(max(0, now - ms) / 1000)

    def envelopes_acked(self, n: int) -> None:
        """``n`` delivered envelopes were acknowledged (and deleted)."""
        if n:
            self.acked.inc(n)
            self._acked_n += n

    def envelopes_expired(self, n: int) -> None:
        """``n`` undelivered envelopes were deleted after the queue retention."""
        if n:
            self.expired.inc(n)
            self._acked_n += n  # they left the queues like acked ones (veil_queue_depth)

    def exposition(self) -> bytes:
        """The text exposition format of every metric."""
        return generate_latest(self.registry)


def route_template(scope: Scope) -> str:
    """The template of the route that handled ``scope`` (set by Starlette's router)."""
    route = scope.get("route")
    path = getattr(route, "path", None)
    return path if isinstance(path, str) else UNMATCHED


class MetricsMiddleware:
    """Times, counts and logs every HTTP request (WebSocket and lifespan pass through)."""

    def __init__(self, app: ASGIApp, metrics: Metrics) -> None:
        self.app = app
        self.metrics = metrics
        # Labelled children, looked up once per label set (``labels()`` takes a lock and
        # builds tuples on every call). The label sets are bounded: routes x methods x codes.
        self._counters: dict[tuple[str, str, int], Counter] = {}
        self._timers: dict[str, Histogram] = {}

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        start = time.perf_counter()
        status = 500

        async def send_wrapper(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = int(message["status"])
            await send(message)

        try:
            await self.app(scope, receive, send_wrapper)
        finally:
            elapsed = time.perf_counter() - start
            route = route_template(scope)
            method = str(scope.get("method", "GET"))
            counter = self._counters.get((route, method, status))
            if counter is None:
                counter = self.metrics.http_requests.labels(route, method, str(status))
                self._counters[route, method, status] = counter
            counter.inc()
            timer = self._timers.get(route)
            if timer is None:
                timer = self._timers[route] = self.metrics.http_seconds.labels(route)
            timer.observe(elapsed)
            level = logging.DEBUG if route in PROBES else logging.INFO
            if access_log.isEnabledFor(level):
                caller = scope.get(CALLER_KEY)
                access_log.log(
                    level,
                    "%s %s %d",
                    method,
                    route,
                    status,
                    extra={
                        "method": method,
                        "route": route,
                        "status": status,
                        "duration_ms": round(elapsed * 1000, 3),
                        "device": caller if isinstance(caller, str) else None,
                    },
                )
