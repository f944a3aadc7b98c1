"""The key directory: prekey uploads, counts and bundles (PQXDH spec §3.2)."""

from __future__ import annotations

from typing import Annotated

import msgspec

from veil.wire.types import (
    DeviceId,
    EcPublicKey,
    KeyId,
    KyberPublicKey,
    RegistrationId,
    Signature,
)

MAX_KEYS_PER_UPLOAD = 200


class SignedPreKeyIn(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """A signed EC prekey: XEdDSA(identity key, public_key) in ``signature``."""

    key_id: KeyId
    public_key: EcPublicKey
    signature: Signature


class KyberPreKeyIn(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """A signed Kyber1024 prekey: XEdDSA(identity key, public_key) in ``signature``."""

    key_id: KeyId
    public_key: KyberPublicKey
    signature: Signature


class OneTimePreKeyIn(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """An unsigned one-time EC prekey."""

    key_id: KeyId
    public_key: EcPublicKey


class KeyUpload(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """Keys for the calling device; every part optional, signatures checked by the server."""

    signed_prekey: SignedPreKeyIn | None = None
    last_resort_kyber: KyberPreKeyIn | None = None
    one_time_prekeys: Annotated[
        list[OneTimePreKeyIn], msgspec.Meta(max_length=MAX_KEYS_PER_UPLOAD)
    ] = msgspec.field(default_factory=list)
    kyber_prekeys: Annotated[list[KyberPreKeyIn], msgspec.Meta(max_length=MAX_KEYS_PER_UPLOAD)] = (
        msgspec.field(default_factory=list)
    )


class KeyCounts(msgspec.Struct, frozen=True):
    """Unused one-time keys the server still holds for the calling device."""

    one_time_prekeys: int
    kyber_prekeys: int
    low: bool


class DeviceBundleOut(msgspec.Struct, frozen=True):
    """A bundle for one device of a user; one-time keys served here are gone from the server."""

    device_id: DeviceId
    registration_id: RegistrationId
    signed_prekey: SignedPreKeyIn
    kyber_prekey: KyberPreKeyIn
    kyber_last_resort: bool
    one_time_prekey: OneTimePreKeyIn | None


class BundleResponse(msgspec.Struct, frozen=True):
    """Bundles for the requested device(s) of one account, with its identity key."""

    identity_key: EcPublicKey
    devices: list[DeviceBundleOut]
