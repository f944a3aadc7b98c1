"""Which rate limit applies where (issue 3), and the client address they are keyed on.

Order of the checks for every request:

1. ``per_ip`` (:class:`PerIpLimit`, an ASGI middleware, in memory): every HTTP request and
   WebSocket handshake, before routing, parsing or authentication.
2. Requests that authenticate (:meth:`Throttle.authenticate`): an address that has used up
   its ``auth_failures_per_ip`` budget is refused for the time the shared limiter said,
   *before* its credential is checked (so guesses are not answered); a wrong credential
   spends one token of that budget (shared), and the one that finds it empty is a 429
   instead of a 401. Then ``per_account`` (in memory), after authentication, so a bad
   credential never spends another account's budget.
3. Specific limits (shared): ``register_per_ip`` (:meth:`Throttle.registration`) and
   ``bundles_per_device`` (:class:`~veil.server.keys.KeyService`).

The hot paths (sends over HTTP or the WebSocket) touch only in-memory buckets; the shared
limiter is reached only by registrations, bundle fetches and failed authentications.

The client address is the connection's peer, unless the peer is one of ``trusted_proxies``:
then ``X-Forwarded-For`` is read from the right, past every trusted proxy, and the first
other address is the client. IPv6 addresses are keyed by their /64 prefix (one subscriber's
usual allocation), so a client cannot multiply its budget by rotating addresses in it.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Awaitable, Callable, Iterable
from typing import Final

from starlette.responses import Response
from starlette.types import ASGIApp, Receive, Scope, Send

from veil.server import errors
from veil.server.accounts import AccountService, Caller
from veil.server.ratelimit import (
    AUTH_FAILURES_PER_IP,
    PER_ACCOUNT,
    PER_IP,
    REGISTER_PER_IP,
    Limiter,
    MemoryLimiter,
    Penalties,
)

CLIENT_KEY: Final = "veil.client"
"""Scope key holding the client address key (set once per request)."""
COUNTED_KEY: Final = "veil.per_ip_counted"
"""Scope key set once the ``per_ip`` token of a request is spent."""
CLOSE_TRY_AGAIN: Final = 1013
"""WebSocket close code "try again later", when a 429 cannot be sent as an HTTP answer."""

Address = ipaddress.IPv4Address | ipaddress.IPv6Address
Network = ipaddress.IPv4Network | ipaddress.IPv6Network


def parse_proxies(proxies: Iterable[str]) -> tuple[Network, ...]:
    """Addresses or networks (``10.0.0.0/8``); :class:`ValueError` names a bad one."""
    out = []
    for text in proxies:
        try:
            out.append(ipaddress.ip_network(text.strip(), strict=False))
        except ValueError:
            raise ValueError(f"{text!r} is not an IP address or network") from None
    return tuple(out)


def _address(text: str) -> Address | None:
    try:
        address = ipaddress.ip_address(text.strip())
    except ValueError:
        return None
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        return address.ipv4_mapped
    return address


def _key(address: Address) -> str:
    if isinstance(address, ipaddress.IPv6Address):
        return str(ipaddress.IPv6Network((address, 64), strict=False))
    return str(address)


def _header_values(scope: Scope, name: bytes) -> list[str]:
    return [bytes(v).decode("latin-1") for k, v in scope.get("headers", ()) if k == name]


class ClientAddress:
    """The key of a request's client address (see the module docstring)."""

    def __init__(self, trusted_proxies: Iterable[str] = ()) -> None:
        self.trusted = parse_proxies(trusted_proxies)

    def _is_trusted(self, address: Address) -> bool:
        return any(address in network for network in self.trusted)

    def of(self, scope: Scope) -> str:
        """The address key of ``scope``'s client (computed once, kept in the scope)."""
        known = scope.get(CLIENT_KEY)
        if isinstance(known, str):
            return known
        client = scope.get("client")
        host = str(client[0]) if client else "unknown"
        address = _address(host)
        if address is not None and self.trusted and self._is_trusted(address):
            forwarded = ",".join(_header_values(scope, b"x-forwarded-for")).split(",")
            for entry in reversed(forwarded):
                hop = _address(entry)
                if hop is None:
                    break
                address = hop
                if not self._is_trusted(hop):
                    break
        key = host if address is None else _key(address)
        scope[CLIENT_KEY] = key
        return key


Refuse = Callable[[errors.ApiError], Response]
"""Turns a refusal into its JSON answer (``app._error``)."""


async def refuse(scope: Scope, send: Send, response: Response, receive: Receive) -> None:
    """Send ``response`` for an HTTP request, or as a WebSocket handshake's HTTP answer when
    the server supports that, else close the handshake with :data:`CLOSE_TRY_AGAIN`."""
    if scope["type"] == "websocket" and "websocket.http.response" not in scope.get(
        "extensions", {}
    ):
        await send({"type": "websocket.close", "code": CLOSE_TRY_AGAIN})
        return
    await response(scope, receive, send)


class PerIpLimit:
    """ASGI middleware: the ``per_ip`` limit on every HTTP request and WebSocket handshake."""

    def __init__(self, app: ASGIApp, throttle: Throttle, respond: Refuse) -> None:
        self.app = app
        self.throttle = throttle
        self.respond = respond

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] in ("http", "websocket"):
            refusal = self.throttle.per_ip(scope)
            if refusal is not None:
                await refuse(scope, send, self.respond(refusal), receive)
                return
        await self.app(scope, receive, send)


def _limited(wait: float) -> errors.ApiError:
    return errors.rate_limited(round(wait, 3))


class Throttle:
    """The rate-limit policy of the API over an in-memory and a shared :class:`Limiter`.

    ``memory`` must have the ``per_ip`` and ``per_account`` scopes, ``shared`` the
    ``register_per_ip`` and ``auth_failures_per_ip`` ones.
    """

    def __init__(
        self,
        memory: MemoryLimiter,
        shared: Limiter,
        addresses: ClientAddress,
        penalties: Penalties,
    ) -> None:
        self.memory = memory
        self.shared = shared
        self.addresses = addresses
        self.penalties = penalties

    def per_ip(self, scope: Scope) -> errors.ApiError | None:
        """Spend the request's ``per_ip`` token (once per request); a 429 when refused."""
        if scope.get(COUNTED_KEY):
            return None
        scope[COUNTED_KEY] = True
        wait = self.memory.take_now(PER_IP, self.addresses.of(scope))
        return _limited(wait) if wait else None

    async def registration(self, scope: Scope) -> None:
        """Raise a 429 when the client address has registered too often."""
        wait = await self.shared.take(REGISTER_PER_IP, self.addresses.of(scope))
        if wait:
            raise _limited(wait)

    async def authenticate(
        self, scope: Scope, authorization: str | None, accounts: AccountService
    ) -> Caller:
        """:meth:`AccountService.authenticate` under the failed-authentication and
        per-account limits (see the module docstring); raises 401 or 429."""
        address = self.addresses.of(scope)
        blocked = self.penalties.remaining(address)
        if blocked:
            raise _limited(blocked)
        try:
            who = await accounts.authenticate(authorization)
        except errors.ApiError:
            if authorization:  # no credential offered is not a guess
                wait = await self.shared.take(AUTH_FAILURES_PER_IP, address)
                if wait:
                    self.penalties.impose(address, wait)
                    raise _limited(wait) from None
            raise
        wait = self.memory.take_now(PER_ACCOUNT, who.account_id)
        if wait:
            raise _limited(wait)
        return who

    def websocket_login(self, accounts: AccountService) -> Callable[[Scope], Awaitable[Caller]]:
        """The WebSocket hub's login (it bypasses the HTTP middleware): ``per_ip``, then
        :meth:`authenticate` with the handshake's ``Authorization``; raises 401 or 429."""

        async def login(scope: Scope) -> Caller:
            refusal = self.per_ip(scope)
            if refusal is not None:
                raise refusal
            header = _header_values(scope, b"authorization")
            return await self.authenticate(scope, header[0] if header else None, accounts)

        return login

    def send_limit(self, who: Caller) -> float:
        """Spend one ``per_account`` token for a send over the WebSocket (a send there is
        a request like ``PUT /v1/messages``); the seconds to wait, 0 if allowed."""
        return self.memory.take_now(PER_ACCOUNT, who.account_id)
