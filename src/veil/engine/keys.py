"""Our keys: the account identity, and batches of prekeys for the server's directory.

PQXDH rev. 3 §3.2 (the bundle a device publishes): a signed prekey, one-time EC prekeys,
one-time Kyber prekeys and a last-resort Kyber prekey, every prekey signed by the identity key
(XEdDSA). Private halves go to the store; the public halves (a :class:`KeyBatch`) go to the
server. :class:`StorePreKeys` gives the core our private prekeys back by id.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Final

from veil.core.crypto import xeddsa
from veil.core.crypto.kyber import KyberKeyPair, KyberPublicKey
from veil.core.crypto.x25519 import PrivateKey, PublicKey
from veil.core.rng import Rng
from veil.core.signal.pqxdh import PreKeyBundle
from veil.store import DeviceStore

ONE_TIME_BATCH: Final = 100
"""One-time prekeys of each kind uploaded at a time (Signal uploads 100)."""
MAX_KEY_ID: Final = (1 << 24) - 1


@dataclass(frozen=True, slots=True)
class PublicSignedPreKey:
    """A signed EC prekey as the server stores it."""

    key_id: int
    public_key: bytes
    signature: bytes


@dataclass(frozen=True, slots=True)
class PublicKyberPreKey:
    """A signed Kyber prekey as the server stores it."""

    key_id: int
    public_key: bytes
    signature: bytes


@dataclass(frozen=True, slots=True)
class KeyBatch:
    """Public halves to upload (``PUT /v1/keys``); empty parts are left as they are."""

    signed_prekey: PublicSignedPreKey | None = None
    last_resort_kyber: PublicKyberPreKey | None = None
    kyber_prekeys: list[PublicKyberPreKey] = field(default_factory=list)
    one_time_prekeys: list[tuple[int, bytes]] = field(default_factory=list)


def new_identity(rng: Rng) -> tuple[PrivateKey, int]:
    """A new account identity key and a registration id (14 bits, never 0, as Signal)."""
    return PrivateKey.generate(rng), new_registration_id(rng)


def new_registration_id(rng: Rng) -> int:
    """A registration id for a device (14 bits, never 0, as Signal)."""
    return 1 + int.from_bytes(rng(2), "big") % 16380


def _next_id(store: DeviceStore, kind: str) -> int:
    return (store.next_key_id(kind) - 1) % MAX_KEY_ID + 1


def _kyber(
    store: DeviceStore, identity: PrivateKey, rng: Rng, now_ms: int, *, last_resort: bool
) -> PublicKyberPreKey:
    pair = KyberKeyPair.generate(rng)
    key_id = _next_id(store, "kyber")
    public = pair.public_key.serialize()
    store.add_kyber_prekey(key_id, pair.seed_bytes(), last_resort=last_resort, created_ms=now_ms)
    return PublicKyberPreKey(key_id, public, xeddsa.sign(identity, public, rng))


def signed_prekey(
    store: DeviceStore, identity: PrivateKey, rng: Rng, now_ms: int
) -> PublicSignedPreKey:
    """A new signed prekey (stored); the caller uploads it."""
    private = PrivateKey.generate(rng)
    key_id = _next_id(store, "signed")
    store.add_signed_prekey(key_id, private.secret_bytes(), now_ms)
    public = private.public_key.serialize()
    return PublicSignedPreKey(key_id, public, xeddsa.sign(identity, public, rng))


def one_time_prekeys(
    store: DeviceStore, identity: PrivateKey, rng: Rng, now_ms: int, count: int = ONE_TIME_BATCH
) -> KeyBatch:
    """``count`` new one-time EC and Kyber prekeys (stored); the caller uploads them."""
    ec: list[tuple[int, bytes]] = []
    private: list[tuple[int, bytes]] = []
    for _ in range(count):
        key = PrivateKey.generate(rng)
        key_id = _next_id(store, "one_time")
        private.append((key_id, key.secret_bytes()))
        ec.append((key_id, key.public_key.serialize()))
    store.add_one_time_prekeys(private)
    kyber = [_kyber(store, identity, rng, now_ms, last_resort=False) for _ in range(count)]
    return KeyBatch(kyber_prekeys=kyber, one_time_prekeys=ec)


def new_account_keys(
    store: DeviceStore, identity: PrivateKey, rng: Rng, now_ms: int, count: int = ONE_TIME_BATCH
) -> KeyBatch:
    """Everything a new device publishes: signed prekey, last-resort Kyber key, one-time keys
    of both kinds. Call inside a store transaction."""
    batch = one_time_prekeys(store, identity, rng, now_ms, count)
    return KeyBatch(
        signed_prekey=signed_prekey(store, identity, rng, now_ms),
        last_resort_kyber=_kyber(store, identity, rng, now_ms, last_resort=True),
        kyber_prekeys=batch.kyber_prekeys,
        one_time_prekeys=batch.one_time_prekeys,
    )


class StorePreKeys:
    """:class:`veil.core.signal.session.PreKeySource` over the store."""

    def __init__(self, store: DeviceStore) -> None:
        self.store = store

    def signed_prekey(self, key_id: int) -> PrivateKey | None:
        secret = self.store.signed_prekey(key_id)
        return None if secret is None else PrivateKey(secret)

    def kyber_prekey(self, key_id: int) -> KyberKeyPair | None:
        seed = self.store.kyber_prekey(key_id)
        return None if seed is None else KyberKeyPair(seed)

    def one_time_prekey(self, key_id: int) -> PrivateKey | None:
        secret = self.store.one_time_prekey(key_id)
        return None if secret is None else PrivateKey(secret)


def bundle(
    identity_key: bytes,
    device_id: int,
    registration_id: int,
    signed: tuple[int, bytes, bytes],
    kyber: tuple[int, bytes, bytes],
    one_time: tuple[int, bytes] | None,
) -> PreKeyBundle:
    """A peer device's bundle from the server's fields (``(id, public key, signature)`` for
    the signed ones). Keys are parsed here (:class:`DecodeError` if malformed); signatures are
    checked when a session starts from it."""
    return PreKeyBundle(
        registration_id=registration_id,
        device_id=device_id,
        identity_key=PublicKey.deserialize(identity_key),
        signed_prekey_id=signed[0],
        signed_prekey=PublicKey.deserialize(signed[1]),
        signed_prekey_signature=signed[2],
        kyber_prekey_id=kyber[0],
        kyber_prekey=KyberPublicKey.deserialize(kyber[1]),
        kyber_prekey_signature=kyber[2],
        prekey_id=None if one_time is None else one_time[0],
        prekey=None if one_time is None else PublicKey.deserialize(one_time[1]),
    )
