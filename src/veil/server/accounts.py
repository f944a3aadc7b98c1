"""Accounts and devices: registration, authentication, lookup, device list, removal."""

from __future__ import annotations

import base64
import binascii
import re
import time
import uuid
from collections.abc import Callable
from typing import Final

from veil.core.crypto.x25519 import PublicKey
from veil.core.errors import VeilError
from veil.server import errors
from veil.server.credentials import credential_matches, hash_credential, new_credential
from veil.server.model import PRIMARY_DEVICE_ID, Account, NewDevice
from veil.server.repository import Repository, UsernameTakenError
from veil.wire.accounts import (
    AccountInfo,
    DeviceInfo,
    DeviceList,
    RegisterRequest,
    RegisterResponse,
)
from veil.wire.types import ACCOUNT_ID_PATTERN, USERNAME_PATTERN

_ACCOUNT_ID = re.compile(ACCOUNT_ID_PATTERN)
_USERNAME = re.compile(USERNAME_PATTERN)


def is_account_id(text: str) -> bool:
    """32 lowercase hex digits: the only shape an account id has (checked before any query)."""
    return _ACCOUNT_ID.fullmatch(text) is not None


def require_account_id(text: str) -> str:
    """``text`` if it is an account id, else a 404 (no such account can exist)."""
    if not is_account_id(text):
        raise errors.not_found("account")
    return text


def canonical_username(username: str) -> str:
    """The form uniqueness is checked on (usernames are ASCII by schema, so lower() suffices)."""
    return username.lower()


def check_ec_key(data: bytes, what: str) -> PublicKey:
    """A canonical ``0x05 || u`` public key (u < p, prime-order subgroup), or a 400."""
    try:
        key = PublicKey.deserialize(data)
    except VeilError:
        raise errors.bad_request(f"{what} is not a type-5 public key") from None
    if not key.is_canonical():
        raise errors.bad_request(f"{what} is not a canonical X25519 public key")
    return key


class Caller:
    """An authenticated (account, device)."""

    __slots__ = ("account_id", "device_id")

    def __init__(self, account_id: str, device_id: int) -> None:
        self.account_id = account_id
        self.device_id = device_id

    def __repr__(self) -> str:
        return f"Caller({self.account_id}.{self.device_id})"


AUTH_CACHE_TTL_S: Final = 15.0
"""How long a device's stored credential hash is reused without reading the database."""
AUTH_CACHE_MAX: Final = 100_000
"""Entries kept at most (the whole cache is dropped when it would grow past this)."""


class AuthCache:
    """Stored credential hashes of recently authenticated devices, per process.

    Authentication runs on every request; reading the device row each time costs a database
    round trip per send. The cache keeps ``(account_id, device_id) -> credential hash`` for
    ``ttl_s`` seconds (monotonic clock). Only the *stored hash* is cached: every request still
    presents its credential and has it checked (hash + constant-time compare), and a failed
    check is never cached.

    Invalidation: :meth:`AccountService.remove_device` and :meth:`AccountService.delete`
    drop the entries in THIS process before returning. With several server processes, another
    process may still accept a removed device's (or deleted account's) credential for up to
    ``ttl_s`` seconds, hence the short TTL. Sends are unaffected by that window: storing a
    message re-checks inside its transaction that the sending device exists.
    """

    def __init__(
        self,
        ttl_s: float = AUTH_CACHE_TTL_S,
        clock: Callable[[], float] = time.monotonic,
        max_entries: int = AUTH_CACHE_MAX,
    ) -> None:
        self.ttl_s = ttl_s
        self.clock = clock
        self.max_entries = max_entries
        self._entries: dict[tuple[str, int], tuple[bytes, float]] = {}
        self.generation = 0
        """Bumped by every ``forget_*``: a read that started before one is not cached."""

    def get(self, account_id: str, device_id: int) -> bytes | None:
        """The cached hash, if fresh."""
        entry = self._entries.get((account_id, device_id))
        if entry is None:
            return None
        if entry[1] <= self.clock():
            del self._entries[account_id, device_id]
            return None
        return entry[0]

    def put(self, account_id: str, device_id: int, credential_hash: bytes, generation: int) -> None:
        """Remember a hash read from the database by a read started at ``generation``.

        Nothing is cached if a removal was seen since (the read may predate it).
        """
        if self.ttl_s <= 0 or generation != self.generation:
            return
        if len(self._entries) >= self.max_entries:
            self._entries.clear()
        self._entries[account_id, device_id] = (credential_hash, self.clock() + self.ttl_s)

    def forget_device(self, account_id: str, device_id: int) -> None:
        """Drop one device's entry."""
        self.generation += 1
        self._entries.pop((account_id, device_id), None)

    def forget_account(self, account_id: str) -> None:
        """Drop the entries of every device of the account."""
        self.generation += 1
        for key in [k for k in self._entries if k[0] == account_id]:
            del self._entries[key]

    def __len__(self) -> int:
        return len(self._entries)


class AccountService:
    """Account and device operations on a :class:`Repository`."""

    def __init__(
        self,
        repo: Repository,
        now_ms: Callable[[], int],
        auth_cache: AuthCache | None = None,
    ) -> None:
        self.repo = repo
        self.now_ms = now_ms
        self.auth_cache = AuthCache() if auth_cache is None else auth_cache

    async def register(self, req: RegisterRequest) -> RegisterResponse:
        """Create an account and its primary device; 409 ``username_taken`` on a clash."""
        check_ec_key(req.identity_key, "identity_key")
        credential = new_credential()
        device = NewDevice(req.registration_id, hash_credential(credential), req.device_name)
        try:
            account = await self.repo.create_account(
                uuid.uuid4().hex,
                canonical_username(req.username),
                req.username,
                req.identity_key,
                device,
                self.now_ms(),
            )
        except UsernameTakenError:
            raise errors.conflict("username_taken", "that username is taken") from None
        return RegisterResponse(account.account_id, PRIMARY_DEVICE_ID, credential)

    async def authenticate(self, authorization: str | None) -> Caller:
        """Check ``Basic base64(<account_id>.<device_id>:<credential>)``; 401 otherwise."""
        if not authorization or not authorization.startswith("Basic "):
            raise errors.unauthorized()
        try:
            decoded = base64.b64decode(authorization[6:], validate=True).decode()
            user, credential = decoded.split(":", 1)
            account_id, device_text = user.rsplit(".", 1)
            device_id = int(device_text)
        except (ValueError, binascii.Error, UnicodeDecodeError):
            raise errors.unauthorized() from None
        if not 1 <= device_id <= 127 or not is_account_id(account_id):
            raise errors.unauthorized()
        stored = self.auth_cache.get(account_id, device_id)
        if stored is None:
            generation = self.auth_cache.generation
            device = await self.repo.get_device(account_id, device_id)
            if device is None:
                raise errors.unauthorized()
            stored = device.credential_hash
            if credential_matches(credential, stored):
                self.auth_cache.put(account_id, device_id, stored, generation)
                return Caller(account_id, device_id)
            raise errors.unauthorized()
        if not credential_matches(credential, stored):
            raise errors.unauthorized()
        return Caller(account_id, device_id)

    async def lookup(self, username: str, viewer: str | None = None) -> AccountInfo:
        """Public facts about the account with this username; 404 if none, or if it blocks
        ``viewer`` (the same answer)."""
        if _USERNAME.fullmatch(username) is None:  # ASCII only: no homoglyph can match
            raise errors.not_found("account")
        account = await self.repo.find_account(canonical_username(username))
        return await self._visible(account, viewer)

    async def get(self, account_id: str, viewer: str | None = None) -> AccountInfo:
        """Public facts about an account by id; 404 if none, or if it blocks ``viewer``."""
        account = await self.repo.get_account(require_account_id(account_id))
        return await self._visible(account, viewer)

    async def _visible(self, account: Account | None, viewer: str | None) -> AccountInfo:
        if account is None:
            raise errors.not_found("account")
        hidden = viewer is not None and viewer != account.account_id
        if hidden and await self.repo.is_blocked(account.account_id, str(viewer)):
            raise errors.not_found("account")
        return _info(account)

    async def delete(self, caller: Caller) -> None:
        """Delete the caller's account (only its primary device may)."""
        if caller.device_id != PRIMARY_DEVICE_ID:
            raise errors.forbidden("only the primary device can delete the account")
        self.auth_cache.forget_account(caller.account_id)
        try:
            await self.repo.delete_account(caller.account_id)
        finally:  # a request that read the rows meanwhile may have cached them again
            self.auth_cache.forget_account(caller.account_id)

    async def devices(self, caller: Caller) -> DeviceList:
        """The caller's account's devices."""
        devices = await self.repo.list_devices(caller.account_id)
        return DeviceList(
            [DeviceInfo(d.device_id, d.registration_id, d.name, d.created_ms) for d in devices]
        )

    async def remove_device(self, caller: Caller, device_id: int) -> None:
        """Remove a linked device: the primary may remove any, a linked device itself."""
        if device_id == PRIMARY_DEVICE_ID:
            raise errors.forbidden("the primary device cannot be removed; delete the account")
        if caller.device_id not in (PRIMARY_DEVICE_ID, device_id):
            raise errors.forbidden("only the primary device can remove another device")
        self.auth_cache.forget_device(caller.account_id, device_id)
        try:
            removed = await self.repo.remove_device(caller.account_id, device_id)
        finally:  # a request that read the row meanwhile may have cached it again
            self.auth_cache.forget_device(caller.account_id, device_id)
        if not removed:
            raise errors.not_found("device")


def _info(account: Account) -> AccountInfo:
    return AccountInfo(account.account_id, account.display_username, account.identity_key)
