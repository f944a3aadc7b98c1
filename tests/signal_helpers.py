"""Two Signal parties for tests: seeded keys, a prekey store, signed bundles, a session record.

Everything but Kyber encapsulation (which pyca draws from OpenSSL) is reproducible from the
seed. A :class:`Party` owns its :class:`SessionRecord` with one peer, so ``alice.record`` is
Alice's session with Bob and ``bob.record`` Bob's session with Alice.

Typical use::

    alice, bob = make_pair("some test")
    alice.initiate(bob.bundle())
    bob.decrypt(alice.encrypt(b"hi"))        # PreKey message; Bob's one-time prekey is retired
    alice.decrypt(bob.encrypt(b"hello"))     # Alice's session is now acknowledged
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field

from veil.core.crypto import xeddsa
from veil.core.crypto.kyber import KyberKeyPair
from veil.core.crypto.x25519 import PrivateKey, PublicKey
from veil.core.rng import Rng, seeded_rng
from veil.core.signal import session
from veil.core.signal.pqxdh import PreKeyBundle
from veil.core.signal.record import deserialize_record, serialize_record
from veil.core.signal.session import (
    CiphertextMessage,
    LocalIdentity,
    PreKeyDecryptResult,
    TrustPolicy,
)
from veil.core.signal.state import SessionRecord
from veil.core.signal.wire import PREKEY_TYPE, WHISPER_TYPE

SIGNED_PREKEY_ID = 7
KYBER_PREKEY_ID = 11
ONE_TIME_PREKEY_ID = 31
T0_MS = 1_700_000_000_000
"""A fixed 'now' for tests (2023-11-14); time is a parameter of the core."""


def trust_all(_key: PublicKey) -> bool:
    """A trust policy that trusts every identity key."""
    return True


def trust_none(_key: PublicKey) -> bool:
    """A trust policy that trusts no identity key."""
    return False


@dataclass
class MemoryPreKeys:
    """A :class:`~veil.core.signal.session.PreKeySource` in memory that logs every lookup."""

    signed: dict[int, PrivateKey] = field(default_factory=dict)
    kyber: dict[int, KyberKeyPair] = field(default_factory=dict)
    one_time: dict[int, PrivateKey] = field(default_factory=dict)
    lookups: list[tuple[str, int]] = field(default_factory=list)

    def signed_prekey(self, key_id: int) -> PrivateKey | None:
        self.lookups.append(("signed", key_id))
        return self.signed.get(key_id)

    def kyber_prekey(self, key_id: int) -> KyberKeyPair | None:
        self.lookups.append(("kyber", key_id))
        return self.kyber.get(key_id)

    def one_time_prekey(self, key_id: int) -> PrivateKey | None:
        self.lookups.append(("one-time", key_id))
        return self.one_time.get(key_id)

    def retire(self, result: PreKeyDecryptResult) -> None:
        """Delete the one-time prekey a successful PreKey decrypt used (as an app must)."""
        if result.used_one_time_prekey_id is not None:
            del self.one_time[result.used_one_time_prekey_id]

    def copy(self) -> MemoryPreKeys:
        return MemoryPreKeys(dict(self.signed), dict(self.kyber), dict(self.one_time))


@dataclass
class Party:
    """One device: identity, prekeys, a seeded RNG and its session record with one peer."""

    name: str
    local: LocalIdentity
    prekeys: MemoryPreKeys
    rng: Rng
    record: SessionRecord = field(default_factory=SessionRecord)
    trust: TrustPolicy = trust_all
    last_prekey_result: PreKeyDecryptResult | None = None

    @property
    def identity(self) -> PrivateKey:
        return self.local.identity

    @property
    def public_identity(self) -> PublicKey:
        return self.local.identity.public_key

    def bundle(
        self,
        *,
        one_time: bool = True,
        signed_id: int = SIGNED_PREKEY_ID,
        kyber_id: int = KYBER_PREKEY_ID,
        one_time_id: int = ONE_TIME_PREKEY_ID,
    ) -> PreKeyBundle:
        """A server bundle for this device, both prekeys XEdDSA-signed by the identity key."""
        spk = self.prekeys.signed[signed_id].public_key
        kyber = self.prekeys.kyber[kyber_id].public_key
        otk = self.prekeys.one_time[one_time_id].public_key if one_time else None
        return PreKeyBundle(
            registration_id=self.local.registration_id,
            device_id=1,
            identity_key=self.public_identity,
            signed_prekey_id=signed_id,
            signed_prekey=spk,
            signed_prekey_signature=xeddsa.sign(self.identity, spk.serialize(), self.rng),
            kyber_prekey_id=kyber_id,
            kyber_prekey=kyber,
            kyber_prekey_signature=xeddsa.sign(self.identity, kyber.serialize(), self.rng),
            prekey_id=one_time_id if one_time else None,
            prekey=otk,
        )

    def initiate(self, bundle: PreKeyBundle, *, now_ms: int = T0_MS) -> None:
        session.initiate(
            self.record, bundle, self.local, rng=self.rng, now_ms=now_ms, trust=self.trust
        )

    def encrypt(self, plaintext: bytes, *, now_ms: int = T0_MS) -> CiphertextMessage:
        return session.encrypt(self.record, plaintext, now_ms=now_ms, trust=self.trust)

    def decrypt(self, message: CiphertextMessage) -> bytes:
        """Decrypt either type; after a PreKey message, retire the one-time prekey it used."""
        if message.type == WHISPER_TYPE:
            return session.decrypt_signal(
                self.record, message.serialized, rng=self.rng, trust=self.trust
            )
        assert message.type == PREKEY_TYPE
        result = session.decrypt_prekey(
            self.record,
            message.serialized,
            self.local,
            self.prekeys,
            rng=self.rng,
            trust=self.trust,
        )
        self.last_prekey_result = result
        self.prekeys.retire(result)
        return result.plaintext

    def record_bytes(self) -> bytes:
        return serialize_record(self.record)

    def reload(self) -> None:
        """Replace the live record with a deserialized copy (as an app reloading from disk)."""
        self.record = deserialize_record(serialize_record(self.record))


def _seed(*parts: object) -> bytes:
    return hashlib.sha256(repr(parts).encode()).digest()


def make_party(
    name: str,
    seed: object = 0,
    *,
    identity: PrivateKey | None = None,
    one_time_ids: tuple[int, ...] = (ONE_TIME_PREKEY_ID,),
) -> Party:
    """A party whose keys all come from ``(name, seed)``; ``identity`` overrides the identity."""
    rng = seeded_rng(_seed("party", name, seed))
    identity = identity or PrivateKey.generate(rng)
    registration_id = int.from_bytes(rng(2), "big") & 0x3FFF or 1
    prekeys = MemoryPreKeys(
        signed={SIGNED_PREKEY_ID: PrivateKey.generate(rng)},
        kyber={KYBER_PREKEY_ID: KyberKeyPair.generate(rng)},
        one_time={i: PrivateKey.generate(rng) for i in one_time_ids},
    )
    return Party(name, LocalIdentity(identity, registration_id), prekeys, rng)


def make_pair(seed: object = 0) -> tuple[Party, Party]:
    """Alice and Bob with no session yet."""
    return make_party("alice", seed), make_party("bob", seed)


def establish(seed: object = 0, *, one_time: bool = True) -> tuple[Party, Party]:
    """Alice and Bob after one round trip: Alice's session is acknowledged, both chains live."""
    alice, bob = make_pair(seed)
    alice.initiate(bob.bundle(one_time=one_time))
    assert bob.decrypt(alice.encrypt(b"hello Bob")) == b"hello Bob"
    assert alice.decrypt(bob.encrypt(b"hello Alice")) == b"hello Alice"
    return alice, bob
