"""The key directory: uploads (signatures checked), counts, bundle fetches (rate limited
per requesting device, by a limiter the server processes share).

Signatures are XEdDSA by the account's identity key over the serialized public key (type byte
included), checked with :mod:`veil.core.crypto` -- the only core code the server may use
(ARCHITECTURE.md §2 rule 3).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Final

from veil.core.crypto import xeddsa
from veil.core.crypto.kyber import KyberPublicKey
from veil.core.crypto.x25519 import PublicKey
from veil.core.errors import VeilError
from veil.server import errors
from veil.server.accounts import Caller, check_ec_key, require_account_id
from veil.server.model import DeviceBundle, KyberPreKey, OneTimePreKey, SignedPreKey
from veil.server.ratelimit import BUNDLES_PER_DEVICE, Limiter
from veil.server.repository import NotFoundError, Repository
from veil.wire.keys import (
    BundleResponse,
    DeviceBundleOut,
    KeyCounts,
    KeyUpload,
    KyberPreKeyIn,
    OneTimePreKeyIn,
    SignedPreKeyIn,
)

LOW_WATERMARK: Final = 10
"""Below this many one-time keys of either kind, a device is told to upload more."""


def _check_kyber(key: KyberPreKeyIn, identity: PublicKey) -> KyberPreKey:
    try:
        KyberPublicKey.deserialize(key.public_key)
    except VeilError:
        raise errors.bad_request(f"Kyber prekey {key.key_id} is not a Kyber1024 key") from None
    if not xeddsa.verify(identity, key.public_key, key.signature):
        raise errors.bad_request(f"Kyber prekey {key.key_id} has a bad signature")
    return KyberPreKey(key.key_id, key.public_key, key.signature)


def _check_signed(key: SignedPreKeyIn, identity: PublicKey) -> SignedPreKey:
    check_ec_key(key.public_key, "signed prekey")
    if not xeddsa.verify(identity, key.public_key, key.signature):
        raise errors.bad_request(f"signed prekey {key.key_id} has a bad signature")
    return SignedPreKey(key.key_id, key.public_key, key.signature)


class KeyService:
    """Uploads, counts and bundles on a :class:`Repository`."""

    def __init__(self, repo: Repository, bundle_limiter: Limiter) -> None:
        self.repo = repo
        self.bundle_limiter = bundle_limiter
        self.on_low: Callable[[list[tuple[str, int]]], None] | None = None
        """Told which devices a bundle fetch left below :data:`LOW_WATERMARK` one-time keys
        (the app wires it to the notifier, which pushes "prekeys low" to them)."""

    async def upload(self, caller: Caller, upload: KeyUpload) -> KeyCounts:
        """Check every key (all or nothing), then store them."""
        account = await self.repo.get_account(caller.account_id)
        if account is None:
            raise errors.unauthorized()
        identity = PublicKey.deserialize(account.identity_key)
        signed = _check_signed(upload.signed_prekey, identity) if upload.signed_prekey else None
        last_resort = (
            _check_kyber(upload.last_resort_kyber, identity) if upload.last_resort_kyber else None
        )
        kyber = [_check_kyber(k, identity) for k in upload.kyber_prekeys]
        one_time = [_one_time(k) for k in upload.one_time_prekeys]
        for what, ids in (("one-time", one_time), ("Kyber", kyber)):
            if len({k.key_id for k in ids}) != len(ids):
                raise errors.bad_request(f"duplicate {what} prekey ids in one upload")
        try:
            if signed:
                await self.repo.set_signed_prekey(caller.account_id, caller.device_id, signed)
            if last_resort:
                await self.repo.set_last_resort_kyber(
                    caller.account_id, caller.device_id, last_resort
                )
            if one_time:
                await self.repo.add_one_time_prekeys(caller.account_id, caller.device_id, one_time)
            if kyber:
                await self.repo.add_kyber_prekeys(caller.account_id, caller.device_id, kyber)
        except NotFoundError:
            raise errors.unauthorized() from None
        return await self.counts(caller)

    async def counts(self, caller: Caller) -> KeyCounts:
        """Unused one-time keys, and whether the device should upload more."""
        c = await self.repo.prekey_counts(caller.account_id, caller.device_id)
        low = min(c.one_time_ec, c.one_time_kyber) < LOW_WATERMARK
        return KeyCounts(c.one_time_ec, c.one_time_kyber, low)

    async def bundles(
        self, caller: Caller, account_id: str, device_id: int | None
    ) -> BundleResponse:
        """Bundles for one device, or all devices, of an account (consuming one-time keys)."""
        requester = f"{caller.account_id}.{caller.device_id}"
        wait = await self.bundle_limiter.take(BUNDLES_PER_DEVICE, requester)
        if wait:
            raise errors.rate_limited(round(wait, 3))
        account = await self.repo.get_account(require_account_id(account_id))
        if account is None:
            raise errors.not_found("account")
        if device_id is None:
            ids = [d.device_id for d in await self.repo.list_devices(account_id)]
            ids = [i for i in ids if (account_id, i) != (caller.account_id, caller.device_id)]
        else:
            ids = [device_id]
        out = []
        for i in ids:
            bundle = await self.repo.take_bundle(account_id, i)
            if bundle is not None:
                out.append(_bundle_out(bundle))
        await self._tell_if_low(account_id, [b.device_id for b in out])
        if device_id is not None and not out:
            raise errors.not_found("device or its keys")
        return BundleResponse(account.identity_key, out)

    async def _tell_if_low(self, account_id: str, device_ids: list[int]) -> None:
        if self.on_low is None or not device_ids:
            return
        low = []
        for device_id in device_ids:
            c = await self.repo.prekey_counts(account_id, device_id)
            if min(c.one_time_ec, c.one_time_kyber) < LOW_WATERMARK:
                low.append((account_id, device_id))
        if low:
            self.on_low(low)


def _one_time(key: OneTimePreKeyIn) -> OneTimePreKey:
    check_ec_key(key.public_key, f"one-time prekey {key.key_id}")
    return OneTimePreKey(key.key_id, key.public_key)


def _bundle_out(b: DeviceBundle) -> DeviceBundleOut:
    otk = b.one_time_prekey
    return DeviceBundleOut(
        device_id=b.device_id,
        registration_id=b.registration_id,
        signed_prekey=SignedPreKeyIn(
            b.signed_prekey.key_id, b.signed_prekey.public_key, b.signed_prekey.signature
        ),
        kyber_prekey=KyberPreKeyIn(
            b.kyber_prekey.key_id, b.kyber_prekey.public_key, b.kyber_prekey.signature
        ),
        kyber_last_resort=b.kyber_last_resort,
        one_time_prekey=OneTimePreKeyIn(otk.key_id, otk.public_key) if otk else None,
    )
