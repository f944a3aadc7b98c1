"""The server's HTTP API (``/v1``), one typed method per route.

Bodies are the :mod:`veil.wire` Structs as JSON (msgspec). Every call but registration,
linking and the provisioning mailbox authenticates with the device's :class:`Credentials`
(HTTP Basic). A non-2xx answer raises :class:`~veil.client.errors.ServerError` with the
server's error body; a network failure raises :class:`~veil.client.errors.TransportError`,
whose message names the server but never a credential; a 2xx answer that does not match its
schema raises :class:`~veil.client.errors.ProtocolError`.
"""

from __future__ import annotations

from typing import Final, TypeVar
from urllib.parse import quote

import httpx
import msgspec

from veil.client.closing import AsyncClosing
from veil.client.credentials import Credentials
from veil.client.errors import ProtocolError, ServerError, TooLargeError, TransportError
from veil.wire.accounts import AccountInfo, DeviceList, RegisterRequest, RegisterResponse
from veil.wire.attachments import AttachmentCreated
from veil.wire.calls import TurnCredentials
from veil.wire.keys import BundleResponse, KeyCounts, KeyUpload
from veil.wire.messages import SendRequest, SendResponse
from veil.wire.provisioning import (
    LinkRequest,
    LinkResponse,
    ProvisioningCode,
    ProvisioningCreated,
    ProvisioningMessage,
)
from veil.wire.reports import ReportRequest, ReportResponse
from veil.wire.social import AccountList, Relationship

__all__ = ["Credentials", "HttpApi"]

T = TypeVar("T")
DEFAULT_TIMEOUT_S: Final = 30.0
MAX_WAIT_S: Final = 30
"""Longest mailbox long-poll the server accepts."""
_JSON: Final = {"content-type": "application/json"}
_encoder = msgspec.json.Encoder()


def _seg(value: str) -> str:
    """One path segment, percent-encoded (a ``/`` in it cannot reach another route)."""
    return quote(value, safe="")


def describe(exc: Exception) -> str:
    """A short, secret-free reason for a network failure (from its type, not its text)."""
    if isinstance(exc, httpx.TimeoutException | TimeoutError):
        return "timed out"
    seen: BaseException | None = exc
    while seen is not None:
        if isinstance(seen, ConnectionRefusedError):
            return "connection refused"
        if isinstance(seen, ConnectionResetError):
            return "connection reset"
        seen = seen.__cause__ or seen.__context__
    if isinstance(exc, httpx.ConnectError):
        return "cannot connect"
    if isinstance(exc, httpx.RemoteProtocolError | httpx.ReadError):
        return "connection closed by the server"
    return f"network error ({type(exc).__name__})"


class HttpApi(AsyncClosing):
    """The HTTP API of the server at ``base_url`` (an async context manager).

    ``credentials`` may be set later (after :meth:`register` or :meth:`link`).
    ``transport`` replaces the network (tests: ``httpx.ASGITransport``).
    """

    def __init__(
        self,
        base_url: str,
        credentials: Credentials | None = None,
        *,
        timeout_s: float = DEFAULT_TIMEOUT_S,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        self.base_url = base_url.rstrip("/")
        self.credentials = credentials
        self.timeout_s = timeout_s
        self._http = httpx.AsyncClient(
            base_url=self.base_url, timeout=timeout_s, transport=transport, follow_redirects=False
        )

    def __repr__(self) -> str:
        return f"HttpApi({self.base_url!r}, credentials={self.credentials!r})"

    async def close(self) -> None:
        """Close the connection pool (idempotent)."""
        await self._http.aclose()

    aclose = close

    # --- plumbing -------------------------------------------------------------------------

    def _auth(self) -> dict[str, str]:
        if self.credentials is None:
            raise ValueError("this call needs credentials (register or link first)")
        return {"authorization": self.credentials.authorization}

    async def _call(
        self,
        method: str,
        path: str,
        *,
        body: object = None,
        content: bytes | None = None,
        headers: dict[str, str] | None = None,
        params: dict[str, str] | None = None,
        timeout_s: float | None = None,
    ) -> httpx.Response:
        sent = dict(headers or {})
        if body is not None:
            content = _encoder.encode(body)
            sent.update(_JSON)
        try:
            response = await self._http.request(
                method,
                path,
                content=content,
                headers=sent,
                params=params,
                timeout=timeout_s if timeout_s is not None else self.timeout_s,
            )
        except httpx.HTTPError as exc:
            raise TransportError(self.base_url, describe(exc)) from None
        if not response.is_success:
            raise _server_error(response)
        return response

    @staticmethod
    def _decode(response: httpx.Response, kind: type[T]) -> T:
        try:
            return msgspec.json.decode(response.content, type=kind)
        except (msgspec.ValidationError, msgspec.DecodeError, UnicodeDecodeError) as exc:
            raise ProtocolError(f"invalid {kind.__name__} from the server: {exc}") from None

    # --- accounts and devices -------------------------------------------------------------

    async def register(self, request: RegisterRequest) -> RegisterResponse:
        """``POST /v1/accounts``: a new account and its primary device (unauthenticated).

        Does not set :attr:`credentials`: ``api.credentials = Credentials.of(answer)``.
        """
        response = await self._call("POST", "/v1/accounts", body=request)
        return self._decode(response, RegisterResponse)

    async def lookup(self, username: str) -> AccountInfo:
        """``GET /v1/accounts/by-username/{username}`` (case-insensitive)."""
        response = await self._call(
            "GET", f"/v1/accounts/by-username/{_seg(username)}", headers=self._auth()
        )
        return self._decode(response, AccountInfo)

    async def account(self, account_id: str) -> AccountInfo:
        """``GET /v1/accounts/{account_id}``."""
        response = await self._call("GET", f"/v1/accounts/{_seg(account_id)}", headers=self._auth())
        return self._decode(response, AccountInfo)

    async def delete_account(self) -> None:
        """``DELETE /v1/accounts/me``: the whole account, every device."""
        await self._call("DELETE", "/v1/accounts/me", headers=self._auth())

    async def devices(self) -> DeviceList:
        """``GET /v1/devices``: the caller's account's devices."""
        return self._decode(
            await self._call("GET", "/v1/devices", headers=self._auth()), DeviceList
        )

    async def remove_device(self, device_id: int) -> None:
        """``DELETE /v1/devices/{device_id}``."""
        await self._call("DELETE", f"/v1/devices/{int(device_id)}", headers=self._auth())

    # --- keys -----------------------------------------------------------------------------

    async def upload_keys(self, upload: KeyUpload) -> KeyCounts:
        """``PUT /v1/keys``: prekeys of the calling device; answers the counts left."""
        response = await self._call("PUT", "/v1/keys", body=upload, headers=self._auth())
        return self._decode(response, KeyCounts)

    async def key_status(self) -> KeyCounts:
        """``GET /v1/keys/status``."""
        return self._decode(
            await self._call("GET", "/v1/keys/status", headers=self._auth()), KeyCounts
        )

    async def bundles(self, account_id: str, device_id: int | None = None) -> BundleResponse:
        """``GET /v1/keys/{account_id}[/{device_id}]``: prekey bundles (consumes one-time keys)."""
        path = f"/v1/keys/{_seg(account_id)}"
        if device_id is not None:
            path += f"/{int(device_id)}"
        return self._decode(await self._call("GET", path, headers=self._auth()), BundleResponse)

    # --- messages -------------------------------------------------------------------------

    async def send(self, recipient: str, request: SendRequest) -> SendResponse:
        """``PUT /v1/messages/{recipient}``: stored durably when this returns.

        A stale device list is a :class:`ServerError` 409 ``device_mismatch`` whose
        ``details["mismatches"]`` list, per account, the ``missing``, ``extra`` and ``stale``
        devices.
        """
        response = await self._call(
            "PUT", f"/v1/messages/{_seg(recipient)}", body=request, headers=self._auth()
        )
        return self._decode(response, SendResponse)

    # --- follows, requests, blocks, reports (wire/social.py, wire/reports.py) --------------

    async def relation(self, method: str, kind: str, account_id: str) -> None:
        """``PUT`` or ``DELETE /v1/{follows|chats|blocks}/{account_id}``."""
        if kind not in ("follows", "chats", "blocks") or method not in ("PUT", "DELETE"):
            raise ValueError(f"no such relation call: {method} {kind}")
        await self._call(method, f"/v1/{kind}/{_seg(account_id)}", headers=self._auth())

    async def account_list(self, kind: str) -> AccountList:
        """``GET /v1/{follows|followers|blocks}``."""
        if kind not in ("follows", "followers", "blocks"):
            raise ValueError(f"no such list: {kind}")
        return self._decode(
            await self._call("GET", f"/v1/{kind}", headers=self._auth()), AccountList
        )

    async def relationship(self, account_id: str) -> Relationship:
        """``GET /v1/relationship/{account_id}``."""
        response = await self._call(
            "GET", f"/v1/relationship/{_seg(account_id)}", headers=self._auth()
        )
        return self._decode(response, Relationship)

    async def turn(self) -> TurnCredentials:
        """``GET /v1/calls/turn``: ICE servers and short-lived credentials for a call."""
        response = await self._call("GET", "/v1/calls/turn", headers=self._auth())
        return self._decode(response, TurnCredentials)

    async def report(self, request: ReportRequest) -> ReportResponse:
        """``POST /v1/reports``: 422 ``report_invalid`` if a message does not verify."""
        response = await self._call("POST", "/v1/reports", body=request, headers=self._auth())
        return self._decode(response, ReportResponse)

    # --- linking a device -----------------------------------------------------------------

    async def open_mailbox(self) -> ProvisioningCreated:
        """``POST /v1/provisioning`` (new device, unauthenticated): a mailbox and its token."""
        return self._decode(await self._call("POST", "/v1/provisioning"), ProvisioningCreated)

    async def wait_mailbox(
        self, provisioning_id: str, token: str, wait_s: int = MAX_WAIT_S
    ) -> bytes | None:
        """``GET /v1/provisioning/{id}?wait=S``: the message, or ``None`` if none came in
        ``wait_s`` seconds (0..30)."""
        if not 0 <= wait_s <= MAX_WAIT_S:
            raise ValueError(f"wait_s must be 0..{MAX_WAIT_S}")
        response = await self._call(
            "GET",
            f"/v1/provisioning/{_seg(provisioning_id)}",
            headers={"authorization": f"Bearer {token}"},
            params={"wait": str(wait_s)},
            timeout_s=self.timeout_s + wait_s,
        )
        if response.status_code == 204:
            return None
        return self._decode(response, ProvisioningMessage).message

    async def put_mailbox(self, provisioning_id: str, message: bytes) -> None:
        """``PUT /v1/provisioning/{id}``: the (encrypted) provisioning message."""
        await self._call(
            "PUT",
            f"/v1/provisioning/{_seg(provisioning_id)}",
            body=ProvisioningMessage(message),
            headers=self._auth(),
        )

    async def provisioning_code(self) -> ProvisioningCode:
        """``POST /v1/devices/provisioning-code``: a single-use linking code."""
        response = await self._call("POST", "/v1/devices/provisioning-code", headers=self._auth())
        return self._decode(response, ProvisioningCode)

    async def link(self, request: LinkRequest) -> LinkResponse:
        """``POST /v1/devices/link`` (new device, unauthenticated): its id and credential."""
        return self._decode(
            await self._call("POST", "/v1/devices/link", body=request), LinkResponse
        )

    # --- attachments ----------------------------------------------------------------------

    async def upload_attachment(self, data: bytes) -> AttachmentCreated:
        """``POST /v1/attachments``: store an (already encrypted) blob."""
        headers = self._auth() | {"content-type": "application/octet-stream"}
        response = await self._call("POST", "/v1/attachments", content=data, headers=headers)
        return self._decode(response, AttachmentCreated)

    async def download_attachment(self, attachment_id: str, max_bytes: int) -> bytes:
        """``GET /v1/attachments/{id}``, streamed; :class:`TooLargeError` beyond
        ``max_bytes`` (checked against the declared length first, then while reading)."""
        path = f"/v1/attachments/{_seg(attachment_id)}"
        try:
            async with self._http.stream("GET", path, headers=self._auth()) as response:
                if not response.is_success:
                    await response.aread()
                    raise _server_error(response)
                declared = response.headers.get("content-length")
                if (
                    declared
                    and declared.isascii()
                    and declared.isdigit()
                    and int(declared) > max_bytes
                ):
                    raise TooLargeError(max_bytes)
                chunks: list[bytes] = []
                size = 0
                async for chunk in response.aiter_bytes():
                    size += len(chunk)
                    if size > max_bytes:
                        raise TooLargeError(max_bytes)
                    chunks.append(chunk)
        except httpx.HTTPError as exc:
            raise TransportError(self.base_url, describe(exc)) from None
        return b"".join(chunks)

    async def delete_attachment(self, attachment_id: str) -> None:
        """``DELETE /v1/attachments/{id}`` (the uploader's account only)."""
        await self._call("DELETE", f"/v1/attachments/{_seg(attachment_id)}", headers=self._auth())


def _server_error(response: httpx.Response) -> ServerError:
    return ServerError.from_body(
        response.status_code,
        response.content,
        response.reason_phrase,
        response.headers.get("retry-after"),
    )
