"""Linking a new device: the provisioning mailbox, linking codes, and the link itself.

The flow is Signal's device provisioning (see :mod:`veil.wire.provisioning`): the server only
relays one opaque message from an existing device to a new one and checks a single-use code;
it never sees the account's keys. Secrets (the mailbox token, the linking code, the new
device's credential) are random, shown once, and stored only as SHA-256 hashes with a domain
prefix (256-bit and 128-bit secrets need no password stretching).

Waiting (``GET ...?wait=S``) polls the database every :data:`POLL_S` seconds, so a message put
through another server process sharing the database is found; a put through this process
wakes the waiter at once.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import hmac
import re
import secrets
from collections.abc import Callable, Iterator
from typing import Final

from veil.server import errors
from veil.server.accounts import Caller
from veil.server.credentials import hash_credential, new_credential
from veil.server.model import NewDevice, Provisioning
from veil.server.repository import NotFoundError, Repository, TooManyDevicesError
from veil.wire.provisioning import (
    MAX_PROVISIONING_MESSAGE,
    PROVISIONING_ID_PATTERN,
    LinkRequest,
    LinkResponse,
    ProvisioningCode,
    ProvisioningCreated,
    ProvisioningMessage,
)

MAILBOX_TTL_MS: Final = 10 * 60 * 1000
"""A provisioning mailbox lives 10 minutes."""
CODE_TTL_MS: Final = 10 * 60 * 1000
"""A linking code is valid for 10 minutes (and once)."""
MAX_WAIT_S: Final = 30
"""Longest long-poll of ``GET /v1/provisioning/{id}``."""
POLL_S: Final = 0.25
"""How often a waiting request re-reads the mailbox."""

_ID: Final = re.compile(PROVISIONING_ID_PATTERN)


def _hash(domain: bytes, secret: str) -> bytes:
    return hashlib.sha256(domain + secret.encode()).digest()


def hash_token(token: str) -> bytes:
    """What the server stores for a mailbox token."""
    return _hash(b"veil provisioning token v1\x00", token)


def hash_code(code: str) -> bytes:
    """What the server stores (and looks up) for a linking code."""
    return _hash(b"veil linking code v1\x00", code)


class _Wakeups:
    """In-process wake-ups of the requests waiting on a mailbox."""

    def __init__(self) -> None:
        self._events: dict[str, tuple[asyncio.Event, int]] = {}

    @contextlib.contextmanager
    def watch(self, key: str) -> Iterator[asyncio.Event]:
        event, count = self._events.get(key, (asyncio.Event(), 0))
        self._events[key] = (event, count + 1)
        try:
            yield event
        finally:
            event, count = self._events[key]
            if count == 1:
                del self._events[key]
            else:
                self._events[key] = (event, count - 1)

    def wake(self, key: str) -> None:
        entry = self._events.get(key)
        if entry is not None:
            entry[0].set()


class ProvisioningService:
    """Mailboxes, codes and linking over a :class:`Repository`."""

    def __init__(self, repo: Repository, now_ms: Callable[[], int]) -> None:
        self.repo = repo
        self.now_ms = now_ms
        self._wakeups = _Wakeups()

    async def create(self) -> ProvisioningCreated:
        """Open a mailbox for a new device."""
        provisioning_id, token = secrets.token_hex(16), secrets.token_urlsafe(32)
        now = self.now_ms()
        expires = now + MAILBOX_TTL_MS
        await self.repo.create_provisioning(provisioning_id, hash_token(token), now, expires)
        return ProvisioningCreated(provisioning_id, token, expires)

    async def put(self, caller: Caller, provisioning_id: str, body: ProvisioningMessage) -> None:
        """Store the existing device's message (404 no live mailbox, 409 already one)."""
        if len(body.message) > MAX_PROVISIONING_MESSAGE:
            raise errors.ApiError(
                413,
                "too_large",
                f"a provisioning message is at most {MAX_PROVISIONING_MESSAGE} bytes",
            )
        if _ID.fullmatch(provisioning_id) is None:
            raise errors.not_found("provisioning")
        outcome = await self.repo.put_provisioning_message(
            provisioning_id, body.message, self.now_ms()
        )
        if outcome == "missing":
            raise errors.not_found("provisioning")
        if outcome == "occupied":
            raise errors.conflict("message_present", "the mailbox already holds a message")
        self._wakeups.wake(provisioning_id)

    async def receive(
        self, provisioning_id: str, authorization: str | None, wait_s: int
    ) -> ProvisioningMessage | None:
        """The message, once (it is deleted); None if none came within ``wait_s`` seconds."""
        if _ID.fullmatch(provisioning_id) is None:
            raise errors.not_found("provisioning")
        if not authorization or not authorization.startswith("Bearer "):
            raise errors.unauthorized()
        token_hash = hash_token(authorization[7:])
        box = await self._live(provisioning_id)
        if not hmac.compare_digest(token_hash, box.token_hash):
            raise errors.unauthorized()
        deadline = asyncio.get_running_loop().time() + min(max(wait_s, 0), MAX_WAIT_S)
        with self._wakeups.watch(provisioning_id) as woken:
            while not box.has_message:
                remaining = deadline - asyncio.get_running_loop().time()
                if remaining <= 0:
                    return None
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(woken.wait(), min(POLL_S, remaining))
                woken.clear()
                box = await self._live(provisioning_id)
        message = await self.repo.take_provisioning_message(provisioning_id, self.now_ms())
        if message is None:  # delivered to a concurrent request, or expired just now
            raise errors.not_found("provisioning")
        return ProvisioningMessage(message)

    async def _live(self, provisioning_id: str) -> Provisioning:
        box = await self.repo.get_provisioning(provisioning_id)
        if box is None:
            raise errors.not_found("provisioning")
        if box.expires_ms <= self.now_ms():
            await self.repo.delete_provisioning(provisioning_id)  # clean up on access
            raise errors.not_found("provisioning")
        return box

    async def new_code(self, caller: Caller) -> ProvisioningCode:
        """A single-use linking code for the caller's account."""
        code = secrets.token_urlsafe(16)
        now = self.now_ms()
        expires = now + CODE_TTL_MS
        try:
            await self.repo.add_provisioning_code(hash_code(code), caller.account_id, now, expires)
        except NotFoundError:  # the account was deleted meanwhile
            raise errors.unauthorized() from None
        return ProvisioningCode(code, expires)

    async def link(self, req: LinkRequest) -> LinkResponse:
        """Consume the code and register the new device (403 ``invalid_code`` otherwise)."""
        credential = new_credential()
        device = NewDevice(req.registration_id, hash_credential(credential), req.device_name)
        try:
            linked = await self.repo.link_device(
                req.account_id, hash_code(req.code), device, self.now_ms()
            )
        except TooManyDevicesError:
            raise errors.conflict(
                "too_many_devices", "the account has the most devices it can have"
            ) from None
        except NotFoundError:  # the account went away while the code was consumed
            linked = None
        if linked is None:  # same answer whether or not the account exists
            raise errors.ApiError(
                403, "invalid_code", "the linking code is wrong, expired or already used"
            )
        return LinkResponse(linked.account_id, linked.device_id, credential)
